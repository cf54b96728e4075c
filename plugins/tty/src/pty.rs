//! Pty pairs, restore side: a master with the dumped index, and the controlling terminal of
//! a session leader.
//!
//! Linux has no "open pty N": `/dev/ptmx` hands out the lowest free index. So, as CRIU
//! does, criu opens it repeatedly, holding every lower index it gets until it gets the
//! dumped one, then closes the others. An index above the one handed out means the dumped
//! index is in use: an error naming `/dev/pts/N`.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use criu_plugin_api::{PluginError, RestoreContext};
use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;

use crate::ioctl;

/// A new pty master from `ptmx` (`/dev/ptmx`, or a devpts' own `ptmx`) whose index is
/// `index`, opened with `flags`.
pub(crate) fn open_index(
    ptmx: &str,
    index: u32,
    flags: OFlag,
    pid: i32,
) -> Result<OwnedFd, PluginError> {
    let mut held = Vec::new();
    loop {
        let fd =
            open(ptmx, flags, Mode::empty()).map_err(|e| PluginError::path(ptmx, "open", e))?;
        let got = ioctl::pty_index(fd.as_fd())
            .map_err(|e| PluginError::path(ptmx, "ioctl(TIOCGPTN)", e))?;
        if got == index {
            tracing::debug!(
                index,
                skipped = held.len(),
                "pty master opened at its index"
            );
            return Ok(fd);
        }
        if got > index || held.len() > index as usize {
            return Err(PluginError::Unsupported {
                resource: format!("pty /dev/pts/{index}"),
                pid,
                hint: format!(
                    "its index is in use on this system ({ptmx} handed out {got}); the restored \
                     program expects /dev/pts/{index}: free that terminal (close what holds it) \
                     and restore again"
                ),
            });
        }
        held.push(fd);
    }
}

/// The raw result of a remote syscall as a `Result` naming what was done.
fn check(pid: i32, what: String, r: i64) -> Result<u64, PluginError> {
    if (-4095..0).contains(&r) {
        return Err(PluginError::Task {
            pid,
            op: what,
            source: Box::new(std::io::Error::from_raw_os_error(-r as i32)),
        });
    }
    Ok(r as u64)
}

/// An fd number to lend task `pid` a file at: above its fds and above the two numbers the
/// core's `install_fd` takes for a moment (its pidfd and the fetched fd).
fn lend_number(pid: i32) -> Result<i32, PluginError> {
    let dir = format!("/proc/{pid}/fd");
    let rd = std::fs::read_dir(&dir).map_err(|e| PluginError::Path {
        path: dir.clone().into(),
        op: "read_dir",
        source: e,
    })?;
    let max = rd
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .max()
        .unwrap_or(-1);
    Ok(max + 3)
}

/// Makes pty `index` the controlling terminal of session leader `leader` (restored pid),
/// with foreground group `pgrp` (0: leave the leader's), by remote `ioctl`s in the leader
/// through its fd `fd`, or through `slave` lent to it for the calls.
pub(crate) fn set_controlling(
    ctx: &mut dyn RestoreContext,
    leader: i32,
    fd: Option<i32>,
    slave: BorrowedFd<'_>,
    index: u32,
    pgrp: i32,
) -> Result<(), PluginError> {
    let (n, lent) = match fd {
        Some(n) => (n, false),
        None => {
            let n = lend_number(leader)?;
            ctx.install_fd(leader, slave, n, true)?;
            (n, true)
        }
    };
    let r = ctx.remote_syscall(
        leader,
        libc::SYS_ioctl,
        [n as u64, libc::TIOCSCTTY, 0, 0, 0, 0],
    );
    let mut result = r.and_then(|r| {
        check(
            leader,
            format!("remote ioctl(TIOCSCTTY) making /dev/pts/{index} the controlling terminal"),
            r,
        )
    });
    if result.is_ok() && pgrp > 0 && pgrp != leader {
        result = set_foreground(ctx, leader, n, index, pgrp);
    }
    if lent {
        let r = ctx.remote_syscall(leader, libc::SYS_close, [n as u64, 0, 0, 0, 0, 0]);
        let closed = r.and_then(|r| check(leader, format!("remote close of lent fd {n}"), r));
        result = result.and(closed);
    }
    result.map(drop)
}

/// `TIOCSPGRP` in the leader: the argument is a pointer, so a scratch page holds the pgrp.
fn set_foreground(
    ctx: &mut dyn RestoreContext,
    leader: i32,
    fd: i32,
    index: u32,
    pgrp: i32,
) -> Result<u64, PluginError> {
    const PAGE: u64 = 4096;
    let prot = (libc::PROT_READ | libc::PROT_WRITE) as u64;
    let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
    let r = ctx.remote_syscall(leader, libc::SYS_mmap, [0, PAGE, prot, flags, u64::MAX, 0])?;
    let page = check(
        leader,
        "remote mmap of a scratch page for TIOCSPGRP".into(),
        r,
    )?;
    let r = ctx
        .write_task_memory(leader, page, &pgrp.to_ne_bytes())
        .and_then(|()| {
            ctx.remote_syscall(
                leader,
                libc::SYS_ioctl,
                [fd as u64, libc::TIOCSPGRP, page, 0, 0, 0],
            )
        })
        .and_then(|r| {
            check(
                leader,
                format!("remote ioctl(TIOCSPGRP) giving /dev/pts/{index} to group {pgrp}"),
                r,
            )
        });
    let u = ctx.remote_syscall(leader, libc::SYS_munmap, [page, PAGE, 0, 0, 0, 0]);
    let v = r?;
    check(leader, "remote munmap of the scratch page".into(), u?)?;
    Ok(v)
}
