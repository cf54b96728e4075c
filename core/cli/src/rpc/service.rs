//! `criu service`: a `SOCK_SEQPACKET` socket at `--address` (default
//! `./criu_service.socket`, mode 0666 so any client can connect, as CRIU), one forked worker
//! per connection; `-d`/`--daemon` detaches, `--pidfile` records the service's pid and
//! `--status-fd` gets a byte once it listens.

use std::os::fd::{AsFd, AsRawFd};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use nix::sys::signal::{SigHandler, Signal, signal};
use nix::sys::socket::{self, AddressFamily, Backlog, SockFlag, SockType, UnixAddr};
use nix::unistd::ForkResult;

use super::transport::Channel;
use crate::args::Options;

/// CRIU's `CR_DEFAULT_SERVICE_ADDRESS`.
const DEFAULT_ADDRESS: &str = "./criu_service.socket";

/// Runs the service until killed.
pub fn service_command(opts: &Options) -> Result<ExitCode> {
    let path = opts
        .address
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_ADDRESS));
    let sock = socket::socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .context("criu service: socket")?;
    let _ = std::fs::remove_file(&path);
    let addr = UnixAddr::new(&path).with_context(|| format!("criu service: {}", path.display()))?;
    socket::bind(sock.as_raw_fd(), &addr)
        .with_context(|| format!("criu service: cannot bind {}", path.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))
            .with_context(|| format!("criu service: chmod {}", path.display()))?;
    }
    socket::listen(&sock, Backlog::new(16).unwrap_or(Backlog::MAXCONN))
        .context("criu service: listen")?;
    tracing::info!(address = %path.display(), "the service socket is bound");
    if opts.restore_detached {
        nix::unistd::daemon(true, false).context("criu service: daemon")?;
    }
    if let Some(pidfile) = &opts.pidfile {
        let file = crate::commands::in_work_dir(opts, pidfile);
        std::fs::write(&file, std::process::id().to_string())
            .with_context(|| format!("criu service: pidfile {}", file.display()))?;
    }
    // Workers are reaped by the kernel; each sets SIGCHLD back for its own children.
    // SAFETY: SIG_IGN installs no handler code.
    unsafe { signal(Signal::SIGCHLD, SigHandler::SigIgn) }.context("criu service: SIGCHLD")?;
    if let Some(fd) = opts.status_fd {
        nix::unistd::write(
            // SAFETY: the caller handed us this fd for the status byte; it is only borrowed.
            unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
            b"\0",
        )
        .with_context(|| format!("criu service: --status-fd {fd}"))?;
        let _ = nix::unistd::close(fd);
    }
    loop {
        let conn = match socket::accept4(sock.as_fd(), SockFlag::SOCK_CLOEXEC) {
            Ok(c) => c,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e).context("criu service: accept"),
        };
        // SAFETY: the service runs no other thread (it spawns none before or in this loop),
        // so the child's only thread is a copy of this one.
        match unsafe { nix::unistd::fork() }.context("criu service: fork")? {
            ForkResult::Child => {
                drop(sock);
                // SAFETY: SIG_DFL installs no handler code.
                let _ = unsafe { signal(Signal::SIGCHLD, SigHandler::SigDfl) };
                let code = super::serve(&Channel::new(conn), false);
                criu_core::log_flush::flush();
                std::process::exit(if code == ExitCode::SUCCESS { 0 } else { 1 });
            }
            ForkResult::Parent { child } => {
                tracing::info!(worker = child.as_raw(), "connection accepted");
                drop(conn);
            }
        }
    }
}
