//! `criu restore -D DIR`.
//!
//! With `-d` criu returns once the tree runs; without it criu waits for the restored root
//! and exits with the root's exit code (128 + signal when it was killed), so a shell job
//! restored in the foreground behaves like the original command. With `--exec-cmd`, criu
//! restores detached and then becomes the given program (the root's parent), as CRIU.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use criu_core::restore::{RestoreOptions, RestoreOutcome, restore};

use crate::args::Options;

pub fn run(opts: &Options, exec_cmd: &[String]) -> Result<ExitCode> {
    if opts.exec_cmd {
        if exec_cmd.is_empty() {
            bail!("--exec-cmd requires a command after 'restore'");
        }
        if opts.restore_detached {
            bail!("--restore-detached and --exec-cmd cannot be used together");
        }
    }
    let restore_opts = restore_options(opts, opts.restore_detached || opts.exec_cmd)?;
    let images_dir = &restore_opts.images_dir;
    let outcome = restore(&restore_opts)
        .with_context(|| format!("restoring from {}", images_dir.display()))?;
    Ok(match outcome {
        RestoreOutcome::Detached { root } if opts.exec_cmd => {
            tracing::info!(pid = root, cmd = ?exec_cmd, "restored; exec'ing the command");
            return Err(exec(exec_cmd));
        }
        RestoreOutcome::Detached { root } => {
            tracing::info!(pid = root, "restored, detached");
            ExitCode::SUCCESS
        }
        RestoreOutcome::Exited { root, code } => {
            tracing::info!(pid = root, code, "restored root exited");
            ExitCode::from(u8::try_from(code & 0xff).unwrap_or(1))
        }
        RestoreOutcome::Killed { root, signal } => {
            tracing::info!(pid = root, signal, "restored root was killed");
            ExitCode::from(u8::try_from(128 + (signal & 0x7f)).unwrap_or(1))
        }
    })
}

/// The core's options for `opts`, detached or not (plugins of `--plugin-dir` loaded): the
/// one path from the command line and from the RPC service to a restore.
pub fn restore_options(opts: &Options, detach: bool) -> Result<RestoreOptions> {
    let images_dir = super::images_dir(opts)?;
    crate::plugins::load(opts);
    Ok(RestoreOptions {
        images_dir,
        detach,
        leave_stopped: opts.leave_stopped,
        pidfile: opts.pidfile.as_deref().map(|p| super::in_work_dir(opts, p)),
        shell_job: opts.shell_job,
        verify_pages: opts.verify_pages,
        secret_key: opts.secret_key.clone(),
        tcp_established: opts.tcp_established,
        tcp_close: opts.tcp_close,
        file_locks: opts.file_locks,
        ext_unix_sk: opts.ext_unix_sk,
        network_lock: opts.network_lock,
        external: opts.external.clone(),
        root: opts.root.clone(),
        // The yard relative to the work dir, as CRIU (which runs there).
        cgroups: criu_core::cgroup::CgroupOptions {
            yard: opts
                .cgroups
                .yard
                .as_deref()
                .map(|y| super::in_work_dir(opts, y)),
            ..opts.cgroups.clone()
        },
    })
}

/// Replaces criu with `cmd` (searched in PATH); returns only on failure.
pub fn exec(cmd: &[String]) -> anyhow::Error {
    use std::os::unix::process::CommandExt;
    // exec drops this process's memory, buffered log lines included.
    criu_core::log_flush::flush();
    let err = std::process::Command::new(&cmd[0]).args(&cmd[1..]).exec();
    anyhow::Error::new(err).context(format!("--exec-cmd: cannot exec {}", cmd[0]))
}
