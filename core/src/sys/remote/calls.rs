//! Typed remote syscalls for the per-task and per-thread state a dump records, plus the few
//! queries that work from outside the task (robust list, scheduling).

use nix::errno::Errno;
use nix::unistd::Pid;

use super::{RemoteError, RemoteTask, Result};
use crate::sys::kabi;
use crate::sys::ptrace::{SigInfo, SigQueue};

/// The kernel's x86_64 `struct sigaction` (what rt_sigaction reads and writes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KernelSigaction {
    pub handler: u64,
    pub flags: u64,
    pub restorer: u64,
    /// Blocked-during-handler mask, bit N-1 = signal N.
    pub mask: u64,
}

/// `struct itimerval` / `struct itimerspec` flattened: (interval, value) as (sec, sub-second)
/// pairs; sub-second is usec for itimers and nsec for POSIX timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TimerValue {
    pub interval_sec: i64,
    pub interval_sub: i64,
    pub value_sec: i64,
    pub value_sub: i64,
}

/// `stack_t` of sigaltstack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AltStack {
    pub sp: u64,
    pub flags: i32,
    pub size: u64,
}

/// `struct rlimit64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rlimit {
    pub cur: u64,
    pub max: u64,
}

/// Per-thread prctl state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ThreadPrctl {
    pub pdeath_sig: i32,
    /// The thread's comm (PR_GET_NAME), without the trailing NULs.
    pub name: Vec<u8>,
    /// `clear_child_tid` pointer (PR_GET_TID_ADDRESS), CRIU's `clear_tid_addr`.
    pub tid_address: u64,
}

/// Process-wide prctl state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TaskPrctl {
    pub no_new_privs: bool,
    pub dumpable: i32,
    pub child_subreaper: bool,
    pub securebits: u32,
    pub thp_disable: bool,
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[off..off + 8]);
    u64::from_ne_bytes(w)
}

fn i32_at(b: &[u8], off: usize) -> i32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[off..off + 4]);
    i32::from_ne_bytes(w)
}

impl RemoteTask {
    /// Runs `nr(args...)` where the kernel writes `N` bytes at scratch (passed where
    /// `args` holds `SCRATCH`), then reads them back.
    fn call_out<const N: usize>(
        &mut self,
        name: &'static str,
        nr: i64,
        mut args: [u64; 6],
    ) -> Result<(u64, [u8; N])> {
        let s = self.scratch(N)?;
        for a in args.iter_mut() {
            if *a == SCRATCH {
                *a = s.addr;
            }
        }
        self.write_mem(s.addr, &[0u8; N])?;
        let ret = self.call(name, nr, args)?;
        let mut out = [0u8; N];
        self.read_mem(s.addr, &mut out)?;
        Ok((ret, out))
    }

    /// `rt_sigaction(sig, NULL, &old, 8)` for one signal (1..=64).
    pub fn sigaction(&mut self, sig: i32) -> Result<KernelSigaction> {
        let (_, b) = self.call_out::<32>(
            "rt_sigaction",
            libc::SYS_rt_sigaction,
            [sig as u64, 0, SCRATCH, 8, 0, 0],
        )?;
        Ok(KernelSigaction {
            handler: u64_at(&b, 0),
            flags: u64_at(&b, 8),
            restorer: u64_at(&b, 16),
            mask: u64_at(&b, 24),
        })
    }

    /// All 64 dispositions, index i = signal i+1 (SIGKILL/SIGSTOP included: always SIG_DFL;
    /// CRIU skips them when writing).
    pub fn sigactions(&mut self) -> Result<Vec<KernelSigaction>> {
        (1..=64).map(|s| self.sigaction(s)).collect()
    }

    /// `getitimer(which)`, which = ITIMER_REAL (0), ITIMER_VIRTUAL (1), ITIMER_PROF (2).
    pub fn getitimer(&mut self, which: i32) -> Result<TimerValue> {
        let (_, b) = self.call_out::<32>(
            "getitimer",
            libc::SYS_getitimer,
            [which as u64, SCRATCH, 0, 0, 0, 0],
        )?;
        Ok(timer_value(&b))
    }

    /// `timer_gettime(id)` of a POSIX timer (ids from /proc/PID/timers).
    pub fn timer_gettime(&mut self, id: i32) -> Result<TimerValue> {
        let (_, b) = self.call_out::<32>(
            "timer_gettime",
            libc::SYS_timer_gettime,
            [id as u64, SCRATCH, 0, 0, 0, 0],
        )?;
        Ok(timer_value(&b))
    }

    /// `timer_getoverrun(id)`.
    pub fn timer_getoverrun(&mut self, id: i32) -> Result<i32> {
        let r = self.call(
            "timer_getoverrun",
            libc::SYS_timer_getoverrun,
            [id as u64, 0, 0, 0, 0, 0],
        )?;
        Ok(r as i32)
    }

