//! Process-wide state (sigactions, itimers, fs, rlimits, prctl bits) restored by remote
//! syscalls from the gadget, after memory and before threads.

use super::error::{RestoreError, Result};
use super::plan::TaskPlan;
use super::rexec::{RemoteThread, write_mem};
use super::spawn::{GADGET_DATA, Spawned};

const RLIMIT_NAMES: [&str; 16] = [
    "CPU",
    "FSIZE",
    "DATA",
    "STACK",
    "CORE",
    "RSS",
    "NPROC",
    "NOFILE",
    "MEMLOCK",
    "AS",
    "LOCKS",
    "SIGPENDING",
    "MSGQUEUE",
    "NICE",
    "RTPRIO",
    "RTTIME",
];

fn unsupported(pid: i32, what: String, hint: &'static str) -> RestoreError {
    RestoreError::Unsupported { pid, what, hint }
}

/// The signal numbers CRIU's `sigactions` entries stand for, in order (SIGKILL and SIGSTOP
/// have none).
pub fn sigaction_signals() -> impl Iterator<Item = u64> {
    (1..=64u64).filter(|&s| s != libc::SIGKILL as u64 && s != libc::SIGSTOP as u64)
}

pub fn restore_process_state(sp: &mut Spawned, t: &TaskPlan) -> Result<()> {
    let data = sp.gadget + GADGET_DATA;
    let rt = &mut sp.leader;
    check_unsupported(t)?;

    rt.step = "restoring sigactions".into();
    if t.tc.sigactions.len() > 62 {
        return Err(super::error::bad(
            &format!("core-{}.img", t.pid),
            Some(0),
            "more than 62 sigactions",
        ));
    }
    for (sig, sa) in sigaction_signals().zip(&t.tc.sigactions) {
        if sa.compat_sigaction == Some(true) {
            return Err(unsupported(
                t.pid,
                format!("compat sigaction for signal {sig}"),
                "32-bit tasks are not supported",
            ));
        }
        let mut buf = Vec::with_capacity(32);
        for w in [sa.sigaction, sa.flags, sa.restorer, sa.mask] {
            buf.extend_from_slice(&w.to_le_bytes());
        }
        write_mem(rt, data, &buf)?;
        rt.call(
            "rt_sigaction",
            libc::SYS_rt_sigaction,
            [sig, data, 0, 8, 0, 0],
        )?;
    }

    if let Some(timers) = &t.tc.timers {
        rt.step = "restoring itimers".into();
        for (which, it) in [(0u64, &timers.real), (1, &timers.virt), (2, &timers.prof)] {
            if it.isec | it.iusec | it.vsec | it.vusec == 0 {
                continue;
            }
            let mut buf = Vec::with_capacity(32);
            for w in [it.isec, it.iusec, it.vsec, it.vusec] {
                buf.extend_from_slice(&w.to_le_bytes());
            }
            write_mem(rt, data, &buf)?;
            rt.call("setitimer", libc::SYS_setitimer, [which, data, 0, 0, 0, 0])?;
        }
    }

    rt.step = "restoring personality, umask, cwd and root".into();
    rt.call(
        "personality",
        libc::SYS_personality,
        [t.tc.personality as u64, 0, 0, 0, 0, 0],
    )?;
    if let Some(fs) = &t.fs {
        if let Some(umask) = fs.umask {
            rt.call(
                "umask",
                libc::SYS_umask,
                [u64::from(umask & 0o777), 0, 0, 0, 0, 0],
            )?;
        }
        if let (Some(root), Some(cwd)) = (sp.temp.root, sp.temp.cwd) {
            rt.call("fchdir", libc::SYS_fchdir, [root as u64, 0, 0, 0, 0, 0])?;
            write_mem(rt, data, b".\0")?;
            rt.call("chroot", libc::SYS_chroot, [data, 0, 0, 0, 0, 0])?;
            rt.call("fchdir", libc::SYS_fchdir, [cwd as u64, 0, 0, 0, 0, 0])?;
        }
    }

    rt.step = "closing restore-only fds".into();
    rt.call(
        "close_range",
        libc::SYS_close_range,
        [sp.temp.first as u64, u32::MAX as u64, 0, 0, 0, 0],
    )?;

    if let Some(adj) = t.tc.oom_score_adj {
        rt.step = "restoring oom_score_adj".into();
        let path = format!("/proc/{}/oom_score_adj", rt.tid);
        let cur: Option<i32> = std::fs::read_to_string(&path)
            .ok()
            .and_then(|s| s.trim().parse().ok());
        if cur != Some(adj) {
            std::fs::write(&path, adj.to_string()).map_err(|e| RestoreError::Task {
                pid: t.pid,
                tid: t.pid,
                step: rt.step.clone(),
                reason: format!(
                    "writing {adj} to {path}: {e} (lowering it needs CAP_SYS_RESOURCE, which this restorer lacks)"
                ),
            })?;
        }
    }

    // Before the credentials: changing a set loginuid needs criu's CAP_AUDIT_CONTROL.
    super::loginuid::restore(rt, t.tc.loginuid, data)?;

    rt.step = "restoring prctl flags".into();
    if t.tc.child_subreaper == Some(true) {
        rt.call(
            "prctl(PR_SET_CHILD_SUBREAPER)",
            libc::SYS_prctl,
            [libc::PR_SET_CHILD_SUBREAPER as u64, 1, 0, 0, 0, 0],
        )?;
    }
    if t.mm.thp_disabled == Some(true) {
        rt.call(
            "prctl(PR_SET_THP_DISABLE)",
            libc::SYS_prctl,
            [libc::PR_SET_THP_DISABLE as u64, 1, 0, 0, 0, 0],
        )?;
    }
    restore_membarrier(rt, t)?;
    restore_rlimits(rt, t, data)?;
    Ok(())
}

