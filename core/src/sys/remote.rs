//! Remote syscalls: run one syscall inside a thread we hold in a ptrace-stop, without any
//! parasite code.
//!
//! How one call works ([`RemoteTask::syscall`]): save the thread's registers and signal mask,
//! block every signal, point `rip` at a `syscall` instruction (`0f 05`), load rax/args and set
//! `orig_rax = -1` (so an interrupted syscall the thread was sleeping in is not restarted
//! under us), then step through the syscall-enter and syscall-exit stops with `PTRACE_SYSCALL`
//! (no signal is raised, so no handler is disturbed), read rax, and put the registers and mask
//! back exactly. Because the registers come back verbatim, an interrupted syscall
//! (`rax = -ERESTART*`, `orig_rax = nr`) is still restarted when the thread later resumes.
//!
//! Where the `syscall` instruction comes from: a `0f 05` found in the task's `[vdso]`, else
//! one poked over the current ip for the duration of the call (original bytes restored), or
//! an address the caller supplies ([`RemoteTask::with_gadget`], e.g. a page restore mapped).
//!
//! All threads of the target process must be frozen while this runs (the poke fallback
//! patches shared text; the scratch page is shared by the whole mm).

use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;
use nix::unistd::Pid;

use super::ptrace::{self, PtraceError, Regs, Stop};
use super::vm::{self, VmError};

mod calls;
pub use calls::*;

/// Errors of remote syscalls.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error(transparent)]
    Ptrace(#[from] PtraceError),
    #[error(transparent)]
    Vm(#[from] VmError),
    #[error("tid {tid} runs 32-bit code (cs={cs:#x}); only x86_64 tasks can be checkpointed")]
    Compat { tid: i32, cs: u64 },
    #[error("remote {name}() in tid {tid} failed")]
    Syscall {
        name: &'static str,
        tid: i32,
        #[source]
        errno: Errno,
    },
    #[error("tid {tid}: remote syscall {nr} did not come back through its exit stop ({why})")]
    Lost { tid: i32, nr: i64, why: String },
    #[error("reading /proc/{pid}/maps")]
    Maps {
        pid: i32,
        #[source]
        source: std::io::Error,
    },
    #[error("tid {tid}: remote {what} reported {got} bytes, expected {expected}")]
    BadSize {
        tid: i32,
        what: &'static str,
        got: usize,
        expected: usize,
    },
}

pub type Result<T, E = RemoteError> = std::result::Result<T, E>;

/// Where the injected `syscall` instruction lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gadget {
    /// A `0f 05` at this address (in the vDSO, or a page the caller mapped).
    At(u64),
    /// Patch `0f 05` over the bytes at the current ip for each call.
    PokeAtIp,
}

/// A scratch area in the target's address space, for syscalls that take pointers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scratch {
    pub addr: u64,
    pub len: usize,
    /// We mapped it (and unmap it when done).
    owned: bool,
}

/// One thread held in a ptrace-stop by us, able to run syscalls.
#[derive(Debug)]
pub struct RemoteTask {
    tid: Pid,
    gadget: Gadget,
    scratch: Option<Scratch>,
}

const EFLAGS_TF: u64 = 1 << 8;
const EFLAGS_DF: u64 = 1 << 10;
/// Every signal except SIGKILL/SIGSTOP (which cannot be blocked anyway).
const ALL_SIGNALS: u64 = !0;

impl RemoteTask {
    /// Prepares remote syscalls in `tid`, which must be in a ptrace-stop under us. Looks for
    /// a `syscall` instruction in the process's `[vdso]` (process of `pid`, the thread-group
    /// leader's pid, whose maps are shared by all threads), else patches at the ip per call.
    pub fn new(pid: Pid, tid: Pid) -> Result<RemoteTask> {
        let gadget = match find_vdso_syscall(pid)? {
            Some(addr) => Gadget::At(addr),
            None => Gadget::PokeAtIp,
        };
        tracing::debug!(tid = tid.as_raw(), ?gadget, "remote syscall gadget");
        Ok(RemoteTask {
            tid,
            gadget,
            scratch: None,
        })
    }

