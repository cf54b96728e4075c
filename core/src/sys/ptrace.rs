//! ptrace wrappers: seize/interrupt/wait/continue, register sets, signal state.
//!
//! The freezing model: a task is seized with `PTRACE_SEIZE` (no signal sent), then
//! `PTRACE_INTERRUPT` puts it into a ptrace-stop we can read and modify; `PTRACE_DETACH`
//! lets it run again. Every function here operates on ONE thread (`tid`); a process is frozen by
//! freezing each of its threads. Every wrapper returns [`PtraceError`], naming the request and
//! the tid; [`PtraceError::errno`] gives the raw errno (ESRCH = gone or not stopped).
//!
//! Submodules (re-exported here): `fpu` (FP and XSAVE register sets), `sig` (siginfo,
//! signal queues, sigmask, rseq, seccomp filters).

use std::ffi::c_void;

use libc::{c_long, c_uint, pid_t};
use nix::errno::Errno;
pub use nix::sys::ptrace::Options;
pub use nix::unistd::Pid;

use super::kabi;

/// General purpose registers (x86_64 `struct user_regs_struct`).
pub type Regs = libc::user_regs_struct;

/// Errors of the ptrace layer.
#[derive(Debug, thiserror::Error)]
pub enum PtraceError {
    #[error("ptrace({request}) on tid {tid} failed")]
    Request {
        request: &'static str,
        tid: pid_t,
        #[source]
        source: Errno,
    },
    #[error("waitpid(__WALL) on tid {tid} failed")]
    Wait {
        tid: pid_t,
        #[source]
        source: Errno,
    },
    #[error("tid {tid} went away ({stop:?}) while {during}")]
    Gone {
        tid: pid_t,
        stop: Stop,
        during: &'static str,
    },
    #[error("tid {tid}: unexpected stop {stop:?} while {during}")]
    UnexpectedStop {
        tid: pid_t,
        stop: Stop,
        during: &'static str,
    },
    /// The thread sleeps where no ptrace stop reaches it. It stays seized, its interrupt
    /// pending: it stops once it leaves that sleep, and is released when we exit.
    #[error("tid {tid} cannot be stopped: {why}")]
    Unstoppable { tid: pid_t, why: String },
    #[error("cannot read the signal state of tid {tid}")]
    Proc {
        tid: pid_t,
        #[source]
        source: crate::proc::ProcError,
    },
    #[error("ptrace({request}) on tid {tid}: kernel returned {got} bytes, expected {expected}")]
    ShortRegset {
        request: &'static str,
        tid: pid_t,
        got: usize,
        expected: usize,
    },
}

impl PtraceError {
    /// The errno behind this error, if it came from a syscall.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            PtraceError::Request { source, .. } | PtraceError::Wait { source, .. } => Some(*source),
            _ => None,
        }
    }
}

pub type Result<T, E = PtraceError> = std::result::Result<T, E>;

fn req_err(request: &'static str, tid: Pid) -> impl FnOnce(Errno) -> PtraceError {
    move |source| PtraceError::Request {
        request,
        tid: tid.as_raw(),
        source,
    }
}

/// Raw `ptrace(request, tid, addr, data)` for requests that return 0 or a count.
///
/// # Safety
/// `addr` and `data` must be valid for what `request` does with them (see ptrace(2)).
unsafe fn raw(
    request: c_uint,
    name: &'static str,
    tid: Pid,
    addr: *mut c_void,
    data: *mut c_void,
) -> Result<c_long> {
    // SAFETY: the caller guarantees addr/data fit the request.
    let ret = unsafe { libc::ptrace(request, tid.as_raw(), addr, data) };
    if ret < 0 {
        Err(req_err(name, tid)(Errno::last()))
    } else {
        Ok(ret)
    }
}

/// `PTRACE_SEIZE`: become the tracer of `tid` without stopping it.
///
/// Errors: EPERM (not allowed, or already traced), ESRCH (no such thread).
/// Wanted options for freezing are usually `PTRACE_O_TRACESYSGOOD`, and
/// `PTRACE_O_SUSPEND_SECCOMP` ([`suspend_seccomp_option`]) when the task has seccomp filters
/// (otherwise injected syscalls may be refused).
pub fn seize(tid: Pid, options: Options) -> Result<()> {
    nix::sys::ptrace::seize(tid, options).map_err(req_err("PTRACE_SEIZE", tid))
}

