//! `clone3(2)` with `set_tid`: create a process or thread with a chosen PID/TID.
//!
//! Restore recreates every task at the PID it had when it was dumped. With `clone3` a caller
//! holding CAP_SYS_ADMIN over the target pid namespace passes the wanted id in `set_tid`; the
//! kernel fails with EEXIST when it is taken (see [`pid_state`] to tell the user why).
//!
//! [`fork_with_tid`] is the fork-style wrapper: it returns once in the parent and once in the
//! child, both on the caller's stack.
//!
//! # The child side (read before writing code that runs there)
//! The child is a copy of the calling thread only. When the caller's process has other
//! threads, they do not exist in the child but any lock they held (malloc arenas, stdio,
//! `std` mutexes, the tracing subscriber) stays held forever. So, in the child, until it
//! execs, exits or is taken over by its tracer:
//! - no allocation and no deallocation (no `Vec::push`, `format!`, `String`, dropping a
//!   `Box`), no logging, no `println!`, no locks;
//! - only async-signal-safe calls: raw syscalls (`dup3`, `fcntl`, `close_range`, `ptrace`,
//!   `kill`, `_exit`); buffers it uses must have been allocated by the parent before the call;
//! - no glibc helpers that use cached thread state: glibc's `struct pthread` still holds the
//!   parent's TID, so `raise()`/`pthread_kill()` would signal a thread of the PARENT. Use
//!   `kill(getpid(), sig)` instead;
//! - leave with [`child_exit`] (`_exit`), never by returning into the parent's code or
//!   unwinding (no panics: destructors of the parent's objects must not run twice).

use std::os::fd::RawFd;

use libc::{c_int, c_long, pid_t};
use nix::errno::Errno;
use nix::unistd::Pid;

/// The kernel's `struct clone_args` (include/uapi/linux/sched.h), version 2 (88 bytes).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct CloneArgs {
    pub flags: u64,
    pub pidfd: u64,
    pub child_tid: u64,
    pub parent_tid: u64,
    pub exit_signal: u64,
    pub stack: u64,
    pub stack_size: u64,
    pub tls: u64,
    pub set_tid: u64,
    pub set_tid_size: u64,
    pub cgroup: u64,
}

/// Size of [`CloneArgs`] as passed to the kernel (`CLONE_ARGS_SIZE_VER2`).
pub const CLONE_ARGS_SIZE: usize = std::mem::size_of::<CloneArgs>();

/// Where `fork_with_tid` returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForkResult {
    /// In the caller; `child` is the new process (its PID is the requested one).
    Parent { child: Pid },
    /// In the new process. See the module docs for what may run here.
    Child,
}

/// Fork-style `clone3` with `exit_signal = SIGCHLD`, no shared resources, and the new PID
/// set to `pid` in the caller's pid namespace; `flags` may add new namespaces
/// (`CLONE_NEWUTS`, `CLONE_NEWIPC`).
///
/// Errors: EEXIST (the PID is in use), EPERM (no CAP_SYS_ADMIN over the pid namespace),
/// EINVAL (pid out of range), ENOSYS (kernel without clone3).
///
/// # Safety
/// In the [`ForkResult::Child`] branch the caller must follow the rules of the module docs:
/// only async-signal-safe work on memory allocated before the call, and it must end with
/// [`child_exit`] or by being replaced (exec, or a tracer rewriting its whole image).
pub unsafe fn fork_with_tid(pid: Pid, flags: u64) -> Result<ForkResult, Errno> {
    // The child must not inherit unwritten log lines: see `crate::log_flush`.
    crate::log_flush::flush();
    let tids: [pid_t; 1] = [pid.as_raw()];
    let args = CloneArgs {
        flags,
        exit_signal: libc::SIGCHLD as u64,
        set_tid: tids.as_ptr() as u64,
        set_tid_size: 1,
        ..CloneArgs::default()
    };
    // SAFETY: args and tids live across the call; stack = 0 makes the child continue on a
    // copy of this stack like fork(); the caller upholds the child-side rules.
    let ret: c_long = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            CLONE_ARGS_SIZE as libc::size_t,
        )
    };
    match ret {
        r if r < 0 => Err(Errno::last()),
        0 => Ok(ForkResult::Child),
        r => Ok(ForkResult::Parent {
            child: Pid::from_raw(r as pid_t),
        }),
    }
}