/// `membarrier(2)` registrations of the task's mm, one `REGISTER_*` command per bit of the
/// mask `MEMBARRIER_CMD_GET_REGISTRATIONS` returned at dump (the bits are the commands).
fn restore_membarrier(rt: &mut RemoteThread, t: &TaskPlan) -> Result<()> {
    let mask = t.tc.membarrier_registration_mask.unwrap_or(0);
    for bit in (0..32).filter(|b| mask & (1 << b) != 0) {
        rt.step = format!("membarrier registration {:#x}", 1u32 << bit);
        rt.call(
            "membarrier",
            libc::SYS_membarrier,
            [1 << bit, 0, 0, 0, 0, 0],
        )?;
    }
    Ok(())
}

/// The mm's dumpable flag (`PR_SET_DUMPABLE` 0 or 1; 2, suid_dumpable, cannot be set).
/// Runs after the credentials: a uid or gid change resets it.
pub fn restore_dumpable(rt: &mut RemoteThread, t: &TaskPlan) -> Result<()> {
    if let Some(d @ (0 | 1)) = t.mm.dumpable {
        rt.step = "dumpable flag".into();
        rt.call(
            "prctl(PR_SET_DUMPABLE)",
            libc::SYS_prctl,
            [libc::PR_SET_DUMPABLE as u64, d as u64, 0, 0, 0, 0],
        )?;
    }
    Ok(())
}

fn restore_rlimits(rt: &mut RemoteThread, t: &TaskPlan, data: u64) -> Result<()> {
    let Some(rl) = &t.tc.rlimits else {
        return Ok(());
    };
    rt.step = "restoring rlimits".into();
    for (res, r) in rl.rlimits.iter().enumerate().take(RLIMIT_NAMES.len()) {
        let ours = nix::sys::resource::getrlimit(resource_of(res)).map_err(|source| {
            RestoreError::Local {
                pid: t.pid,
                step: format!("getrlimit(RLIMIT_{})", RLIMIT_NAMES[res]),
                source,
            }
        })?;
        if r.max > ours.1 {
            return Err(unsupported(
                t.pid,
                format!(
                    "RLIMIT_{} hard limit {} above the restorer's {} (raising a hard limit needs CAP_SYS_RESOURCE)",
                    RLIMIT_NAMES[res], r.max, ours.1
                ),
                "run the restore where the hard limit is at least as high",
            ));
        }
        if r.cur > r.max {
            return Err(super::error::bad(
                &format!("core-{}.img", t.pid),
                Some(0),
                format!("rlimit {res}: cur above max"),
            ));
        }
        let mut buf = r.cur.to_le_bytes().to_vec();
        buf.extend_from_slice(&r.max.to_le_bytes());
        write_mem(rt, data, &buf)?;
        rt.call(
            "prlimit64",
            libc::SYS_prlimit64,
            [0, res as u64, data, 0, 0, 0],
        )?;
    }
    Ok(())
}

