//! Threads: created by a remote clone3(set_tid) from the leader, each starts stopped (the
//! kernel auto-attaches it because the leader is traced with PTRACE_O_TRACECLONE); then
//! every thread gets its own state and, last, its registers.

use crate::sys::clone3::{CLONE_ARGS_SIZE, CloneArgs};
use crate::sys::ptrace::{self as pt, Stop};

use super::error::{RestoreError, Result};
use super::ns::pid::TaskPids;
use super::plan::{TaskPlan, ThreadPlan};
use super::regs;
use super::rexec::{RemoteThread, write_mem};
use super::spawn::{GADGET_DATA, GADGET_SIZE, GADGET_STACK, Spawned};

const THREAD_FLAGS: u64 = (libc::CLONE_VM
    | libc::CLONE_FS
    | libc::CLONE_FILES
    | libc::CLONE_SIGHAND
    | libc::CLONE_THREAD
    | libc::CLONE_SYSVSEM) as u64;

/// Creates every non-leader thread of `t`; returns them in `t.threads[1..]` order.
pub fn create_threads(
    sp: &mut Spawned,
    t: &TaskPlan,
    created: &mut TaskPids,
) -> Result<Vec<RemoteThread>> {
    let data = sp.gadget + GADGET_DATA;
    let mut out = Vec::with_capacity(t.threads.len().saturating_sub(1));
    for th in t.threads.iter().skip(1) {
        let rt = &mut sp.leader;
        rt.step = format!("creating thread {}", th.tid);
        let set_tid_addr = data + 0x400;
        let args = CloneArgs {
            flags: THREAD_FLAGS,
            exit_signal: 0,
            stack: sp.gadget + GADGET_STACK,
            stack_size: GADGET_SIZE - GADGET_STACK,
            set_tid: set_tid_addr,
            set_tid_size: 1,
            ..CloneArgs::default()
        };
        write_mem(rt, data, &clone_args_bytes(&args))?;
        write_mem(rt, set_tid_addr, &th.tid.to_le_bytes())?;
        let got = rt.call(
            "clone3",
            libc::SYS_clone3,
            [data, CLONE_ARGS_SIZE as u64, 0, 0, 0, 0],
        )?;
        if got != th.tid as u64 {
            return Err(RestoreError::Task {
                pid: t.pid,
                tid: th.tid,
                step: rt.step.clone(),
                reason: format!("clone3 returned {got}"),
            });
        }
        // Its tid in criu's namespace: the clone event's.
        let tid = super::children::fork_event_pid(rt, th.tid)?;
        created.add(th.tid, tid);
        let err = |source| RestoreError::Ptrace {
            pid: t.pid,
            tid: th.tid,
            step: "collecting the new thread's first stop".into(),
            source,
        };
        match pt::wait_stop(tid).map_err(err)? {
            Stop::Signal { sig } if sig == libc::SIGSTOP => {}
            Stop::EventStop { .. } => {}
            other => {
                return Err(RestoreError::Task {
                    pid: t.pid,
                    tid: th.tid,
                    step: "new thread".into(),
                    reason: format!("unexpected first stop {other:?}"),
                });
            }
        }
        let regs = pt::get_regs(tid).map_err(err)?;
        out.push(RemoteThread::new(t.pid, tid, sp.gadget, regs));
    }
    Ok(out)
}

fn clone_args_bytes(a: &CloneArgs) -> Vec<u8> {
    [
        a.flags,
        a.pidfd,
        a.child_tid,
        a.parent_tid,
        a.exit_signal,
        a.stack,
        a.stack_size,
        a.tls,
        a.set_tid,
        a.set_tid_size,
        a.cgroup,
    ]
    .iter()
    .flat_map(|w| w.to_le_bytes())
    .collect()
}

