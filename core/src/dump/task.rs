//! Per-process state: task_core (sigactions, itimers, POSIX timers, rlimits, personality,
//! flags, comm, loginuid, oom_score_adj, subreaper, shared signal queue).

use criu_proto::images::{
    ItimerEntry, PosixTimerEntry, RlimitEntry, SaEntry, TaskCoreEntry, TaskRlimitsEntry,
    TaskTimersEntry,
};
use nix::unistd::Pid;

use crate::proc::{ProcError, limits, misc, pid_path, stat};
use crate::sys::ptrace::{self, SigQueue};

use super::DumpError;
use super::remote_ops::{self, TaskRemote};
use super::thread::signal_queue;

/// CRIU's task states (pstree.h).
pub const TASK_ALIVE: u32 = 1;
pub const TASK_STOPPED: u32 = 3;

/// Signals CRIU keeps sigactions for: 1..=64 without SIGKILL and SIGSTOP (62 entries).
pub fn sigaction_signals() -> impl Iterator<Item = i32> {
    (1..=64).filter(|&s| s != libc::SIGKILL && s != libc::SIGSTOP)
}

fn p(pid: i32) -> impl Fn(ProcError) -> DumpError {
    move |e| DumpError::proc(pid, "task", e)
}

fn itimer(v: [u64; 4]) -> ItimerEntry {
    ItimerEntry {
        isec: v[0],
        iusec: v[1],
        vsec: v[2],
        vusec: v[3],
    }
}

fn posix_timers(pid: i32, remote: &mut dyn TaskRemote) -> Result<Vec<PosixTimerEntry>, DumpError> {
    let infos = misc::read_timers(pid).map_err(p(pid))?;
    let mut out = Vec::with_capacity(infos.len());
    for t in infos {
        let v = remote_ops::timer_gettime(remote, pid, t.id)?;
        let overrun = remote_ops::timer_getoverrun(remote, pid, t.id)?;
        let thread = t.notify & libc::SIGEV_THREAD_ID as u32 != 0;
        out.push(PosixTimerEntry {
            it_id: t.id as u32,
            clock_id: t.clock_id as u32,
            si_signo: t.signo,
            it_sigev_notify: t.notify,
            sival_ptr: t.sival_ptr,
            overrun,
            isec: v[0],
            insec: v[1],
            vsec: v[2],
            vnsec: v[3],
            notify_thread_id: thread.then_some(t.notify_pid),
        });
    }
    out.sort_by_key(|t| t.it_id);
    Ok(out)
}

/// The task_core of process `pid` (its leader frozen). `stop_signo` is the group-stop signal
/// when the process was stopped before the dump.
pub fn collect_task_core(
    pid: i32,
    stop_signo: Option<i32>,
    remote: &mut dyn TaskRemote,
) -> Result<TaskCoreEntry, DumpError> {
    let st = stat::read_stat(pid).map_err(p(pid))?;
    let personality = misc::read_number(pid_path(pid, "personality"), true).map_err(p(pid))?;
    let loginuid = misc::read_number(pid_path(pid, "loginuid"), false).map_err(p(pid))?;
    let oom = misc::read_number(pid_path(pid, "oom_score_adj"), false).map_err(p(pid))?;
    let comm = misc::read_comm(pid, pid).map_err(p(pid))?;
    let rl = limits::read_limits(pid).map_err(p(pid))?;
    let leader = Pid::from_raw(pid);
    let blk = ptrace::get_sigmask(leader).map_err(|e| DumpError::ptrace(pid, "task", e))?;
    let shared = ptrace::peek_siginfo(leader, SigQueue::Shared)
        .map_err(|e| DumpError::ptrace(pid, "task", e))?;

    let mut sigactions = Vec::with_capacity(62);
    for sig in sigaction_signals() {
        let [handler, flags, restorer, mask] = remote_ops::sigaction(remote, pid, sig)?;
        sigactions.push(SaEntry {
            sigaction: handler,
            flags,
            restorer,
            mask,
            compat_sigaction: Some(false),
            mask_extended: None,
        });
    }
    let real = remote_ops::getitimer(remote, pid, libc::ITIMER_REAL)?;
    let virt = remote_ops::getitimer(remote, pid, libc::ITIMER_VIRTUAL)?;
    let prof = remote_ops::getitimer(remote, pid, libc::ITIMER_PROF)?;
    let subreaper = remote_ops::prctl_get_ptr(remote, pid, libc::PR_GET_CHILD_SUBREAPER, 4)?;
    let membarrier = remote_ops::membarrier_registrations(remote, pid)?;

    Ok(TaskCoreEntry {
        task_state: if stop_signo.is_some() {
            TASK_STOPPED
        } else {
            TASK_ALIVE
        },
        exit_code: 0,
        personality: personality as u32,
        flags: st.flags,
        blk_sigset: blk,
        comm,
        timers: Some(TaskTimersEntry {
            real: itimer(real),
            virt: itimer(virt),
            prof: itimer(prof),
            posix: posix_timers(pid, remote)?,
        }),
        rlimits: Some(TaskRlimitsEntry {
            rlimits: rl
                .iter()
                .map(|r| RlimitEntry {
                    cur: r.cur,
                    max: r.max,
                })
                .collect(),
        }),
        cg_set: None,
        signals_s: Some(signal_queue(&shared)),
        old_seccomp_mode: None,
        old_seccomp_filter: None,
        loginuid: Some(loginuid as u32),
        oom_score_adj: Some(oom as i32),
        sigactions,
        child_subreaper: Some(subreaper != 0),
        blk_sigset_extended: None,
        stop_signo: stop_signo.map(|s| s as u32),
        membarrier_registration_mask: membarrier.filter(|&m| m != 0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixty_two_sigactions() {
        let v: Vec<i32> = sigaction_signals().collect();
        assert_eq!(v.len(), 62);
        assert_eq!(v[8], libc::SIGUSR1);
        assert_eq!(v[12], libc::SIGALRM);
    }
}