    /// `sigaltstack(NULL, &old)` of this thread.
    pub fn sigaltstack(&mut self) -> Result<AltStack> {
        let (_, b) = self.call_out::<24>(
            "sigaltstack",
            libc::SYS_sigaltstack,
            [0, SCRATCH, 0, 0, 0, 0],
        )?;
        Ok(AltStack {
            sp: u64_at(&b, 0),
            flags: i32_at(&b, 8),
            size: u64_at(&b, 16),
        })
    }

    /// `prctl(option, 0, 0, 0, 0)` for getters that return their value (NO_NEW_PRIVS,
    /// DUMPABLE, SECUREBITS, THP_DISABLE, ...).
    pub fn prctl_get(&mut self, option: i32) -> Result<u64> {
        self.call("prctl", libc::SYS_prctl, [option as u64, 0, 0, 0, 0, 0])
    }

    /// `prctl(option, &int)` for getters that store an int (PDEATHSIG, CHILD_SUBREAPER).
    pub fn prctl_get_int(&mut self, option: i32) -> Result<i32> {
        let (_, b) = self.call_out::<4>(
            "prctl",
            libc::SYS_prctl,
            [option as u64, SCRATCH, 0, 0, 0, 0],
        )?;
        Ok(i32_at(&b, 0))
    }

    /// Per-thread prctl state (run on each thread).
    pub fn thread_prctl(&mut self) -> Result<ThreadPrctl> {
        let pdeath_sig = self.prctl_get_int(libc::PR_GET_PDEATHSIG)?;
        let (_, name) = self.call_out::<16>(
            "prctl",
            libc::SYS_prctl,
            [libc::PR_GET_NAME as u64, SCRATCH, 0, 0, 0, 0],
        )?;
        let len = name.iter().position(|b| *b == 0).unwrap_or(16);
        let (_, tid) = self.call_out::<8>(
            "prctl",
            libc::SYS_prctl,
            [kabi::PR_GET_TID_ADDRESS as u64, SCRATCH, 0, 0, 0, 0],
        )?;
        Ok(ThreadPrctl {
            pdeath_sig,
            name: name[..len].to_vec(),
            tid_address: u64_at(&tid, 0),
        })
    }

    /// Process-wide prctl state.
    pub fn task_prctl(&mut self) -> Result<TaskPrctl> {
        Ok(TaskPrctl {
            no_new_privs: self.prctl_get(libc::PR_GET_NO_NEW_PRIVS)? != 0,
            dumpable: self.prctl_get(libc::PR_GET_DUMPABLE)? as i32,
            child_subreaper: self.prctl_get_int(libc::PR_GET_CHILD_SUBREAPER)? != 0,
            securebits: self.prctl_get(libc::PR_GET_SECUREBITS)? as u32,
            thp_disable: self.prctl_get(libc::PR_GET_THP_DISABLE)? != 0,
        })
    }

    /// `prlimit64(0, resource, NULL, &old)` inside the task (works without CAP_SYS_RESOURCE
    /// whatever the task's uid).
    pub fn getrlimit(&mut self, resource: u32) -> Result<Rlimit> {
        let (_, b) = self.call_out::<16>(
            "prlimit64",
            libc::SYS_prlimit64,
            [0, resource as u64, 0, SCRATCH, 0, 0],
        )?;
        Ok(Rlimit {
            cur: u64_at(&b, 0),
            max: u64_at(&b, 8),
        })
    }

    /// All `RLIM_NLIMITS` (16) limits, in resource order.
    pub fn getrlimits(&mut self) -> Result<Vec<Rlimit>> {
        (0..16).map(|r| self.getrlimit(r)).collect()
    }

    /// The umask, read by setting it to 0 and back (two calls).
    pub fn umask(&mut self) -> Result<u32> {
        let old = self.call("umask", libc::SYS_umask, [0; 6])?;
        self.call("umask", libc::SYS_umask, [old, 0, 0, 0, 0, 0])?;
        Ok(old as u32)
    }

    /// `membarrier(MEMBARRIER_CMD_GET_REGISTRATIONS)` (Linux 6.3+): the mm's registrations.
    pub fn membarrier_registrations(&mut self) -> Result<u32> {
        let r = self.call(
            "membarrier",
            libc::SYS_membarrier,
            [kabi::MEMBARRIER_CMD_GET_REGISTRATIONS as u64, 0, 0, 0, 0, 0],
        )?;
        Ok(r as u32)
    }