    /// Like [`RemoteTask::new`], with a caller-chosen `syscall` instruction address.
    pub fn with_gadget(tid: Pid, gadget: Gadget) -> RemoteTask {
        RemoteTask {
            tid,
            gadget,
            scratch: None,
        }
    }

    pub fn tid(&self) -> Pid {
        self.tid
    }

    pub fn gadget(&self) -> Gadget {
        self.gadget
    }

    /// Runs syscall `nr` with `args` (rdi, rsi, rdx, r10, r8, r9) in the thread and returns
    /// the raw rax: a negative value in -4095..=-1 is `-errno`. Registers, signal mask and
    /// patched text are restored before returning, also on error.
    pub fn syscall(&mut self, nr: i64, args: [u64; 6]) -> Result<i64> {
        let tid = self.tid;
        let saved = ptrace::get_regs(tid)?;
        if saved.cs != 0x33 {
            return Err(RemoteError::Compat {
                tid: tid.as_raw(),
                cs: saved.cs,
            });
        }
        let mask = ptrace::get_sigmask(tid)?;
        ptrace::set_sigmask(tid, ALL_SIGNALS)?;
        let (addr, poked) = match self.gadget {
            Gadget::At(a) => (a, None),
            Gadget::PokeAtIp => {
                let ip = saved.rip;
                match poke_syscall(tid, ip) {
                    Ok(orig) => (ip, Some(orig)),
                    Err(e) => {
                        let _ = ptrace::set_sigmask(tid, mask);
                        return Err(e.into());
                    }
                }
            }
        };
        let result = run_at(tid, &saved, addr, nr, args);
        // Put everything back; report the first failure.
        let mut restore = Ok(());
        if let Some(orig) = poked {
            restore = restore.and(unpoke(tid, orig));
        }
        restore = restore.and(ptrace::set_regs(tid, &saved));
        restore = restore.and(ptrace::set_sigmask(tid, mask));
        let ret = result?;
        restore?;
        tracing::trace!(tid = tid.as_raw(), nr, ret, "remote syscall");
        Ok(ret)
    }

    /// Runs a syscall and turns a `-errno` result into [`RemoteError::Syscall`] named `name`.
    pub fn call(&mut self, name: &'static str, nr: i64, args: [u64; 6]) -> Result<u64> {
        let ret = self.syscall(nr, args)?;
        if (-4095..0).contains(&ret) {
            return Err(RemoteError::Syscall {
                name,
                tid: self.tid.as_raw(),
                errno: Errno::from_raw(-ret as i32),
            });
        }
        Ok(ret as u64)
    }

    /// The scratch area, mapping one (`len` rounded up to pages, shared anonymous so it never
    /// merges with the task's own VMAs) on first use. Dumpers must skip it when they read
    /// /proc/PID/maps, or release it before.
    pub fn scratch(&mut self, len: usize) -> Result<Scratch> {
        if let Some(s) = self.scratch {
            if s.len >= len {
                return Ok(s);
            }
            self.release_scratch()?;
        }
        let len = len.max(1).div_ceil(4096) * 4096;
        let addr = self.call(
            "mmap",
            libc::SYS_mmap,
            [
                0,
                len as u64,
                (libc::PROT_READ | libc::PROT_WRITE) as u64,
                (libc::MAP_SHARED | libc::MAP_ANONYMOUS) as u64,
                u64::MAX, // fd -1
                0,
            ],
        )?;
        let s = Scratch {
            addr,
            len,
            owned: true,
        };
        self.scratch = Some(s);
        Ok(s)
    }

    /// Uses an existing area (e.g. another thread's scratch) without taking ownership.
    pub fn adopt_scratch(&mut self, addr: u64, len: usize) {
        self.scratch = Some(Scratch {
            addr,
            len,
            owned: false,
        });
    }

