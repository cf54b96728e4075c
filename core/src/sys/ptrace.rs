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

/// What `waitpid` reported for a traced thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// `PTRACE_EVENT_STOP`: `sig` is SIGTRAP for a PTRACE_INTERRUPT/LISTEN stop, or the
    /// stopping signal (SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU) for a group-stop.
    EventStop { sig: i32 },
    /// Signal-delivery-stop: `sig` is about to be delivered; pass it to [`cont`] to deliver it,
    /// or 0 to suppress it. Single-step traps arrive as SIGTRAP here.
    Signal { sig: i32 },
    /// Syscall-enter or -exit stop (reported this way only with `PTRACE_O_TRACESYSGOOD`).
    Syscall,
    /// Another `PTRACE_EVENT_*` (fork, clone, exec, exit, seccomp...).
    Event { event: i32, sig: i32 },
    /// The thread exited with this code.
    Exited { code: i32 },
    /// The thread was killed by a signal.
    Killed { sig: i32, core: bool },
}

impl Stop {
    /// Decodes a raw `waitpid` status word.
    pub fn from_status(status: i32) -> Stop {
        if libc::WIFEXITED(status) {
            return Stop::Exited {
                code: libc::WEXITSTATUS(status),
            };
        }
        if libc::WIFSIGNALED(status) {
            return Stop::Killed {
                sig: libc::WTERMSIG(status),
                core: libc::WCOREDUMP(status),
            };
        }
        let sig = (status >> 8) & 0xff;
        let event = (status >> 16) & 0xffff;
        if sig == libc::SIGTRAP | 0x80 {
            return Stop::Syscall;
        }
        match event {
            0 => Stop::Signal { sig },
            libc::PTRACE_EVENT_STOP => Stop::EventStop { sig },
            event => Stop::Event { event, sig },
        }
    }

    /// A group-stop (the task was or is being stopped by a stop signal).
    pub fn is_group_stop(&self) -> bool {
        matches!(self, Stop::EventStop { sig } if *sig != libc::SIGTRAP)
    }

    /// The thread no longer exists as a traced, stoppable thread.
    pub fn is_gone(&self) -> bool {
        matches!(self, Stop::Exited { .. } | Stop::Killed { .. })
    }
}

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

/// Blocks until `tid` reports its next state change (`waitpid(tid, __WALL)`), retrying EINTR.
pub fn wait_stop(tid: Pid) -> Result<Stop> {
    let mut status = 0;
    loop {
        // SAFETY: status is a valid out pointer.
        let r = unsafe { libc::waitpid(tid.as_raw(), &mut status, libc::__WALL) };
        if r >= 0 {
            return Ok(Stop::from_status(status));
        }
        match Errno::last() {
            Errno::EINTR => continue,
            source => {
                return Err(PtraceError::Wait {
                    tid: tid.as_raw(),
                    source,
                });
            }
        }
    }
}

