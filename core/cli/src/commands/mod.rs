//! One module per criu command; this one routes to them.

mod check;
mod check_images;
pub(crate) mod dump;
mod network_unlock;
pub(crate) mod restore;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use crate::args::Options;

/// What `criu --version` prints, in CRIU's format (callers parse "Version: X.Y").
pub const VERSION_STRING: &str = concat!("4.2\nGitID: criu-rs-", env!("CARGO_PKG_VERSION"));

/// Runs one command.
pub fn dispatch(command: &str, args: &[String], opts: &Options) -> Result<ExitCode> {
    crate::args::refuse_unsupported(command, opts)?;
    if opts.exec_cmd && command != "restore" {
        bail!("--exec-cmd is available for the restore command only");
    }
    let takes_words = matches!(command, "swrk" | "cpuinfo") || opts.exec_cmd;
    if !args.is_empty() && !takes_words {
        bail!(
            "excessive parameters for command {command}: {}",
            args.join(" ")
        );
    }
    match command {
        "check" => check::run(opts),
        "check-images" => check_images::run(opts),
        "dump" => dump::run(opts),
        "restore" => restore::run(opts, args),
        "network-unlock" => network_unlock::run(opts),
        "swrk" => crate::rpc::swrk_command(args),
        "service" => crate::rpc::service_command(opts),
        other => match not_built(other) {
            Some(why) => bail!("{why}"),
            None => bail!(
                "unknown command '{other}'; commands: dump, pre-dump, restore, check, \
                 check-images, network-unlock, page-server, lazy-pages, cpuinfo, swrk, service, crit"
            ),
        },
    }
}

/// The commands not built yet, each with why and the way out: what `criu CMD` and the RPC
/// service's matching requests answer.
pub fn not_built(command: &str) -> Option<String> {
    let why = match command {
        "pre-dump" => {
            "incremental dumps need memory change tracking; this kernel has no soft-dirty \
             bits and tracking through PAGEMAP_SCAN/userfaultfd write-protection is not \
             written yet; use a full 'criu dump'"
        }
        "page-server" => "pages can only be written to a local images dir (-D) for now",
        "lazy-pages" => "post-copy restore is not written yet; restore without --lazy-pages",
        "cpuinfo" => {
            "CPU capability images are not written yet; restore checks the xsave layout \
             of each thread instead"
        }
        _ => return None,
    };
    Some(format!("not supported yet: 'criu {command}': {why}"))
}

/// The work dir: -W, else the images dir, else the current dir.
pub fn work_dir(opts: &Options) -> PathBuf {
    opts.work_dir
        .clone()
        .or_else(|| opts.images_dir.clone())
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Resolves a file option (log file, pidfile) against the work dir as CRIU does.
pub fn in_work_dir(opts: &Options, file: &std::path::Path) -> PathBuf {
    if file.is_absolute() {
        file.to_path_buf()
    } else {
        work_dir(opts).join(file)
    }
}

/// Where the log goes, if to a file.
pub fn log_path(opts: &Options) -> Option<PathBuf> {
    opts.log_file.as_deref().map(|f| in_work_dir(opts, f))
}

/// `--close FD`.
pub fn close_fd(fd: i32) -> Result<()> {
    if fd <= 2 {
        bail!("--close {fd}: refusing to close a standard stream");
    }
    nix::unistd::close(fd).with_context(|| format!("--close {fd}"))
}

/// The images dir: -D, else the current dir (as CRIU).
pub fn images_dir(opts: &Options) -> Result<PathBuf> {
    Ok(opts
        .images_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(".")))
}