fn resource_of(i: usize) -> nix::sys::resource::Resource {
    use nix::sys::resource::Resource as R;
    [
        R::RLIMIT_CPU,
        R::RLIMIT_FSIZE,
        R::RLIMIT_DATA,
        R::RLIMIT_STACK,
        R::RLIMIT_CORE,
        R::RLIMIT_RSS,
        R::RLIMIT_NPROC,
        R::RLIMIT_NOFILE,
        R::RLIMIT_MEMLOCK,
        R::RLIMIT_AS,
        R::RLIMIT_LOCKS,
        R::RLIMIT_SIGPENDING,
        R::RLIMIT_MSGQUEUE,
        R::RLIMIT_NICE,
        R::RLIMIT_RTPRIO,
        R::RLIMIT_RTTIME,
    ][i]
}

/// Things the images may hold that this restore does not recreate yet: refuse loudly.
fn check_unsupported(t: &TaskPlan) -> Result<()> {
    if t.tc.old_seccomp_mode.unwrap_or(0) != 0 {
        return Err(unsupported(
            t.pid,
            "seccomp state in the pre-3.x task_core layout".into(),
            "not restored",
        ));
    }
    Ok(())
}

/// `PR_TIMER_CREATE_RESTORE_IDS` (Linux 6.15+): while on, `timer_create` takes the wanted
/// timer id from `*created_timer_id`.
const PR_TIMER_CREATE_RESTORE_IDS: u64 = 77;
const SIGEV_THREAD_ID: u32 = 4;

/// POSIX timers with their dumped ids, clocks, notification and remaining time. Runs after
/// the threads exist (a timer may notify one of them). The overrun count is not carried
/// over (the kernel has no way to set it).
pub fn restore_posix_timers(rt: &mut RemoteThread, t: &TaskPlan, data: u64) -> Result<()> {
    let Some(timers) = t.tc.timers.as_ref().filter(|tm| !tm.posix.is_empty()) else {
        return Ok(());
    };
    rt.step = "restoring POSIX timers".into();
    let r = rt.raw(
        libc::SYS_prctl,
        [PR_TIMER_CREATE_RESTORE_IDS, 1, 0, 0, 0, 0],
    )?;
    if r < 0 {
        return Err(unsupported(
            t.pid,
            format!("{} POSIX timers", timers.posix.len()),
            "this kernel lacks PR_TIMER_CREATE_RESTORE_IDS (Linux 6.15+)",
        ));
    }
    for pt in &timers.posix {
        // struct sigevent: value, signo, notify, then the thread id of SIGEV_THREAD_ID.
        let mut ev = [0u8; 64];
        ev[0..8].copy_from_slice(&pt.sival_ptr.to_le_bytes());
        ev[8..12].copy_from_slice(&pt.si_signo.to_le_bytes());
        ev[12..16].copy_from_slice(&pt.it_sigev_notify.to_le_bytes());
        if pt.it_sigev_notify & SIGEV_THREAD_ID != 0 {
            let tid = pt.notify_thread_id.unwrap_or(t.pid);
            ev[16..20].copy_from_slice(&tid.to_le_bytes());
        }
        write_mem(rt, data, &ev)?;
        let id_addr = data + 0x100;
        write_mem(rt, id_addr, &pt.it_id.to_le_bytes())?;
        rt.call(
            "timer_create",
            libc::SYS_timer_create,
            [u64::from(pt.clock_id), data, id_addr, 0, 0, 0],
        )?;
        if pt.vsec | pt.vnsec == 0 {
            continue;
        }
        let mut spec = Vec::with_capacity(32);
        for w in [pt.isec, pt.insec, pt.vsec, pt.vnsec] {
            spec.extend_from_slice(&w.to_le_bytes());
        }
        write_mem(rt, data, &spec)?;
        rt.call(
            "timer_settime",
            libc::SYS_timer_settime,
            [u64::from(pt.it_id), 0, data, 0, 0, 0],
        )?;
    }
    rt.call(
        "prctl(PR_TIMER_CREATE_RESTORE_IDS, OFF)",
        libc::SYS_prctl,
        [PR_TIMER_CREATE_RESTORE_IDS, 0, 0, 0, 0, 0],
    )?;
    Ok(())
}