/// `PTRACE_O_SUSPEND_SECCOMP` (nix does not name it).
pub fn suspend_seccomp_option() -> Options {
    Options::from_bits_retain(kabi::PTRACE_O_SUSPEND_SECCOMP)
}

/// `PTRACE_SETOPTIONS` on a stopped tracee.
pub fn set_options(tid: Pid, options: Options) -> Result<()> {
    nix::sys::ptrace::setoptions(tid, options).map_err(req_err("PTRACE_SETOPTIONS", tid))
}

/// `PTRACE_INTERRUPT`: ask a seized thread to enter a `PTRACE_EVENT_STOP` (collect it with
/// [`wait_stop`]). Errors: ESRCH (not seized by us).
pub fn interrupt(tid: Pid) -> Result<()> {
    nix::sys::ptrace::interrupt(tid).map_err(req_err("PTRACE_INTERRUPT", tid))
}

/// `PTRACE_CONT`, delivering `sig` (0 = none). Errors: ESRCH (not stopped under us).
pub fn cont(tid: Pid, sig: i32) -> Result<()> {
    // SAFETY: PTRACE_CONT reads data as a signal number only.
    unsafe { raw(libc::PTRACE_CONT, "PTRACE_CONT", tid, null(), sig as _) }.map(drop)
}

/// `PTRACE_SYSCALL`: continue to the next syscall-enter/exit stop, delivering `sig` (0 = none).
pub fn cont_syscall(tid: Pid, sig: i32) -> Result<()> {
    // SAFETY: PTRACE_SYSCALL reads data as a signal number only.
    unsafe {
        raw(
            libc::PTRACE_SYSCALL,
            "PTRACE_SYSCALL",
            tid,
            null(),
            sig as _,
        )
    }
    .map(drop)
}

/// `PTRACE_SINGLESTEP`: run one instruction, delivering `sig` (0 = none); a `syscall`
/// instruction is stepped as a whole and traps at syscall exit.
pub fn singlestep(tid: Pid, sig: i32) -> Result<()> {
    // SAFETY: PTRACE_SINGLESTEP reads data as a signal number only.
    unsafe {
        raw(
            libc::PTRACE_SINGLESTEP,
            "PTRACE_SINGLESTEP",
            tid,
            null(),
            sig as _,
        )
    }
    .map(drop)
}

/// `PTRACE_LISTEN`: let a thread in group-stop stay stopped but report job-control changes.
pub fn listen(tid: Pid) -> Result<()> {
    // SAFETY: PTRACE_LISTEN takes no arguments.
    unsafe { raw(libc::PTRACE_LISTEN, "PTRACE_LISTEN", tid, null(), null()) }.map(drop)
}

/// `PTRACE_DETACH`, delivering `sig` (0 = none). Errors: ESRCH (not stopped under us).
pub fn detach(tid: Pid, sig: i32) -> Result<()> {
    // SAFETY: PTRACE_DETACH reads data as a signal number only.
    unsafe { raw(libc::PTRACE_DETACH, "PTRACE_DETACH", tid, null(), sig as _) }.map(drop)
}

fn null() -> *mut c_void {
    std::ptr::null_mut()
}

/// `PTRACE_PEEKTEXT`: one word of tracee memory.
pub fn peek(tid: Pid, addr: u64) -> Result<u64> {
    nix::sys::ptrace::read(tid, addr as usize as *mut c_void)
        .map(|w| w as u64)
        .map_err(req_err("PTRACE_PEEKTEXT", tid))
}

/// `PTRACE_POKETEXT`: write one word of tracee memory (works on read-only text too).
pub fn poke(tid: Pid, addr: u64, word: u64) -> Result<()> {
    nix::sys::ptrace::write(tid, addr as usize as *mut c_void, word as c_long)
        .map_err(req_err("PTRACE_POKETEXT", tid))
}

mod fpu;
mod regs;
mod shstk;
mod sig;
mod stop;
pub use fpu::*;
pub use regs::*;
pub use shstk::*;
pub use sig::*;
pub use stop::*;

#[cfg(test)]
mod kernel_tests;
