//! Remote syscalls in a ptrace-stopped thread of the task being restored.
//!
//! Each call sets the registers (ip on a `syscall` instruction, ax = number, args), resumes
//! with PTRACE_SYSCALL to the syscall-enter stop and again to the syscall-exit stop, and
//! reads ax. The thread is left in a syscall-exit stop, from which the next call (or the
//! final register set) starts. `orig_ax` is set to -1 so the kernel never applies its syscall
//! restart logic to our register sets. A clone made by the call (PTRACE_EVENT_CLONE) is
//! collected and reported.

use nix::errno::Errno;
use nix::unistd::Pid;

use crate::sys::ptrace::{self as pt, Regs, Stop};

use super::error::{RestoreError, Result};

/// One traced thread and the address of the `syscall` instruction it runs calls at.
#[derive(Debug)]
pub struct RemoteThread {
    pub pid: i32,
    pub tid: Pid,
    pub syscall_ip: u64,
    /// Registers to start each call from (segment selectors, flags).
    base: Regs,
    /// Step name used in errors.
    pub step: String,
    /// Thread ids created by the last call (clone events).
    pub new_threads: Vec<Pid>,
}

impl RemoteThread {
    /// `tid` is in a ptrace stop; `base` its current registers.
    pub fn new(pid: i32, tid: Pid, syscall_ip: u64, base: Regs) -> RemoteThread {
        RemoteThread {
            pid,
            tid,
            syscall_ip,
            base,
            step: String::from("setup"),
            new_threads: Vec::new(),
        }
    }

    pub fn ptrace_err(&self, source: pt::PtraceError) -> RestoreError {
        RestoreError::Ptrace {
            pid: self.pid,
            tid: self.tid.as_raw(),
            step: self.step.clone(),
            source,
        }
    }

    fn task_err(&self, reason: String) -> RestoreError {
        RestoreError::Task {
            pid: self.pid,
            tid: self.tid.as_raw(),
            step: self.step.clone(),
            reason,
        }
    }

    /// Runs syscall `nr` with `args`; returns the raw result (negative errno on failure).
    pub fn raw(&mut self, nr: i64, args: [u64; 6]) -> Result<i64> {
        self.new_threads.clear();
        let mut regs = self.base;
        regs.rip = self.syscall_ip;
        regs.rax = nr as u64;
        regs.orig_rax = u64::MAX;
        regs.rdi = args[0];
        regs.rsi = args[1];
        regs.rdx = args[2];
        regs.r10 = args[3];
        regs.r8 = args[4];
        regs.r9 = args[5];
        pt::set_regs(self.tid, &regs).map_err(|e| self.ptrace_err(e))?;
        self.resume_to_syscall_stop("syscall-enter")?;
        self.resume_to_syscall_stop("syscall-exit")?;
        let after = pt::get_regs(self.tid).map_err(|e| self.ptrace_err(e))?;
        Ok(after.rax as i64)
    }

    /// Like [`raw`](Self::raw), mapping a negative result to an error naming `name`.
    pub fn call(&mut self, name: &'static str, nr: i64, args: [u64; 6]) -> Result<u64> {
        let r = self.raw(nr, args)?;
        if (-4095..0).contains(&r) {
            return Err(RestoreError::Remote {
                pid: self.pid,
                tid: self.tid.as_raw(),
                step: self.step.clone(),
                syscall: name,
                source: Errno::from_raw(-r as i32),
            });
        }
        Ok(r as u64)
    }

    fn resume_to_syscall_stop(&mut self, what: &str) -> Result<()> {
        pt::cont_syscall(self.tid, 0).map_err(|e| self.ptrace_err(e))?;
        loop {
            let stop = pt::wait_stop(self.tid).map_err(|e| self.ptrace_err(e))?;
            match stop {
                Stop::Syscall => return Ok(()),
                Stop::Event { event, .. }
                    if event == libc::PTRACE_EVENT_CLONE
                        || event == libc::PTRACE_EVENT_FORK
                        || event == libc::PTRACE_EVENT_VFORK =>
                {
                    let new = nix::sys::ptrace::getevent(self.tid).map_err(|source| {
                        self.ptrace_err(pt::PtraceError::Request {
                            request: "PTRACE_GETEVENTMSG",
                            tid: self.tid.as_raw(),
                            source,
                        })
                    })?;
                    self.new_threads.push(Pid::from_raw(new as i32));
                    pt::cont_syscall(self.tid, 0).map_err(|e| self.ptrace_err(e))?;
                }
                other => {
                    return Err(self.task_err(format!("expected {what} stop, got {other:?}")));
                }
            }
        }
    }

    /// Points the thread at its `syscall` instruction with `nr(args)` loaded and detaches it:
    /// the call is the first thing it runs untraced (for calls that never return, such as
    /// `exit_group`).
    pub fn detach_into(&mut self, nr: i64, args: [u64; 6]) -> Result<()> {
        let mut regs = self.base;
        regs.rip = self.syscall_ip;
        regs.rax = nr as u64;
        regs.orig_rax = u64::MAX;
        regs.rdi = args[0];
        regs.rsi = args[1];
        regs.rdx = args[2];
        regs.r10 = args[3];
        regs.r8 = args[4];
        regs.r9 = args[5];
        pt::set_regs(self.tid, &regs).map_err(|e| self.ptrace_err(e))?;
        pt::detach(self.tid, 0).map_err(|e| self.ptrace_err(e))
    }

    /// Moves calls to another `syscall` instruction (the gadget).
    pub fn set_syscall_ip(&mut self, ip: u64) {
        self.syscall_ip = ip;
    }

    /// Runs `munmap(addr, len)` as the thread's last call and, in the syscall-exit stop that
    /// follows (the instruction after `syscall` no longer exists), installs `final_regs`.
    pub fn last_call_then_regs(
        &mut self,
        nr: i64,
        args: [u64; 6],
        final_regs: &Regs,
    ) -> Result<i64> {
        let r = self.raw(nr, args)?;
        pt::set_regs(self.tid, final_regs).map_err(|e| self.ptrace_err(e))?;
        Ok(r)
    }
}

/// Writes `data` into the task's memory at `addr` (`process_vm_writev`; the target pages
/// must be writable).
pub fn write_mem(rt: &RemoteThread, addr: u64, data: &[u8]) -> Result<()> {
    let local = [std::io::IoSlice::new(data)];
    let remote = [nix::sys::uio::RemoteIoVec {
        base: addr as usize,
        len: data.len(),
    }];
    let n = nix::sys::uio::process_vm_writev(rt.tid, &local, &remote).map_err(|source| {
        RestoreError::Local {
            pid: rt.pid,
            step: format!(
                "{}: process_vm_writev of {} bytes at {addr:#x}",
                rt.step,
                data.len()
            ),
            source,
        }
    })?;
    if n != data.len() {
        return Err(RestoreError::Task {
            pid: rt.pid,
            tid: rt.tid.as_raw(),
            step: rt.step.clone(),
            reason: format!("short write {n} of {} at {addr:#x}", data.len()),
        });
    }
    Ok(())
}