    /// Unmaps the scratch area if we mapped it.
    pub fn release_scratch(&mut self) -> Result<()> {
        if let Some(s) = self.scratch.take()
            && s.owned
        {
            self.call(
                "munmap",
                libc::SYS_munmap,
                [s.addr, s.len as u64, 0, 0, 0, 0],
            )?;
        }
        Ok(())
    }

    /// Reads target memory (process_vm_readv).
    pub fn read_mem(&self, addr: u64, buf: &mut [u8]) -> Result<()> {
        Ok(vm::read_exact(self.tid, addr, buf)?)
    }

    /// Writes target memory (process_vm_writev; the pages must be writable).
    pub fn write_mem(&self, addr: u64, data: &[u8]) -> Result<()> {
        Ok(vm::write_all(self.tid, addr, data)?)
    }

    /// Releases the scratch area; call before detaching to see errors (Drop only logs).
    pub fn finish(mut self) -> Result<()> {
        self.release_scratch()
    }
}

impl Drop for RemoteTask {
    fn drop(&mut self) {
        if let Err(e) = self.release_scratch() {
            tracing::warn!(tid = self.tid.as_raw(), error = %e, "leaving remote scratch mapped");
        }
    }
}

/// Sets up the registers for one syscall at `addr` and drives it through its enter and exit
/// stops; returns rax.
fn run_at(tid: Pid, saved: &Regs, addr: u64, nr: i64, args: [u64; 6]) -> Result<i64> {
    let mut r = *saved;
    r.rip = addr;
    r.rax = nr as u64;
    r.orig_rax = u64::MAX;
    r.rdi = args[0];
    r.rsi = args[1];
    r.rdx = args[2];
    r.r10 = args[3];
    r.r8 = args[4];
    r.r9 = args[5];
    r.eflags &= !(EFLAGS_TF | EFLAGS_DF);
    ptrace::set_regs(tid, &r)?;
    for (want, label) in [
        (libc::PTRACE_SYSCALL_INFO_ENTRY, "entry"),
        (libc::PTRACE_SYSCALL_INFO_EXIT, "exit"),
    ] {
        ptrace::cont_syscall(tid, 0)?;
        let stop = ptrace::wait_stop(tid)?;
        let lost = |why: String| RemoteError::Lost {
            tid: tid.as_raw(),
            nr,
            why,
        };
        match stop {
            Stop::Syscall => {}
            // Without PTRACE_O_TRACESYSGOOD a syscall stop looks like SIGTRAP; its siginfo
            // has si_code == SIGTRAP, which no real signal carries.
            Stop::Signal { sig } if sig == libc::SIGTRAP => {
                let si = ptrace::get_siginfo(tid)?;
                if si.code() != libc::SIGTRAP {
                    return Err(lost(format!("a SIGTRAP (si_code {}) arrived", si.code())));
                }
            }
            stop => return Err(lost(format!("got {stop:?} waiting for the {label} stop"))),
        }
        // The kind is only reported with TRACESYSGOOD (0 = unknown otherwise).
        let op = ptrace::syscall_stop_kind(tid)?;
        if op != libc::PTRACE_SYSCALL_INFO_NONE && op != want {
            return Err(lost(format!("stop kind {op} instead of {label}")));
        }
        if want == libc::PTRACE_SYSCALL_INFO_ENTRY {
            let at = ptrace::get_regs(tid)?;
            if at.orig_rax != nr as u64 {
                return Err(lost(format!(
                    "entered syscall {} instead",
                    at.orig_rax as i64
                )));
            }
        }
    }
    let after = ptrace::get_regs(tid)?;
    if after.rip != addr + 2 {
        return Err(RemoteError::Lost {
            tid: tid.as_raw(),
            nr,
            why: format!(
                "ip {:#x} after the call, expected {:#x}",
                after.rip,
                addr + 2
            ),
        });
    }
    Ok(after.rax as i64)
}

/// Original aligned words overwritten by [`poke_syscall`]: (address, word) pairs.
type Poked = [(u64, u64); 2];