/// Ends the child side of [`fork_with_tid`] without running any destructor or atexit hook.
pub fn child_exit(code: c_int) -> ! {
    // SAFETY: _exit never returns and touches no user-space state.
    unsafe { libc::_exit(code) }
}

/// `close_range(first, last, 0)`: closes every open fd in the range (async-signal-safe).
pub fn close_range(first: RawFd, last: RawFd) -> Result<(), Errno> {
    // SAFETY: plain syscall on integers; closing fds is this function's documented purpose.
    let r = unsafe { libc::syscall(libc::SYS_close_range, first as u32, last as u32, 0u32) };
    if r < 0 { Err(Errno::last()) } else { Ok(()) }
}

/// One fd the child installs: `src` (open in the parent at fork time) becomes `dst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdMove {
    pub src: RawFd,
    pub dst: RawFd,
    pub cloexec: bool,
}

/// Child side of [`fork_with_tid`]: installs every [`FdMove`] and closes every other fd.
///
/// Async-signal-safe and allocation-free: `scratch` (same length as `moves`, allocated by the
/// parent) receives temporary duplicates. `high` must exceed every `src` and `dst`, so the
/// temporary copies never collide with a destination; `keep` lists the destination fds
/// sorted ascending without duplicates.
pub fn child_install_fds(
    moves: &[FdMove],
    scratch: &mut [RawFd],
    high: RawFd,
    keep: &[RawFd],
) -> Result<(), Errno> {
    if scratch.len() < moves.len() {
        return Err(Errno::EINVAL);
    }
    for (m, tmp) in moves.iter().zip(scratch.iter_mut()) {
        // SAFETY: fcntl(F_DUPFD_CLOEXEC) on an integer fd creates a new fd and nothing else.
        let r = unsafe { libc::fcntl(m.src, libc::F_DUPFD_CLOEXEC, high) };
        if r < 0 {
            return Err(Errno::last());
        }
        *tmp = r;
    }
    for (m, tmp) in moves.iter().zip(scratch.iter()) {
        let flags = if m.cloexec { libc::O_CLOEXEC } else { 0 };
        // SAFETY: dup3 replaces dst with a copy of tmp; dst is ours to reuse in the child.
        if unsafe { libc::dup3(*tmp, m.dst, flags) } < 0 {
            return Err(Errno::last());
        }
    }
    // Close the gaps between kept fds, then everything above the last one.
    let mut next: RawFd = 0;
    for &k in keep {
        if k > next {
            close_range(next, k - 1)?;
        }
        next = k + 1;
    }
    close_range(next, RawFd::MAX)
}

/// How the new process joins a session and process group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionOp {
    /// Stay in the parent's session and group.
    Inherit,
    /// `setpgid(0, 0)`: lead a new group in the parent's session.
    NewGroup,
    /// `setsid()`: lead a new session and group.
    NewSession,
}

/// Everything the child of [`spawn_traced`] does, prepared by the parent (the child must not
/// allocate).
#[derive(Debug)]
pub struct ChildSetup {
    pub session: SessionOp,
    pub moves: Vec<FdMove>,
    /// Same length as `moves`.
    pub scratch: Vec<RawFd>,
    /// Above every fd in `moves`.
    pub high: RawFd,
    /// Destination fds, sorted, unique.
    pub keep: Vec<RawFd>,
    /// Namespace flags of the clone (0: the caller's namespaces).
    pub clone_flags: u64,
}

impl ChildSetup {
    pub fn new(session: SessionOp, moves: Vec<FdMove>) -> ChildSetup {
        let high = moves.iter().map(|m| m.src.max(m.dst)).max().unwrap_or(2) + 1;
        let mut keep: Vec<RawFd> = moves.iter().map(|m| m.dst).collect();
        keep.sort_unstable();
        keep.dedup();
        let scratch = vec![-1; moves.len()];
        ChildSetup {
            session,
            moves,
            scratch,
            high,
            keep,
            clone_flags: 0,
        }
    }
}

/// Exit codes of a child whose setup failed before it could stop (parent-side diagnosis).
pub const CHILD_EXIT_SESSION: c_int = 120;
pub const CHILD_EXIT_FDS: c_int = 121;
pub const CHILD_EXIT_TRACEME: c_int = 122;
pub const CHILD_EXIT_RESUMED: c_int = 123;

