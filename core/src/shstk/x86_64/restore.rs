//! x86_64 restore of shadow stacks: the real [`ShadowStackOps`] behind the steps the plan
//! (`criu_shstk::plan`) computed at load time, run once every thread of the task exists and
//! before its seccomp filters and credentials (which could forbid these calls).
//!
//! The shadow-stack areas were mapped as private anonymous memory during the rebuild and
//! filled from the pages image like any other (CRIU's restorer premaps them the same way).
//! [`ShadowStackOps::map_shadow_stack`] keeps that copy, unmaps the area and creates the
//! shadow stack in its place; [`ShadowStackOps::fill`] writes the copy back through
//! `/proc/PID/mem` (a FOLL_FORCE write, which the kernel allows on shadow-stack memory: the
//! x86 selftest `test_shadow_stack.c` `test_gup` writes one through `/proc/self/mem`, and
//! CRIU's compel pokes its tokens with `PTRACE_POKEDATA`). Enabling runs as a remote
//! `arch_prctl` in each thread (the kernel refuses it through ptrace); SSP goes in with the
//! `NT_X86_SHSTK` regset and the lock with `PTRACE_ARCH_PRCTL`.
//!
//! Not run on this development machine (no `user_shstk`): the plan is unit-tested against a
//! fake kernel in criu-shstk, `/proc/PID/mem` access against a real child here, and the
//! restore of an image with a shadow stack is refused at load time on hosts without one.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;

use criu_shstk::{RestoreStep, ShadowStackOps, ShadowStackVma, x86};
use nix::unistd::Pid;

use crate::restore::RestoreError;
use crate::restore::rexec::RemoteThread;
use crate::sys::ptrace;

/// A task's memory through `/proc/PID/mem` (FOLL_FORCE: also read-only and shadow-stack
/// pages).
#[derive(Debug)]
pub struct TaskMem {
    pid: i32,
    file: File,
}

impl TaskMem {
    /// Opens `/proc/PID/mem` for reading and writing (criu is the task's tracer).
    pub fn open(pid: i32) -> std::io::Result<TaskMem> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(format!("/proc/{pid}/mem"))?;
        Ok(TaskMem { pid, file })
    }

    /// `len` bytes at `addr`.
    pub fn read(&self, addr: u64, len: usize) -> Result<Vec<u8>, String> {
        let mut buf = vec![0u8; len];
        self.file
            .read_exact_at(&mut buf, addr)
            .map_err(|e| format!("reading /proc/{}/mem at {addr:#x}: {e}", self.pid))?;
        Ok(buf)
    }

    /// Writes `data` at `addr`.
    pub fn write(&self, addr: u64, data: &[u8]) -> Result<(), String> {
        self.file
            .write_all_at(data, addr)
            .map_err(|e| format!("writing /proc/{}/mem at {addr:#x}: {e}", self.pid))
    }
}

/// The syscalls of the plan for one task: the leader runs the address-space calls, each
/// thread its own `arch_prctl`.
pub struct RemoteShstk<'a> {
    threads: Vec<&'a mut RemoteThread>,
    mem: TaskMem,
    /// Contents of each area taken before it was replaced, by start address.
    saved: BTreeMap<u64, Vec<u8>>,
}

impl std::fmt::Debug for RemoteShstk<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteShstk")
            .field("pid", &self.mem.pid)
            .field("saved", &self.saved.len())
            .finish()
    }
}

impl RemoteShstk<'_> {
    fn thread(&mut self, tid: i32) -> Result<&mut RemoteThread, String> {
        self.threads
            .iter_mut()
            .find(|t| t.tid.as_raw() == tid)
            .map(|t| &mut **t)
            .ok_or_else(|| format!("thread {tid} is not stopped under the restorer"))
    }

    fn remote(&mut self, tid: i32, nr: u64, args: [u64; 6]) -> Result<i64, String> {
        let rt = self.thread(tid)?;
        rt.raw(nr as i64, args).map_err(|e| e.to_string())
    }
}

fn errno_text(ret: i64) -> String {
    nix::errno::Errno::from_raw((-ret) as i32).to_string()
}

impl ShadowStackOps for RemoteShstk<'_> {
    fn map_shadow_stack(&mut self, addr: u64, size: u64) -> Result<u64, String> {
        let copy = self.mem.read(addr, size as usize)?;
        self.saved.insert(addr, copy);
        let leader = self.threads[0].tid.as_raw();
        let r = self.remote(leader, libc::SYS_munmap as u64, [addr, size, 0, 0, 0, 0])?;
        if r < 0 {
            return Err(format!("munmap of the premapped copy: {}", errno_text(r)));
        }
        let flags = x86::SHADOW_STACK_SET_TOKEN;
        let r = self.remote(
            leader,
            x86::SYS_MAP_SHADOW_STACK,
            [addr, size, flags, 0, 0, 0],
        )?;
        if r < 0 {
            return Err(errno_text(r));
        }
        Ok(r as u64)
    }

    fn read_word(&mut self, addr: u64) -> Result<u64, String> {
        let b = self.mem.read(addr, 8)?;
        Ok(u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
    }

    fn fill(&mut self, vma: &ShadowStackVma) -> Result<(), String> {
        let data = self
            .saved
            .remove(&vma.start)
            .ok_or("no copy of the area was taken")?;
        self.mem.write(vma.start, &data)
    }

    fn enable(&mut self, tid: i32, features: u64) -> Result<(), String> {
        let args = [x86::ARCH_SHSTK_ENABLE, features, 0, 0, 0, 0];
        let r = self.remote(tid, libc::SYS_arch_prctl as u64, args)?;
        if r < 0 {
            return Err(format!("arch_prctl(ARCH_SHSTK_ENABLE): {}", errno_text(r)));
        }
        Ok(())
    }

    fn set_pointer(&mut self, tid: i32, ptr: u64) -> Result<(), String> {
        ptrace::set_ssp(Pid::from_raw(tid), ptr).map_err(|e| e.to_string())
    }

    fn lock(&mut self, tid: i32, features: u64) -> Result<(), String> {
        ptrace::shstk_control(Pid::from_raw(tid), x86::ARCH_SHSTK_LOCK, features)
            .map_err(|e| e.to_string())
    }
}

/// Runs `steps` (the task's address-space steps, then each thread's) in task `pid`;
/// `leader` first in `threads`.
pub fn restore_task(
    pid: i32,
    threads: Vec<&mut RemoteThread>,
    steps: &[RestoreStep],
) -> Result<(), RestoreError> {
    if steps.is_empty() {
        return Ok(());
    }
    let fail = |tid: i32, reason: String| RestoreError::Task {
        pid,
        tid,
        step: "shadow stack".into(),
        reason,
    };
    let mem = TaskMem::open(pid).map_err(|e| fail(pid, format!("/proc/{pid}/mem: {e}")))?;
    let mut ops = RemoteShstk {
        threads,
        mem,
        saved: BTreeMap::new(),
    };
    criu_shstk::plan::run(steps, pid, &mut ops).map_err(|e| fail(pid, e.to_string()))?;
    tracing::debug!(pid, steps = steps.len(), "shadow stacks restored");
    Ok(())
}
