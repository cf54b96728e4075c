//! Waiting for ptrace stops and freezing a thread.

use nix::errno::Errno;

use super::{
    Options, Pid, PtraceError, Result, SigQueue, cont, detach, get_sigmask, interrupt,
    peek_siginfo, req_err, seize, set_sigmask,
};

/// What `waitpid` reported for a traced thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// `PTRACE_EVENT_STOP`: `sig` is SIGTRAP for a PTRACE_INTERRUPT/LISTEN stop, or the
    /// stopping signal (SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU) for a group-stop. While the
    /// whole process is stopped, an interrupt trap also reports the stopping signal.
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

/// Which kind of syscall stop the thread is in (`PTRACE_GET_SYSCALL_INFO`, Linux 5.3+):
/// `libc::PTRACE_SYSCALL_INFO_ENTRY`, `_EXIT`, `_SECCOMP`, or `_NONE` for other stops.
pub fn syscall_stop_kind(tid: Pid) -> Result<u8> {
    nix::sys::ptrace::syscall_info(tid)
        .map(|i| i.op)
        .map_err(req_err("PTRACE_GET_SYSCALL_INFO", tid))
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
/// pending interrupt trap is consumed too (otherwise the next resume would trap again). Stop
/// signals still queued for it (a stopped task sent SIGSTOP again) are dropped, as CRIU does,
/// and make it [`FrozenState::Stopped`]. A thread that exits meanwhile gives
/// [`PtraceError::Gone`].
pub fn freeze(tid: Pid, options: Options) -> Result<FrozenState> {
    freeze_checked(tid, options, &mut || None)
}

/// [`freeze`], asking `stuck` every 100 ms while the thread has not stopped yet: when it
/// says why the thread cannot stop (a sleep no ptrace stop interrupts, such as a vfork
/// parent's), gives [`PtraceError::Unstoppable`] instead of waiting on.
pub fn freeze_checked(
    tid: Pid,
    options: Options,
    stuck: &mut dyn FnMut() -> Option<String>,
) -> Result<FrozenState> {
    seize(tid, options)?;
    stop_seized_checked(tid, stuck)
}

/// The second half of [`freeze`], for a thread already seized by us: `PTRACE_INTERRUPT` and
/// wait as described there.
pub fn stop_seized(tid: Pid) -> Result<FrozenState> {
    stop_seized_checked(tid, &mut || None)
}

fn stop_seized_checked(tid: Pid, stuck: &mut dyn FnMut() -> Option<String>) -> Result<FrozenState> {
    if let Err(e) = interrupt(tid) {
        let _ = detach(tid, 0);
        return Err(e);
    }
    let mut group_sig = None;
    let mut stop = loop {
        if let Some(s) = wait_stop_timeout(tid, std::time::Duration::from_millis(100))? {
            break s;
        }
        if let Some(why) = stuck() {
            return Err(PtraceError::Unstoppable {
                tid: tid.as_raw(),
                why,
            });
        }
    };
    loop {
        match stop {
            Stop::EventStop { sig } if sig == libc::SIGTRAP || group_sig.is_some() => {
                skip_queued_stops(tid, &mut group_sig)?;
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
            // A stop signal arriving now would start a new group-stop, and its trap is not
            // one remote calls can run from: suppress it (the task is recorded as stopped
            // and stopped again on release) and trap right after it.
            Stop::Signal { sig } if would_stop(tid, sig)? => {
                group_sig.get_or_insert(sig);
                interrupt(tid)?;
                cont(tid, 0)?;
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

/// Signals whose default action stops the task.
const STOP_SIGNALS: [i32; 4] = [libc::SIGSTOP, libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU];

fn sig_bit(sig: i32) -> u64 {
    1u64 << (sig - 1)
}

/// Whether delivering `sig` to `tid` would stop it: SIGSTOP always; SIGTSTP, SIGTTIN and
/// SIGTTOU when the process has no handler for them (SigCgt in /proc).
fn would_stop(tid: Pid, sig: i32) -> Result<bool> {
    if sig == libc::SIGSTOP {
        return Ok(true);
    }
    if !STOP_SIGNALS.contains(&sig) {
        return Ok(false);
    }
    let st =
        crate::proc::status::read_status(tid.as_raw()).map_err(|source| PtraceError::Proc {
            tid: tid.as_raw(),
            source,
        })?;
    Ok(st.sig_cgt & sig_bit(sig) == 0)
}

/// The first stop signal queued for `tid` (its own queue, then the process's) that would
/// stop it once it runs: a task stopped and then sent SIGSTOP again keeps that signal
/// queued, and the first remote call would dequeue it instead of making its syscall.
fn queued_stop(tid: Pid) -> Result<Option<i32>> {
    let blocked = get_sigmask(tid)?;
    for queue in [SigQueue::Thread, SigQueue::Shared] {
        for si in peek_siginfo(tid, queue)? {
            let sig = si.signo();
            // SIGSTOP cannot be blocked; a blocked SIGTSTP stays queued for the task.
            let deliverable = sig == libc::SIGSTOP || blocked & sig_bit(sig) == 0;
            if deliverable && would_stop(tid, sig)? {
                return Ok(Some(sig));
            }
        }
    }
    Ok(None)
}

/// From an interrupt trap: dequeue and drop every queued stop signal of `tid`, as CRIU does,
/// recording the first one in `group_sig`, and come back to an interrupt trap. While doing
/// so every other signal is blocked, so the task's own signals stay queued (to be dumped).
fn skip_queued_stops(tid: Pid, group_sig: &mut Option<i32>) -> Result<()> {
    while let Some(sig) = queued_stop(tid)? {
        group_sig.get_or_insert(sig);
        let mask = get_sigmask(tid)?;
        set_sigmask(tid, !sig_bit(sig))?;
        let skipped = skip_one_signal(tid, sig);
        // Back in a trap (or failed): the task's own mask again.
        let restored = set_sigmask(tid, mask);
        skipped?;
        restored?;
    }
    Ok(())
}

/// Resumes `tid`, drops `sig` at its signal-delivery-stop and waits for the interrupt trap
/// that follows. Another thread may have dequeued a shared signal first: then the thread
/// runs on and is interrupted after a short wait.
fn skip_one_signal(tid: Pid, sig: i32) -> Result<()> {
    cont(tid, 0)?;
    let mut interrupted = false;
    loop {
        let stop = match wait_stop_timeout(tid, std::time::Duration::from_millis(100))? {
            Some(s) => s,
            None if !interrupted => {
                interrupted = true;
                interrupt(tid)?;
                continue;
            }
            None => continue,
        };
        match stop {
            Stop::EventStop { .. } => return Ok(()),
            Stop::Signal { sig: s } if s == sig => {
                // Interrupt while stopped: the trap comes before any other dequeue.
                interrupted = true;
                interrupt(tid)?;
                cont(tid, 0)?;
            }
            Stop::Signal { sig: s } => cont(tid, s)?,
            Stop::Syscall | Stop::Event { .. } => cont(tid, 0)?,
            stop => {
                return Err(PtraceError::Gone {
                    tid: tid.as_raw(),
                    stop,
                    during: "dropping a queued stop signal",
                });
            }
        }
    }
}

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