/// Creates a process with PID `pid` that joins a session per `setup.session`, installs
/// `setup.moves` as its only fds, makes the caller its tracer (`PTRACE_TRACEME`) and stops
/// itself with SIGSTOP. The caller then collects that stop with `waitpid` and owns the task.
///
/// The tracer is the calling THREAD: later ptrace requests must come from it. If setup fails
/// the child exits with one of the `CHILD_EXIT_*` codes instead of stopping.
pub fn spawn_traced(pid: Pid, setup: &mut ChildSetup) -> Result<Pid, Errno> {
    // SAFETY: the child branch below only makes raw syscalls on memory allocated before the
    // fork (setup's vectors) and leaves through _exit or is taken over by the tracer.
    match unsafe { fork_with_tid(pid, setup.clone_flags) }? {
        ForkResult::Parent { child } => Ok(child),
        ForkResult::Child => {
            let ok = match setup.session {
                SessionOp::Inherit => true,
                SessionOp::NewGroup => {
                    nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0)).is_ok()
                }
                SessionOp::NewSession => nix::unistd::setsid().is_ok(),
            };
            if !ok {
                child_exit(CHILD_EXIT_SESSION);
            }
            if child_install_fds(&setup.moves, &mut setup.scratch, setup.high, &setup.keep).is_err()
            {
                child_exit(CHILD_EXIT_FDS);
            }
            if nix::sys::ptrace::traceme().is_err() {
                child_exit(CHILD_EXIT_TRACEME);
            }
            // Not raise(): glibc would use the parent's cached TID.
            let _ =
                nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::Signal::SIGSTOP);
            // The tracer rewrites this process entirely; getting here means it let us go.
            child_exit(CHILD_EXIT_RESUMED)
        }
    }
}

/// What currently holds a PID we want, for error messages when `set_tid` says EEXIST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PidState {
    /// Nobody: the PID is free (maybe it was only taken briefly).
    Free,
    /// A running (or stopped) task with this command name.
    Alive { comm: String },
    /// A zombie not yet reaped by its parent (`ppid`).
    Zombie { comm: String, ppid: i32 },
}

/// Reads `/proc/PID/stat` to tell whether `pid` is taken and by what. Plain file I/O, for the
/// parent side only.
pub fn pid_state(pid: Pid) -> PidState {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return PidState::Free;
    };
    // "pid (comm) S ppid ...": comm may contain spaces and parentheses; it ends at the last ')'.
    let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
        return PidState::Alive {
            comm: String::new(),
        };
    };
    let comm = stat.get(open + 1..close).unwrap_or_default().to_string();
    let mut rest = stat.get(close + 1..).unwrap_or_default().split_whitespace();
    let state = rest.next().unwrap_or_default();
    let ppid = rest.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    if state == "Z" || state == "X" {
        PidState::Zombie { comm, ppid }
    } else {
        PidState::Alive { comm }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clone_args_has_the_kernel_size() {
        // CLONE_ARGS_SIZE_VER2 in include/uapi/linux/sched.h.
        assert_eq!(CLONE_ARGS_SIZE, 88);
    }

    #[test]
    fn own_pid_is_alive_and_unknown_is_free() {
        let me = Pid::this();
        assert!(matches!(pid_state(me), PidState::Alive { .. }));
        // Above the default pid_max on every kernel we run on.
        assert_eq!(pid_state(Pid::from_raw(i32::MAX)), PidState::Free);
    }

    #[test]
    fn fork_with_tid_at_a_free_pid() {
        // Find a free PID well above ours; races with other PID allocations are possible, so
        // try a few.
        let pid_max: i32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(32768);
        let base = (Pid::this().as_raw() + 5000) % (pid_max - 1000) + 500;
        for cand in base..base + 50 {
            let pid = Pid::from_raw(cand);
            if pid_state(pid) != PidState::Free {
                continue;
            }
            // SAFETY: the child only calls _exit.
            match unsafe { fork_with_tid(pid, 0) } {
                Ok(ForkResult::Child) => child_exit(7),
                Ok(ForkResult::Parent { child }) => {
                    assert_eq!(child, pid);
                    let st = nix::sys::wait::waitpid(child, None).expect("waitpid");
                    assert_eq!(st, nix::sys::wait::WaitStatus::Exited(child, 7));
                    return;
                }
                Err(Errno::EPERM) => {
                    eprintln!("skip: clone3 set_tid needs CAP_SYS_ADMIN");
                    return;
                }
                Err(Errno::EEXIST) => continue,
                Err(e) => panic!("clone3: {e}"),
            }
        }
        panic!("no free pid found near {base}");
    }
}
