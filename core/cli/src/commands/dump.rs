//! `criu dump -t PID -D DIR`.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use criu_core::dump::{DumpOptions, dump};

use crate::args::Options;

pub fn run(opts: &Options) -> Result<ExitCode> {
    let dump_opts = dump_options(opts)?;
    let (pid, images_dir) = (dump_opts.pid, &dump_opts.images_dir);
    let report = dump(&dump_opts)
        .with_context(|| format!("dumping pid {pid} into {}", images_dir.display()))?;
    tracing::info!(
        pids = report.pids.len(),
        threads = report.threads,
        pages = report.pages_written,
        frozen_us = report.frozen_time_us,
        "dump finished"
    );
    if opts.display_stats {
        println!("Displaying dump stats:");
        println!("Frozen time: {} us", report.frozen_time_us);
        println!("Pages scanned: {}", report.pages_scanned);
        println!("Pages written: {}", report.pages_written);
    }
    Ok(ExitCode::SUCCESS)
}

/// The core's options for `opts` (plugins of `--plugin-dir` loaded): the one path from the
/// command line and from the RPC service to a dump.
pub fn dump_options(opts: &Options) -> Result<DumpOptions> {
    let Some(pid) = opts.tree else {
        bail!("dump needs the root of the tree to dump: -t/--tree PID");
    };
    let images_dir = super::images_dir(opts)?;
    crate::plugins::load(opts);
    let mut dump_opts = DumpOptions::new(pid, &images_dir);
    dump_opts.leave_running = opts.leave_running;
    dump_opts.leave_stopped = opts.leave_stopped;
    dump_opts.shell_job = opts.shell_job;
    dump_opts.secret_key = opts.secret_key.clone();
    dump_opts.compress = opts.compress;
    dump_opts.ghost_limit = opts.ghost_limit.unwrap_or(dump_opts.ghost_limit);
    dump_opts.freeze_timeout = opts.timeout.map(u64::from);
    dump_opts.tcp_established = opts.tcp_established;
    dump_opts.skip_in_flight = opts.skip_in_flight;
    dump_opts.file_locks = opts.file_locks;
    dump_opts.ext_unix_sk = opts.ext_unix_sk;
    dump_opts.network_lock = opts.network_lock;
    dump_opts.external = opts.external.clone();
    dump_opts.link_remap = opts.link_remap;
    dump_opts.cgroups = opts.cgroups.clone();
    // Relative to the work dir, as CRIU (which runs there).
    dump_opts.cgroups.yard = opts
        .cgroups
        .yard
        .as_deref()
        .map(|y| super::in_work_dir(opts, y));
    dump_opts.tcp_close = opts.tcp_close;
    Ok(dump_opts)
}
