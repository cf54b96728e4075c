//! The few syscalls the dump must run inside a frozen thread (their answers exist nowhere
//! else: sigactions, sigaltstack, itimers, clear_child_tid...), behind a small trait so the
//! collection code is independent of how remote execution is done.

use super::DumpError;

/// Runs single syscalls in frozen threads of one process, with a scratch buffer in the
/// task's memory for out-parameters.
pub trait TaskRemote {
    /// Runs syscall `nr` with `args` in thread `tid`; returns the raw result (negative errno
    /// on failure). The thread's registers are restored afterwards.
    fn syscall(&mut self, tid: i32, nr: i64, args: &[u64]) -> Result<i64, DumpError>;
    /// Address of a scratch area (at least 4 KiB) in the task.
    fn scratch(&self) -> u64;
    /// Reads back `buf.len()` bytes at `off` of the scratch area.
    fn read_scratch(&mut self, off: u64, buf: &mut [u8]) -> Result<(), DumpError>;
}

fn check(pid: i32, what: &str, r: i64) -> Result<i64, DumpError> {
    if r < 0 && r > -4096 {
        Err(DumpError::sys(
            pid,
            "remote",
            what.to_string(),
            nix::errno::Errno::from_raw(-r as i32),
        ))
    } else {
        Ok(r)
    }
}

fn words<const N: usize>(r: &mut dyn TaskRemote) -> Result<[u64; N], DumpError> {
    let mut b = vec![0u8; N * 8];
    r.read_scratch(0, &mut b)?;
    let mut out = [0u64; N];
    for (i, c) in b.chunks_exact(8).enumerate() {
        let mut a = [0u8; 8];
        a.copy_from_slice(c);
        out[i] = u64::from_ne_bytes(a);
    }
    Ok(out)
}

/// `rt_sigaction(sig, NULL, &old, 8)`: handler, flags, restorer, mask.
pub fn sigaction(r: &mut dyn TaskRemote, pid: i32, sig: i32) -> Result<[u64; 4], DumpError> {
    let s = r.scratch();
    let rv = r.syscall(pid, libc::SYS_rt_sigaction, &[sig as u64, 0, s, 8])?;
    check(pid, "rt_sigaction", rv)?;
    words::<4>(r)
}

/// `sigaltstack(NULL, &old)`: ss_sp, ss_flags (low 32 bits of word 1), ss_size.
pub fn sigaltstack(r: &mut dyn TaskRemote, tid: i32) -> Result<(u64, u32, u64), DumpError> {
    let s = r.scratch();
    let rv = r.syscall(tid, libc::SYS_sigaltstack, &[0, s])?;
    check(tid, "sigaltstack", rv)?;
    let w = words::<3>(r)?;
    Ok((w[0], w[1] as u32, w[2]))
}

/// `getitimer(which, &v)`: interval (sec, usec), value (sec, usec).
pub fn getitimer(r: &mut dyn TaskRemote, pid: i32, which: i32) -> Result<[u64; 4], DumpError> {
    let s = r.scratch();
    let rv = r.syscall(pid, libc::SYS_getitimer, &[which as u64, s])?;
    check(pid, "getitimer", rv)?;
    words::<4>(r)
}

/// `timer_gettime(id, &v)`: interval (sec, nsec), value (sec, nsec).
pub fn timer_gettime(r: &mut dyn TaskRemote, pid: i32, id: i32) -> Result<[u64; 4], DumpError> {
    let s = r.scratch();
    let rv = r.syscall(pid, libc::SYS_timer_gettime, &[id as u64, s])?;
    check(pid, "timer_gettime", rv)?;
    words::<4>(r)
}

/// `timer_getoverrun(id)`.
pub fn timer_getoverrun(r: &mut dyn TaskRemote, pid: i32, id: i32) -> Result<u32, DumpError> {
    let rv = r.syscall(pid, libc::SYS_timer_getoverrun, &[id as u64])?;
    Ok(check(pid, "timer_getoverrun", rv)? as u32)
}

/// `prctl(option, &out)` for the options that store an int/pointer at arg2.
pub fn prctl_get_ptr(
    r: &mut dyn TaskRemote,
    tid: i32,
    option: i32,
    size: usize,
) -> Result<u64, DumpError> {
    let s = r.scratch();
    let rv = r.syscall(tid, libc::SYS_prctl, &[option as u64, s, 0, 0, 0])?;
    check(tid, "prctl", rv)?;
    let mut b = [0u8; 8];
    r.read_scratch(0, &mut b[..size.min(8)])?;
    Ok(u64::from_ne_bytes(b))
}

/// `prctl(option)` for the options that return their value.
pub fn prctl_get(r: &mut dyn TaskRemote, tid: i32, option: i32) -> Result<i64, DumpError> {
    let rv = r.syscall(tid, libc::SYS_prctl, &[option as u64, 0, 0, 0, 0])?;
    check(tid, "prctl", rv)
}