/// Like [`wait_stop`], but gives up after `timeout` (polling with WNOHANG).
pub fn wait_stop_timeout(tid: Pid, timeout: std::time::Duration) -> Result<Option<Stop>> {
    let deadline = std::time::Instant::now() + timeout;
    let mut status = 0;
    loop {
        // SAFETY: status is a valid out pointer.
        let r = unsafe { libc::waitpid(tid.as_raw(), &mut status, libc::__WALL | libc::WNOHANG) };
        if r > 0 {
            return Ok(Some(Stop::from_status(status)));
        }
        if r < 0 && Errno::last() != Errno::EINTR {
            return Err(PtraceError::Wait {
                tid: tid.as_raw(),
                source: Errno::last(),
            });
        }
        if std::time::Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// How a frozen thread was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrozenState {
    /// It was running (or sleeping); now held in an interrupt stop.
    Running,
    /// It was in (or entering) a group-stop by `sig`; now held in a trap stop. On detach the
    /// kernel puts it back into the group-stop while its process is still stopped; send
    /// SIGSTOP before detaching to be sure (CRIU does).
    Stopped { sig: i32 },
}

/// Seizes `tid` with `options`, interrupts it and waits until it sits in a
/// `PTRACE_EVENT_STOP` from which remote syscalls can run. Signals that arrive first are
/// delivered (the thread handles them and then traps, as CRIU does). A thread found in a
/// group-stop is reported as the group-stop trap first; it is resumed once so that the
/// pending interrupt trap is consumed too (otherwise the next resume would trap again). A
/// thread that exits meanwhile gives [`PtraceError::Gone`].
pub fn freeze(tid: Pid, options: Options) -> Result<FrozenState> {
    seize(tid, options)?;
    stop_seized(tid)
}

/// The second half of [`freeze`], for a thread already seized by us: `PTRACE_INTERRUPT` and
/// wait as described there.
pub fn stop_seized(tid: Pid) -> Result<FrozenState> {
    if let Err(e) = interrupt(tid) {
        let _ = detach(tid, 0);
        return Err(e);
    }
    let mut group_sig = None;
    let mut stop = wait_stop(tid)?;
    loop {
        match stop {
            Stop::EventStop { sig } if sig == libc::SIGTRAP || group_sig.is_some() => {
                return Ok(match group_sig {
                    Some(sig) => FrozenState::Stopped { sig },
                    None => FrozenState::Running,
                });
            }
            Stop::EventStop { sig } => {
                group_sig = Some(sig);
                cont(tid, 0)?;
                // The interrupt normally traps right away; if it was merged into the
                // group-stop trap, ask again.
                stop = match wait_stop_timeout(tid, std::time::Duration::from_millis(500))? {
                    Some(s) => s,
                    None => {
                        interrupt(tid)?;
                        wait_stop(tid)?
                    }
                };
                continue;
            }
            Stop::Signal { sig } => cont(tid, sig)?,
            // Not asked for, but harmless: let it go on to the interrupt trap.
            Stop::Syscall | Stop::Event { .. } => cont(tid, 0)?,
            stop => {
                return Err(PtraceError::Gone {
                    tid: tid.as_raw(),
                    stop,
                    during: "freezing",
                });
            }
        }
        stop = wait_stop(tid)?;
    }
}

/// Reads one register set into `buf`; returns the byte count the kernel filled in.
///
/// # Safety
/// `buf` must point to `len` writable bytes.
pub(crate) unsafe fn getregset_raw(
    tid: Pid,
    nt: libc::c_int,
    name: &'static str,
    buf: *mut c_void,
    len: usize,
) -> Result<usize> {
    let mut iov = libc::iovec {
        iov_base: buf,
        iov_len: len,
    };
    // SAFETY: iov describes the caller's buffer; the kernel writes at most iov_len bytes.
    unsafe {
        raw(
            libc::PTRACE_GETREGSET,
            name,
            tid,
            nt as usize as *mut c_void,
            (&mut iov as *mut libc::iovec).cast(),
        )
    }?;
    Ok(iov.iov_len)
}

/// Writes one register set from `buf` (`len` bytes).
///
/// # Safety
/// `buf` must point to `len` readable bytes.
pub(crate) unsafe fn setregset_raw(
    tid: Pid,
    nt: libc::c_int,
    name: &'static str,
    buf: *const c_void,
    len: usize,
) -> Result<()> {
    let mut iov = libc::iovec {
        iov_base: buf as *mut c_void,
        iov_len: len,
    };
    // SAFETY: the kernel only reads iov_len bytes from the caller's buffer for SETREGSET.
    unsafe {
        raw(
            libc::PTRACE_SETREGSET,
            name,
            tid,
            nt as usize as *mut c_void,
            (&mut iov as *mut libc::iovec).cast(),
        )
    }
    .map(drop)
}

/// General registers via `PTRACE_GETREGSET NT_PRSTATUS` (includes fs_base/gs_base).
pub fn get_regs(tid: Pid) -> Result<Regs> {
    // SAFETY: user_regs_struct is plain integers; all-zero is valid.
    let mut regs: Regs = unsafe { std::mem::zeroed() };
    let want = std::mem::size_of::<Regs>();
    // SAFETY: regs is a writable buffer of `want` bytes.
    let got = unsafe {
        getregset_raw(
            tid,
            libc::NT_PRSTATUS,
            "PTRACE_GETREGSET(NT_PRSTATUS)",
            (&mut regs as *mut Regs).cast(),
            want,
        )
    }?;
    if got != want {
        // A 32-bit (compat) task has a smaller set; we do not support those.
        return Err(PtraceError::ShortRegset {
            request: "PTRACE_GETREGSET(NT_PRSTATUS)",
            tid: tid.as_raw(),
            got,
            expected: want,
        });
    }
    Ok(regs)
}

/// Sets general registers via `PTRACE_SETREGSET NT_PRSTATUS`.
pub fn set_regs(tid: Pid, regs: &Regs) -> Result<()> {
    // SAFETY: regs is a readable buffer of its own size.
    unsafe {
        setregset_raw(
            tid,
            libc::NT_PRSTATUS,
            "PTRACE_SETREGSET(NT_PRSTATUS)",
            (regs as *const Regs).cast(),
            std::mem::size_of::<Regs>(),
        )
    }
}

/// `arch_prctl(code, &value)` run by the kernel on behalf of the tracee via
/// `PTRACE_ARCH_PRCTL`; `code` is one of `kabi::ARCH_GET_FS` / `ARCH_GET_GS`.
pub fn arch_prctl_get(tid: Pid, code: libc::c_int) -> Result<u64> {
    let mut value: u64 = 0;
    // SAFETY: for the GET codes the kernel stores one u64 at addr.
    unsafe {
        raw(
            kabi::PTRACE_ARCH_PRCTL,
            "PTRACE_ARCH_PRCTL",
            tid,
            (&mut value as *mut u64).cast(),
            code as usize as *mut c_void,
        )
    }?;
    Ok(value)
}

/// One GDT TLS slot (`entry` in 12..=14) via `PTRACE_GET_THREAD_AREA`.
pub fn get_thread_area(tid: Pid, entry: u32) -> Result<kabi::user_desc> {
    let mut desc = kabi::user_desc::default();
    // SAFETY: the kernel writes one user_desc at data.
    unsafe {
        raw(
            kabi::PTRACE_GET_THREAD_AREA,
            "PTRACE_GET_THREAD_AREA",
            tid,
            entry as usize as *mut c_void,
            (&mut desc as *mut kabi::user_desc).cast(),
        )
    }?;
    Ok(desc)
}

/// The three TLS GDT slots, as CRIU stores them in `thread_info.tls`.
pub fn get_tls_entries(tid: Pid) -> Result<Vec<kabi::user_desc>> {
    (0..kabi::GDT_ENTRY_TLS_ENTRIES)
        .map(|i| get_thread_area(tid, kabi::GDT_ENTRY_TLS_MIN + i))
        .collect()
}

/// Which kind of syscall stop the thread is in (`PTRACE_GET_SYSCALL_INFO`, Linux 5.3+):
/// `libc::PTRACE_SYSCALL_INFO_ENTRY`, `_EXIT`, `_SECCOMP`, or `_NONE` for other stops.
pub fn syscall_stop_kind(tid: Pid) -> Result<u8> {
    nix::sys::ptrace::syscall_info(tid)
        .map(|i| i.op)
        .map_err(req_err("PTRACE_GET_SYSCALL_INFO", tid))
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
mod sig;
pub use fpu::*;
pub use sig::*;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_status_words() {
        // Exit code 3.
        assert_eq!(Stop::from_status(3 << 8), Stop::Exited { code: 3 });
        // Killed by SIGKILL.
        assert_eq!(
            Stop::from_status(libc::SIGKILL),
            Stop::Killed {
                sig: libc::SIGKILL,
                core: false
            }
        );
        // Signal-delivery-stop of SIGUSR1, and of a real-time signal.
        assert_eq!(
            Stop::from_status((libc::SIGUSR1 << 8) | 0x7f),
            Stop::Signal { sig: libc::SIGUSR1 }
        );
        assert_eq!(
            Stop::from_status((40 << 8) | 0x7f),
            Stop::Signal { sig: 40 }
        );
        // Interrupt stop and group-stop.
        let ev = libc::PTRACE_EVENT_STOP << 16;
        let s = Stop::from_status(ev | (libc::SIGTRAP << 8) | 0x7f);
        assert_eq!(s, Stop::EventStop { sig: libc::SIGTRAP });
        assert!(!s.is_group_stop());
        let g = Stop::from_status(ev | (libc::SIGSTOP << 8) | 0x7f);
        assert!(g.is_group_stop());
        // Syscall stop with TRACESYSGOOD.
        assert_eq!(
            Stop::from_status(((libc::SIGTRAP | 0x80) << 8) | 0x7f),
            Stop::Syscall
        );
        // Fork event.
        assert_eq!(
            Stop::from_status((libc::PTRACE_EVENT_FORK << 16) | (libc::SIGTRAP << 8) | 0x7f),
            Stop::Event {
                event: libc::PTRACE_EVENT_FORK,
                sig: libc::SIGTRAP
            }
        );
    }
}

#[cfg(test)]
mod kernel_tests;
