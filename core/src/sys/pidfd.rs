//! pidfd wrappers: `pidfd_open`, `pidfd_getfd` (take a copy of another task's fd, the way the
//! dump collects fds without a parasite), `pidfd_send_signal`.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::unistd::Pid;

use super::ptrace::SigInfo;

/// Errors of the pidfd calls.
#[derive(Debug, thiserror::Error)]
pub enum PidfdError {
    #[error("pidfd_open({pid}) failed")]
    Open {
        pid: i32,
        #[source]
        source: Errno,
    },
    #[error("pidfd_getfd(pidfd {pidfd}, fd {fd}) failed")]
    GetFd {
        pidfd: i32,
        fd: i32,
        #[source]
        source: Errno,
    },
    #[error("pidfd_send_signal(pidfd {pidfd}, signal {sig}) failed")]
    Signal {
        pidfd: i32,
        sig: i32,
        #[source]
        source: Errno,
    },
}

impl PidfdError {
    pub fn errno(&self) -> Errno {
        match self {
            PidfdError::Open { source, .. }
            | PidfdError::GetFd { source, .. }
            | PidfdError::Signal { source, .. } => *source,
        }
    }
}

/// `PIDFD_NONBLOCK` (= O_NONBLOCK).
pub const PIDFD_NONBLOCK: u32 = libc::O_NONBLOCK as u32;
/// `PIDFD_THREAD` (Linux 6.9+): a pidfd for a thread rather than a thread-group leader.
pub const PIDFD_THREAD: u32 = libc::O_EXCL as u32;

fn fd_result(r: libc::c_long) -> Result<OwnedFd, Errno> {
    if r < 0 {
        return Err(Errno::last());
    }
    // SAFETY: the kernel just returned this new descriptor to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(r as i32) })
}

/// `pidfd_open(pid, flags)` (Linux 5.3+). Errors: ESRCH (no such process, or `pid` is not a
/// thread-group leader without PIDFD_THREAD), EINVAL (bad flags).
pub fn pidfd_open(pid: Pid, flags: u32) -> Result<OwnedFd, PidfdError> {
    // SAFETY: plain syscall with integer arguments.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), flags) };
    fd_result(r).map_err(|source| PidfdError::Open {
        pid: pid.as_raw(),
        source,
    })
}

/// `pidfd_getfd(pidfd, targetfd, 0)` (Linux 5.6+): a duplicate (same open file description)
/// of fd `targetfd` of the task, close-on-exec. Needs ptrace-attach rights over the task.
/// Errors: EBADF (no such fd in the target), EPERM, ESRCH.
pub fn pidfd_getfd(pidfd: BorrowedFd<'_>, targetfd: i32) -> Result<OwnedFd, PidfdError> {
    // SAFETY: plain syscall with integer arguments.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), targetfd, 0) };
    fd_result(r).map_err(|source| PidfdError::GetFd {
        pidfd: pidfd.as_raw_fd(),
        fd: targetfd,
        source,
    })
}

/// `pidfd_send_signal(pidfd, sig, info, 0)` (Linux 5.1+); `info` None sends like kill(2).
/// Errors: ESRCH (exited), EPERM, EINVAL (bad info: si_code must be negative unless sent to
/// oneself).
pub fn pidfd_send_signal(
    pidfd: BorrowedFd<'_>,
    sig: i32,
    info: Option<&SigInfo>,
) -> Result<(), PidfdError> {
    let ptr = info.map_or(std::ptr::null(), |i| i.as_bytes().as_ptr());
    // SAFETY: ptr is null or a 128-byte siginfo the kernel only reads.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_send_signal, pidfd.as_raw_fd(), sig, ptr, 0) };
    if r < 0 {
        return Err(PidfdError::Signal {
            pidfd: pidfd.as_raw_fd(),
            sig,
            source: Errno::last(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;
    use crate::sys::testutil::Looper;

    #[test]
    fn open_getfd_signal() {
        let mut child = Looper::spawn();
        let pfd = pidfd_open(child.pid, 0).expect("pidfd_open");
        let link =
            std::fs::read_link(format!("/proc/self/fd/{}", pfd.as_raw_fd())).expect("readlink");
        assert_eq!(link.as_os_str(), "anon_inode:[pidfd]");

        // The child holds the pipe's write end; take a copy and check it is the same pipe.
        let fds: Vec<i32> = std::fs::read_dir(format!("/proc/{}/fd", child.pid))
            .expect("fd dir")
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        let ours = std::fs::read_link(format!("/proc/self/fd/{}", child.rd.as_raw_fd()))
            .expect("our pipe");
        let mut found = false;
        for fd in fds {
            let got = pidfd_getfd(pfd.as_fd(), fd).expect("pidfd_getfd");
            let l =
                std::fs::read_link(format!("/proc/self/fd/{}", got.as_raw_fd())).expect("readlink");
            found |= l == ours;
        }
        assert!(found, "no copy of the pipe among the child's fds");
        let e = pidfd_getfd(pfd.as_fd(), 999).expect_err("no fd 999");
        assert_eq!(e.errno(), Errno::EBADF);

        pidfd_send_signal(pfd.as_fd(), libc::SIGKILL, None).expect("kill");
        let mut st = 0;
        // SAFETY: reaping our own child (the guard is told below).
        let r = unsafe { libc::waitpid(child.pid.as_raw(), &mut st, 0) };
        assert_eq!(r, child.pid.as_raw());
        child.reaped = true;
        assert!(libc::WIFSIGNALED(st) && libc::WTERMSIG(st) == libc::SIGKILL);
        let e = pidfd_send_signal(pfd.as_fd(), 0, None).expect_err("gone");
        assert_eq!(e.errno(), Errno::ESRCH);
    }
}