/// `get_robust_list(0, &head, &len)` in the thread itself.
pub fn robust_list(r: &mut dyn TaskRemote, tid: i32) -> Result<(u64, u64), DumpError> {
    let s = r.scratch();
    let rv = r.syscall(tid, libc::SYS_get_robust_list, &[0, s, s + 8])?;
    check(tid, "get_robust_list", rv)?;
    let w = words::<2>(r)?;
    Ok((w[0], w[1]))
}

/// `membarrier(MEMBARRIER_CMD_GET_REGISTRATIONS, 0)`; `None` when the kernel lacks it.
pub fn membarrier_registrations(
    r: &mut dyn TaskRemote,
    pid: i32,
) -> Result<Option<u32>, DumpError> {
    let rv = r.syscall(
        pid,
        libc::SYS_membarrier,
        &[
            crate::sys::kabi::MEMBARRIER_CMD_GET_REGISTRATIONS as u64,
            0,
            0,
        ],
    )?;
    if rv < 0 {
        return Ok(None);
    }
    Ok(Some(rv as u32))
}

/// `brk(0)`: the current program break.
pub fn brk(r: &mut dyn TaskRemote, pid: i32) -> Result<u64, DumpError> {
    let rv = r.syscall(pid, libc::SYS_brk, &[0])?;
    Ok(check(pid, "brk", rv)? as u64)
}

/// [`TaskRemote`] over `sys::remote`: one [`RemoteTask`] per thread; the leader maps the
/// scratch page, the other threads share it. Call [`SysRemote::finish`] before reading the
/// VMA list: the scratch page is a mapping of its own.
#[derive(Debug)]
pub struct SysRemote {
    pid: i32,
    tasks: Vec<crate::sys::remote::RemoteTask>,
    scratch: Option<(u64, usize)>,
}

fn rerr(pid: i32, e: crate::sys::remote::RemoteError) -> DumpError {
    DumpError::Remote { pid, source: e }
}

impl SysRemote {
    /// Prepares remote calls in the (frozen) leader and maps the scratch page there.
    pub fn new(pid: i32) -> Result<Self, DumpError> {
        let mut r = SysRemote {
            pid,
            tasks: Vec::new(),
            scratch: None,
        };
        r.task(pid)?;
        Ok(r)
    }

    fn task(&mut self, tid: i32) -> Result<&mut crate::sys::remote::RemoteTask, DumpError> {
        use nix::unistd::Pid;
        let pid = self.pid;
        let pos = match self.tasks.iter().position(|t| t.tid().as_raw() == tid) {
            Some(p) => p,
            None => {
                let mut t =
                    crate::sys::remote::RemoteTask::new(Pid::from_raw(pid), Pid::from_raw(tid))
                        .map_err(|e| rerr(pid, e))?;
                match self.scratch {
                    Some((a, l)) => t.adopt_scratch(a, l),
                    None => {
                        let s = t.scratch(4096).map_err(|e| rerr(pid, e))?;
                        self.scratch = Some((s.addr, s.len));
                    }
                }
                self.tasks.push(t);
                self.tasks.len() - 1
            }
        };
        Ok(&mut self.tasks[pos])
    }

    /// Unmap the scratch page (through the thread that mapped it) and drop every thread.
    pub fn finish(mut self) -> Result<(), DumpError> {
        let pid = self.pid;
        let mut first = Ok(());
        for t in self.tasks.drain(..) {
            if let Err(e) = t.finish() {
                first = first.and(Err(rerr(pid, e)));
            }
        }
        first
    }
}

impl TaskRemote for SysRemote {
    fn syscall(&mut self, tid: i32, nr: i64, args: &[u64]) -> Result<i64, DumpError> {
        let mut a = [0u64; 6];
        for (d, s) in a.iter_mut().zip(args) {
            *d = *s;
        }
        let pid = self.pid;
        self.task(tid)?.syscall(nr, a).map_err(|e| rerr(pid, e))
    }

    fn scratch(&self) -> u64 {
        self.scratch.map(|s| s.0).unwrap_or(0)
    }

    fn read_scratch(&mut self, off: u64, buf: &mut [u8]) -> Result<(), DumpError> {
        let pid = self.pid;
        let addr = self.scratch.map(|s| s.0).ok_or(DumpError::Unexpected {
            pid,
            step: "remote",
            what: "scratch read before any remote call".into(),
        })?;
        crate::sys::vm::read_exact(nix::unistd::Pid::from_raw(pid), addr + off, buf).map_err(
            |source| DumpError::Memory {
                pid,
                step: "remote",
                source,
            },
        )
    }
}
