//! Calls nix has no wrapper for: `SIOCUNIXFILE` and taking ownership of received fds, the
//! only unsafe code of the plugin (integer socket options: `criu-sk-common`'s wrappers).

#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;

// The integer option wrappers are sk-common's (one copy for every socket plugin).
pub(crate) use criu_sk_common::sys::{SO_PASSPIDFD, SO_PEEK_OFF, get_int, get_optional, set_int};

/// `SIOCUNIXFILE` (Linux 5.4+).
const SIOCUNIXFILE: libc::c_ulong = 0x89E0;

/// `ioctl(sock, SIOCUNIXFILE)`: an `O_PATH` fd of the file a unix socket is bound to.
pub(crate) fn unix_socket_file(sock: BorrowedFd<'_>) -> Result<std::os::fd::OwnedFd, Errno> {
    use std::os::fd::FromRawFd;
    // SAFETY: SIOCUNIXFILE takes no argument and returns a new fd or -1.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCUNIXFILE) };
    let fd = Errno::result(r)?;
    // SAFETY: `fd` was just returned by the kernel and is owned by nothing else.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// Takes ownership of an fd a `recvmsg` just installed in criu (`SCM_RIGHTS`), so that it is
/// closed exactly once.
pub(crate) fn own_received(fd: std::os::fd::RawFd) -> std::os::fd::OwnedFd {
    // SAFETY: the kernel installed `fd` in this process for this message only; no other
    // owner exists, so the OwnedFd is its sole owner.
    unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) }
}

/// A child of criu that stands in for the sender of a queued message who is gone (exited
/// before the dump, or outside the restored tree): criu names it in the message's
/// `SCM_CREDENTIALS`, then [`StandIn::end`] has it exit and reaps it, so that the receiver
/// finds the pid of a process that has exited (`SCM_PIDFD`: an exited pidfd), never an
/// unrelated live process nor criu.
#[derive(Debug)]
pub(crate) struct StandIn {
    /// Its pid (in criu's pid namespace).
    pub(crate) pid: nix::unistd::Pid,
    go: Option<std::os::fd::OwnedFd>,
}

impl StandIn {
    /// Forks the stand-in, into pid namespace `pidns` when given (the restored tree's, so
    /// that the receivers see its pid), at pid `pid` there when it is free (the gone
    /// sender's: the receiver sees the pid it saw before the dump); it blocks until
    /// [`StandIn::end`] (or criu's end).
    pub(crate) fn fork(pidns: Option<BorrowedFd<'_>>, pid: i32) -> Result<StandIn, Errno> {
        use nix::sched::{CloneFlags, setns};
        let Some(ns) = pidns else {
            return Self::fork_here(pid);
        };
        // Only this thread's children change namespace, and only until it is set back.
        let own = std::fs::File::open("/proc/thread-self/ns/pid_for_children")
            .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
        setns(ns, CloneFlags::CLONE_NEWPID)?;
        let forked = Self::fork_here(pid);
        let back = setns(&own, CloneFlags::CLONE_NEWPID);
        let s = forked?;
        back?;
        Ok(s)
    }

    fn fork_here(pid: i32) -> Result<StandIn, Errno> {
        let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let (rd_raw, wr_raw) = (rd.as_raw_fd(), wr.as_raw_fd());
        // SAFETY: the child only makes async-signal-safe calls (close, read, _exit) on
        // values computed before the fork, then ends.
        let at = unsafe { fork_at(pid) };
        let forked = match at {
            Ok(0) => nix::unistd::ForkResult::Child,
            Ok(child) => nix::unistd::ForkResult::Parent {
                child: nix::unistd::Pid::from_raw(child),
            },
            // The pid is taken (or out of range): any pid will do.
            // SAFETY: as above.
            Err(_) => unsafe { nix::unistd::fork() }?,
        };
        match forked {
            nix::unistd::ForkResult::Child => {
                // SAFETY: raw libc calls on fds and locals of this process, which ends here.
                unsafe {
                    libc::close(wr_raw);
                    let mut b = 0u8;
                    // Ends on the byte, or on EOF when criu went away.
                    while libc::read(rd_raw, (&raw mut b).cast(), 1) < 0 {}
                    libc::_exit(0)
                }
            }
            nix::unistd::ForkResult::Parent { child } => {
                drop(rd);
                Ok(StandIn {
                    pid: child,
                    go: Some(wr),
                })
            }
        }
    }

    /// Lets the stand-in exit and reaps it.
    pub(crate) fn end(mut self) -> Result<(), Errno> {
        // One byte (not only EOF: another fork may hold a copy of the write end).
        if let Some(go) = self.go.take() {
            nix::unistd::write(&go, &[1])?;
        }
        nix::sys::wait::waitpid(self.pid, None).map(drop)
    }
}

impl Drop for StandIn {
    /// A stand-in never ended (an error on the way): it must not outlive criu's restore.
    fn drop(&mut self) {
        if self.go.take().is_some() {
            let _ = nix::sys::signal::kill(self.pid, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(self.pid, None);
        }
    }
}

/// `struct clone_args` of `clone3(2)` up to `set_tid_size` (Linux 5.5, `CLONE_ARGS_SIZE_VER1`).
#[repr(C)]
#[derive(Debug, Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
}

/// `fork()` as `clone3` with `set_tid = [pid]`: the child gets `pid` in the pid namespace
/// its children go to. `Ok(0)` in the child, the child's pid in the parent.
///
/// # Safety
/// As `fork()` in a possibly multi-threaded process: the child may only make
/// async-signal-safe calls (glibc's fork handlers do not run either).
unsafe fn fork_at(pid: i32) -> Result<i32, Errno> {
    let tids = [pid];
    let args = CloneArgs {
        exit_signal: libc::SIGCHLD as u64,
        set_tid: tids.as_ptr() as u64,
        set_tid_size: 1,
        ..CloneArgs::default()
    };
    // SAFETY: `args` and `tids` outlive the call; no CLONE_VM: the child runs on its own
    // copy of this stack, as after fork. The caller keeps to the child's restrictions.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &raw const args,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    Errno::result(r).map(|r| r as i32)
}
