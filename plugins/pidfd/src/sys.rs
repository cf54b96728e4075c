//! The pidfd calls nix has no wrapper for (`pidfd_open`, `PIDFD_GET_INFO`) and the helper
//! process a reaped target is recreated with, wrapped once here. This is the plugin's only
//! `unsafe` code.

#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::unistd::Pid;

/// `PIDFD_NONBLOCK` (= `O_NONBLOCK`).
pub const PIDFD_NONBLOCK: u32 = libc::O_NONBLOCK as u32;
/// `PIDFD_THREAD` (= `O_EXCL`, Linux 6.9+): the pidfd names a thread, not a process.
pub const PIDFD_THREAD: u32 = libc::O_EXCL as u32;
/// The flags `pidfd_open` takes.
pub const OPEN_FLAGS: u32 = PIDFD_NONBLOCK | PIDFD_THREAD;

/// `PIDFD_INFO_EXIT` (Linux 6.15+): ask for the exit status of a reaped process.
const PIDFD_INFO_EXIT: u64 = 1 << 3;

/// `struct pidfd_info` as of Linux 6.15 (`PIDFD_INFO_SIZE_VER0`, 64 bytes): the kernel
/// copies at most this much back for a request of this size. Not in libc yet.
#[repr(C)]
#[derive(Debug, Default)]
struct PidfdInfo {
    mask: u64,
    cgroupid: u64,
    pid: u32,
    tgid: u32,
    ppid: u32,
    ruid: u32,
    rgid: u32,
    euid: u32,
    egid: u32,
    suid: u32,
    sgid: u32,
    fsuid: u32,
    fsgid: u32,
    exit_code: i32,
}

// `PIDFD_GET_INFO` = `_IOWR(PIDFS_IOCTL_MAGIC 0xFF, 11, struct pidfd_info)`.
nix::ioctl_readwrite!(pidfd_get_info, 0xFF, 11, PidfdInfo);

/// `pidfd_open(pid, flags)`, close-on-exec as every pidfd.
pub fn pidfd_open(pid: i32, flags: u32) -> Result<OwnedFd, Errno> {
    // SAFETY: pidfd_open takes two integers and returns a new fd or -1.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, flags) };
    if r < 0 {
        return Err(Errno::last());
    }
    // SAFETY: `r` is a new fd nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(r as i32) })
}

/// The wait status (as `waitpid` gives it) of the reaped process behind `pidfd`, from
/// `PIDFD_GET_INFO` with `PIDFD_INFO_EXIT`. `Ok(None)`: the kernel does not keep it (before
/// Linux 6.15, or no pidfd existed when the process exited); `ESRCH` while the process was
/// not reaped yet is also `None`.
pub fn exit_status(pidfd: BorrowedFd<'_>) -> Result<Option<i32>, Errno> {
    let mut info = PidfdInfo {
        mask: PIDFD_INFO_EXIT,
        ..PidfdInfo::default()
    };
    // SAFETY: valid fd; `info` is a live struct of the size encoded in the request.
    match unsafe { pidfd_get_info(pidfd.as_raw_fd(), &mut info) } {
        Ok(_) => Ok((info.mask & PIDFD_INFO_EXIT != 0).then_some(info.exit_code)),
        Err(Errno::ENOTTY | Errno::EINVAL | Errno::ESRCH) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A child of ours waiting to end with a chosen wait status: pidfds of it can be opened
/// while it waits, then [`ExitingChild::finish`] lets it end and reaps it.
#[derive(Debug)]
pub struct ExitingChild {
    /// Its pid.
    pub pid: Pid,
    go: Option<OwnedFd>,
}

/// Forks a child that blocks until [`ExitingChild::finish`], then ends with wait status
/// `status` (`None`: killed by `SIGKILL`, as CRIU recreates a reaped pidfd target). A core
/// dump flag in `status` is not reproduced (the child never dumps core).
pub fn fork_exiting(status: Option<i32>) -> Result<ExitingChild, Errno> {
    let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let (rd_raw, wr_raw) = (rd.as_raw_fd(), wr.as_raw_fd());
    // SAFETY: the child only makes async-signal-safe calls (close, read, setrlimit,
    // sigaction, sigprocmask, kill, _exit) on values computed before the fork, then ends.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Child => {
            // SAFETY: raw libc calls on fds and locals of this process, which ends below.
            unsafe {
                libc::close(wr_raw);
                let mut b = 0u8;
                while libc::read(rd_raw, (&raw mut b).cast(), 1) < 0 {}
                // Proceeds on the byte, or on EOF when criu went away.
                end_with(status)
            }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(rd);
            Ok(ExitingChild {
                pid: child,
                go: Some(wr),
            })
        }
    }
}

/// [`fork_exiting`] with the child in pid namespace `pidns` (the restored tree's, so that
/// the tree's tasks can signal and wait on its pidfds as on any process they see).
pub fn fork_exiting_in(status: Option<i32>, pidns: BorrowedFd<'_>) -> Result<ExitingChild, Errno> {
    use nix::sched::{CloneFlags, setns};
    // Only this thread's children change namespace, and only until it is set back.
    let own = std::fs::File::open("/proc/thread-self/ns/pid_for_children")
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
    setns(pidns, CloneFlags::CLONE_NEWPID)?;
    let forked = fork_exiting(status);
    let back = setns(&own, CloneFlags::CLONE_NEWPID);
    let child = forked?;
    back?;
    Ok(child)
}

/// Ends the calling (forked) process with wait status `status`.
///
/// # Safety
/// Only for a forked child of a possibly multi-threaded process: it never returns.
unsafe fn end_with(status: Option<i32>) -> ! {
    let sig = match status {
        None => libc::SIGKILL,
        Some(s) if s & 0x7f == 0 => {
            // SAFETY: _exit ends the process.
            unsafe { libc::_exit((s >> 8) & 0xff) }
        }
        Some(s) => s & 0x7f,
    };
    let none = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on locals; a zeroed sigaction is SIG_DFL with an empty mask.
    unsafe {
        libc::setrlimit(libc::RLIMIT_CORE, &none);
        let dfl: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig, &dfl, std::ptr::null_mut());
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::kill(libc::getpid(), sig);
        // A signal whose default action does not end a process: the status cannot be made.
        libc::_exit(127)
    }
}

impl ExitingChild {
    /// Lets the child end and reaps it: its wait status.
    pub fn finish(mut self) -> Result<i32, Errno> {
        // One byte (not only EOF: another fork may hold a copy of the write end).
        if let Some(go) = self.go.take() {
            nix::unistd::write(&go, &[1])?;
        }
        match nix::sys::wait::waitpid(self.pid, None)? {
            nix::sys::wait::WaitStatus::Exited(_, code) => Ok(code << 8),
            nix::sys::wait::WaitStatus::Signaled(_, sig, core) => {
                Ok(sig as i32 | if core { 0x80 } else { 0 })
            }
            _ => Err(Errno::ECHILD),
        }
    }
}

impl Drop for ExitingChild {
    /// A child never finished (an error on the way): it must not outlive us.
    fn drop(&mut self) {
        if self.go.take().is_some() {
            let _ = nix::sys::signal::kill(self.pid, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(self.pid, None);
        }
    }
}