    /// `mmap(addr, len, prot, flags, fd, off)` inside the task; returns the mapped address.
    pub fn mmap(
        &mut self,
        addr: u64,
        len: u64,
        prot: i32,
        flags: i32,
        fd: i32,
        off: u64,
    ) -> Result<u64> {
        self.call(
            "mmap",
            libc::SYS_mmap,
            [addr, len, prot as u64, flags as u64, fd as i64 as u64, off],
        )
    }

    /// `munmap(addr, len)` inside the task.
    pub fn munmap(&mut self, addr: u64, len: u64) -> Result<()> {
        self.call("munmap", libc::SYS_munmap, [addr, len, 0, 0, 0, 0])
            .map(drop)
    }

    /// Queues `info` as a pending signal of the task, as it was dumped: on the shared queue
    /// (`rt_sigqueueinfo`) or on this thread's own queue (`rt_tgsigqueueinfo`). Running inside
    /// the task is what lets a positive (kernel-sent) si_code through, and the ids are the
    /// task's own (its pid namespace's). Block the signal first or it is delivered on resume.
    pub fn queue_signal(&mut self, queue: SigQueue, info: &SigInfo) -> Result<()> {
        let s = self.scratch(128)?;
        self.write_mem(s.addr, info.as_bytes())?;
        let pid = self.getpid()? as u64;
        let sig = info.signo() as u64;
        match queue {
            SigQueue::Shared => self.call(
                "rt_sigqueueinfo",
                libc::SYS_rt_sigqueueinfo,
                [pid, sig, s.addr, 0, 0, 0],
            ),
            SigQueue::Thread => {
                let tid = self.call("gettid", libc::SYS_gettid, [0; 6])?;
                self.call(
                    "rt_tgsigqueueinfo",
                    libc::SYS_rt_tgsigqueueinfo,
                    [pid, tid, sig, s.addr, 0, 0],
                )
            }
        }
        .map(drop)
    }

    /// `getpid()` inside the task (its pid as its own pid namespace sees it).
    pub fn getpid(&mut self) -> Result<i32> {
        Ok(self.call("getpid", libc::SYS_getpid, [0; 6])? as i32)
    }
}

/// Marker in `call_out` arguments: replaced by the scratch address.
const SCRATCH: u64 = u64::MAX - 0x5C;

fn timer_value(b: &[u8]) -> TimerValue {
    TimerValue {
        interval_sec: u64_at(b, 0) as i64,
        interval_sub: u64_at(b, 8) as i64,
        value_sec: u64_at(b, 16) as i64,
        value_sub: u64_at(b, 24) as i64,
    }
}

/// A thread's robust futex list head and length (`get_robust_list`, from outside).
pub fn get_robust_list(tid: Pid) -> Result<(u64, usize)> {
    let mut head: u64 = 0;
    let mut len: usize = 0;
    // SAFETY: both out pointers are valid for the kernel's writes.
    let r = unsafe {
        libc::syscall(
            libc::SYS_get_robust_list,
            tid.as_raw(),
            &mut head as *mut u64,
            &mut len as *mut usize,
        )
    };
    if r < 0 {
        return Err(RemoteError::Syscall {
            name: "get_robust_list",
            tid: tid.as_raw(),
            errno: Errno::last(),
        });
    }
    Ok((head, len))
}

/// Scheduling state of a thread, read from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SchedParams {
    /// SCHED_OTHER etc. (without SCHED_RESET_ON_FORK, which is reported in `reset_on_fork`).
    pub policy: i32,
    pub reset_on_fork: bool,
    pub priority: i32,
    pub nice: i32,
}

/// `sched_getscheduler`, `sched_getparam` and `getpriority` of `tid`.
pub fn sched_params(tid: Pid) -> Result<SchedParams> {
    let err = |name| RemoteError::Syscall {
        name,
        tid: tid.as_raw(),
        errno: Errno::last(),
    };
    // SAFETY: plain query syscall.
    let policy = unsafe { libc::sched_getscheduler(tid.as_raw()) };
    if policy < 0 {
        return Err(err("sched_getscheduler"));
    }
    let mut param = libc::sched_param { sched_priority: 0 };
    // SAFETY: param is a valid out pointer.
    if unsafe { libc::sched_getparam(tid.as_raw(), &mut param) } < 0 {
        return Err(err("sched_getparam"));
    }
    // The raw syscall returns 20 - nice, so there is no -1 ambiguity.
    // SAFETY: plain query syscall.
    let prio = unsafe { libc::syscall(libc::SYS_getpriority, libc::PRIO_PROCESS, tid.as_raw()) };
    if prio < 0 {
        return Err(err("getpriority"));
    }
    Ok(SchedParams {
        policy: policy & !libc::SCHED_RESET_ON_FORK,
        reset_on_fork: policy & libc::SCHED_RESET_ON_FORK != 0,
        priority: param.sched_priority,
        nice: 20 - prio as i32,
    })
}