/// Per-thread kernel state: robust list, clear_child_tid, sigaltstack, rseq, name, nice,
/// pending signals (the parent-death signal comes after the credentials:
/// [`restore_pdeath_sig`]).
pub fn restore_thread_state(
    rt: &mut RemoteThread,
    th: &ThreadPlan,
    t: &TaskPlan,
    data: u64,
) -> Result<()> {
    let tc = &th.tc;
    rt.step = "per-thread state".into();
    if tc.futex_rla_len != 0 {
        rt.call(
            "set_robust_list",
            libc::SYS_set_robust_list,
            [tc.futex_rla, tc.futex_rla_len as u64, 0, 0, 0, 0],
        )?;
    }
    rt.call(
        "set_tid_address",
        libc::SYS_set_tid_address,
        [th.clear_tid_addr, 0, 0, 0, 0, 0],
    )?;
    if let Some(sas) = &tc.sas {
        // SS_ONSTACK is derived by the kernel from sp; only SS_DISABLE/SS_AUTODISARM are set.
        let flags = sas.ss_flags & (libc::SS_DISABLE as u32 | (1u32 << 31));
        let (sp, size) = if flags & libc::SS_DISABLE as u32 != 0 {
            (0, 0)
        } else {
            (sas.ss_sp, sas.ss_size)
        };
        let mut buf = sp.to_le_bytes().to_vec();
        buf.extend_from_slice(&(flags as u64).to_le_bytes());
        buf.extend_from_slice(&size.to_le_bytes());
        write_mem(rt, data, &buf)?;
        rt.call("sigaltstack", libc::SYS_sigaltstack, [data, 0, 0, 0, 0, 0])?;
    }
    if let Some(r) = &tc.rseq_entry
        && r.rseq_abi_pointer != 0
    {
        rt.call(
            "rseq",
            libc::SYS_rseq,
            [
                r.rseq_abi_pointer,
                r.rseq_abi_size as u64,
                0,
                r.signature as u64,
                0,
                0,
            ],
        )?;
    }
    let comm = tc.comm.as_deref().unwrap_or(if th.tid == t.pid {
        t.tc.comm.as_str()
    } else {
        ""
    });
    if !comm.is_empty() {
        let mut name = [0u8; 16];
        let n = comm.len().min(15);
        name[..n].copy_from_slice(&comm.as_bytes()[..n]);
        write_mem(rt, data, &name)?;
        rt.call(
            "prctl(PR_SET_NAME)",
            libc::SYS_prctl,
            [libc::PR_SET_NAME as u64, data, 0, 0, 0, 0],
        )?;
    }
    if let Some(policy) = tc.sched_policy.filter(|p| *p != libc::SCHED_OTHER as u32) {
        // struct sched_param { int sched_priority; }
        write_mem(rt, data, &tc.sched_prio.unwrap_or(0).to_le_bytes())?;
        rt.call(
            "sched_setscheduler",
            libc::SYS_sched_setscheduler,
            [th.tid as u64, u64::from(policy), data, 0, 0, 0],
        )?;
    }
    if let Some(nice) = tc.sched_nice.filter(|n| *n != 0) {
        rt.call(
            "setpriority",
            libc::SYS_setpriority,
            [
                libc::PRIO_PROCESS as u64,
                th.tid as u64,
                nice as i64 as u64,
                0,
                0,
                0,
            ],
        )?;
    }
    if let Some(q) = &tc.signals_p {
        rt.step = "queueing per-thread pending signals".into();
        for s in &q.signals {
            let signo = siginfo_signo(rt, &s.siginfo)?;
            write_mem(rt, data, &s.siginfo)?;
            rt.call(
                "rt_tgsigqueueinfo",
                libc::SYS_rt_tgsigqueueinfo,
                [t.pid as u64, th.tid as u64, signo, data, 0, 0],
            )?;
        }
    }
    Ok(())
}

/// The thread's parent-death signal. Runs after its credentials are restored: the kernel
/// clears the signal whenever a thread's uids, gids or capabilities change.
pub fn restore_pdeath_sig(rt: &mut RemoteThread, th: &ThreadPlan) -> Result<()> {
    if let Some(sig) = th.tc.pdeath_sig.filter(|s| *s != 0) {
        rt.step = "parent-death signal".into();
        rt.call(
            "prctl(PR_SET_PDEATHSIG)",
            libc::SYS_prctl,
            [libc::PR_SET_PDEATHSIG as u64, sig as u64, 0, 0, 0, 0],
        )?;
    }
    Ok(())
}

/// Shared pending signals, queued from the leader.
pub fn queue_shared_signals(rt: &mut RemoteThread, t: &TaskPlan, data: u64) -> Result<()> {
    let Some(q) = &t.tc.signals_s else {
        return Ok(());
    };
    rt.step = "queueing shared pending signals".into();
    for s in &q.signals {
        let signo = siginfo_signo(rt, &s.siginfo)?;
        write_mem(rt, data, &s.siginfo)?;
        rt.call(
            "rt_sigqueueinfo",
            libc::SYS_rt_sigqueueinfo,
            [t.pid as u64, signo, data, 0, 0, 0],
        )?;
    }
    Ok(())
}

fn siginfo_signo(rt: &RemoteThread, si: &[u8]) -> Result<u64> {
    let signo = si
        .get(0..4)
        .filter(|_| si.len() == 128)
        .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .filter(|s| (1..=64).contains(s))
        .ok_or_else(|| RestoreError::Task {
            pid: rt.pid,
            tid: rt.tid.as_raw(),
            step: rt.step.clone(),
            reason: format!("bad siginfo of {} bytes", si.len()),
        })?;
    Ok(signo as u64)
}

/// Loads the FPU/AVX state of `th` into its thread.
pub fn restore_fpu(rt: &RemoteThread, th: &ThreadPlan) -> Result<()> {
    let mut xs = pt::get_xsave(rt.tid).map_err(|e| rt.ptrace_err(e))?;
    regs::fill_xsave(&mut xs, &th.fpregs)
        .map_err(|m| super::error::bad(&th.image, Some(0), m.0))?;
    pt::set_xsave(rt.tid, &xs).map_err(|e| rt.ptrace_err(e))
}

/// The thread's final blocked mask.
pub fn blocked_mask(th: &ThreadPlan, t: &TaskPlan) -> u64 {
    th.tc
        .blk_sigset
        .unwrap_or(if th.tid == t.pid { t.tc.blk_sigset } else { 0 })
}
