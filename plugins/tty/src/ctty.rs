//! `/dev/tty` of a session whose leader and terminal (a pty pair) are in the tree.
//!
//! A `/dev/tty` description is bound, when opened, to the opener's controlling terminal:
//! only a task of the restored session can open the right one, and only once that session
//! has its terminal back (`pty::set_controlling`, in the restorer's `finish`). So
//! `open_file` hands the core a stand-in (`/dev/null` with the dumped flags), and `finish`
//! opens `/dev/tty` in the session's leader (a remote `openat`), takes it into criu and
//! installs it over the stand-in at every fd number of every task holding it, before any
//! task runs. No stand-in survives: a failure fails the restore.

use std::os::fd::{AsFd, OwnedFd};

use criu_plugin_api::{InstalledFd, PluginError, RestoreContext};
use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;

use crate::session;

/// The stand-in `open_file` returns for a `/dev/tty` description.
pub(crate) fn stand_in(flags: OFlag) -> Result<OwnedFd, PluginError> {
    open("/dev/null", flags, Mode::empty()).map_err(|e| PluginError::path("/dev/null", "open", e))
}

fn check(pid: i32, what: &str, r: i64) -> Result<u64, PluginError> {
    if (-4095..0).contains(&r) {
        return Err(PluginError::Task {
            pid,
            op: what.to_string(),
            source: Box::new(std::io::Error::from_raw_os_error(-r as i32)),
        });
    }
    Ok(r as u64)
}

/// `/dev/tty` opened with `flags` by `leader` (a remote `openat`), taken into criu.
fn open_in(ctx: &mut dyn RestoreContext, leader: i32, flags: u32) -> Result<OwnedFd, PluginError> {
    const PAGE: u64 = 4096;
    let prot = (libc::PROT_READ | libc::PROT_WRITE) as u64;
    let map = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
    let r = ctx.remote_syscall(leader, libc::SYS_mmap, [0, PAGE, prot, map, u64::MAX, 0])?;
    let page = check(
        leader,
        "remote mmap of a scratch page for opening /dev/tty",
        r,
    )?;
    let creation = (libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_CLOEXEC) as u32;
    let oflags = u64::from((flags & !creation) | libc::O_NOCTTY as u32);
    let opened = ctx
        .write_task_memory(leader, page, b"/dev/tty\0")
        .and_then(|()| {
            ctx.remote_syscall(
                leader,
                libc::SYS_openat,
                [libc::AT_FDCWD as u64, page, oflags, 0, 0, 0],
            )
        })
        .and_then(|r| check(leader, "remote open of /dev/tty in the session leader", r));
    let unmapped = ctx.remote_syscall(leader, libc::SYS_munmap, [page, PAGE, 0, 0, 0, 0]);
    let n = opened? as i32;
    let fd = ctx.dup_task_fd(leader, n);
    let closed = ctx.remote_syscall(leader, libc::SYS_close, [n as u64, 0, 0, 0, 0, 0]);
    let fd = fd?;
    check(
        leader,
        "remote close of the /dev/tty opened for criu",
        closed?,
    )?;
    check(leader, "remote munmap of the scratch page", unmapped?)?;
    Ok(fd)
}

/// Replaces the stand-ins of the `/dev/tty` descriptions `pending` (file id, flags) at every
/// fd of `installed` holding them. The session of the first holder opens it.
pub(crate) fn replace_stand_ins(
    ctx: &mut dyn RestoreContext,
    pending: &[(u32, u32)],
    installed: &[InstalledFd],
) -> Result<(), PluginError> {
    for &(id, flags) in pending {
        let holders: Vec<InstalledFd> = installed.iter().copied().filter(|f| f.id == id).collect();
        let Some(first) = holders.first() else {
            continue;
        };
        let leader = session::task_tty(first.pid)?.sid;
        let real = open_in(ctx, leader, flags)?;
        for h in &holders {
            let cloexec = ctx
                .task_fds(h.pid)?
                .iter()
                .find(|f| f.fd == h.fd)
                .is_some_and(|f| f.cloexec);
            ctx.install_fd(h.pid, real.as_fd(), h.fd, cloexec)?;
        }
        tracing::debug!(
            id,
            leader,
            fds = holders.len(),
            "/dev/tty reopened in its session"
        );
    }
    Ok(())
}