/// Writes `0f 05` at `ip` through aligned words (so nothing past the instruction's own
/// word(s) is touched; `ip` may sit at the end of a page), returning the original words.
fn poke_syscall(tid: Pid, ip: u64) -> Result<Poked, PtraceError> {
    let first = ip & !7;
    let last = (ip + 1) & !7;
    let mut orig: Poked = [(first, ptrace::peek(tid, first)?), (last, 0)];
    if last != first {
        orig[1].1 = ptrace::peek(tid, last)?;
    }
    let patched = patch_words(ip, orig);
    ptrace::poke(tid, first, patched[0].1)?;
    if last != first
        && let Err(e) = ptrace::poke(tid, last, patched[1].1)
    {
        let _ = ptrace::poke(tid, first, orig[0].1);
        return Err(e);
    }
    Ok(orig)
}

/// The words of `orig` with `0f 05` placed at `ip`.
fn patch_words(ip: u64, mut words: Poked) -> Poked {
    let first = words[0].0;
    for (i, byte) in [0x0fu64, 0x05].into_iter().enumerate() {
        let at = ip + i as u64;
        let slot = usize::from(at & !7 != first);
        let shift = (at & 7) * 8;
        words[slot].1 = (words[slot].1 & !(0xff << shift)) | (byte << shift);
    }
    words
}

/// Puts back the words saved by [`poke_syscall`].
fn unpoke(tid: Pid, orig: Poked) -> Result<(), PtraceError> {
    let r = ptrace::poke(tid, orig[0].0, orig[0].1);
    if orig[1].0 != orig[0].0 {
        r.and(ptrace::poke(tid, orig[1].0, orig[1].1))
    } else {
        r
    }
}

/// Finds a `syscall` instruction in the `[vdso]` of `pid`, if it has one.
pub fn find_vdso_syscall(pid: Pid) -> Result<Option<u64>> {
    let path = format!("/proc/{pid}/maps");
    let maps = std::fs::read(&path).map_err(|source| RemoteError::Maps {
        pid: pid.as_raw(),
        source,
    })?;
    let Some((start, end)) = maps
        .split(|b| *b == b'\n')
        .find(|l| l.ends_with(b"[vdso]"))
        .and_then(parse_range)
    else {
        return Ok(None);
    };
    let mut text = vec![0u8; (end - start) as usize];
    vm::read_exact(pid, start, &mut text)?;
    Ok(text
        .windows(2)
        .position(|w| w == [0x0f, 0x05])
        .map(|off| start + off as u64))
}

/// Parses the leading `start-end` hex range of a maps line.
fn parse_range(line: &[u8]) -> Option<(u64, u64)> {
    let range = line.split(|b| *b == b' ').next()?;
    let s = std::ffi::OsStr::from_bytes(range).to_str()?;
    let (a, b) = s.split_once('-')?;
    let (a, b) = (
        u64::from_str_radix(a, 16).ok()?,
        u64::from_str_radix(b, 16).ok()?,
    );
    (a < b && b - a <= 1 << 24).then_some((a, b))
}

#[cfg(test)]
mod kernel_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscall_patch_within_and_across_words() {
        let w = patch_words(0x1003, [(0x1000, 0x8877_6655_4433_2211), (0x1000, 0)]);
        assert_eq!(w[0].1, 0x8877_6605_0f33_2211);
        // ip at the last byte of a word: 0f ends the first word, 05 starts the next.
        let w = patch_words(0x1007, [(0x1000, 0x8877_6655_4433_2211), (0x1008, 0xffff)]);
        assert_eq!(w[0].1, 0x0f77_6655_4433_2211);
        assert_eq!(w[1].1, 0xff05);
    }

    #[test]
    fn maps_range_parsing() {
        let l = b"7ffd1a5f1000-7ffd1a5f3000 r-xp 00000000 00:00 0                          [vdso]";
        assert_eq!(parse_range(l), Some((0x7ffd1a5f1000, 0x7ffd1a5f3000)));
        assert_eq!(parse_range(b"zz-10 r-xp"), None);
        assert_eq!(parse_range(b"20-10 r-xp"), None);
        assert_eq!(parse_range(b""), None);
    }
}
