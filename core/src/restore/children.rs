//! Tasks below the root: each is forked by its (restored-so-far) parent with a remote
//! `clone3(set_tid)` from the parent's gadget, so its parent, session and process group come
//! out as in the dump. The child starts as a copy of the parent, already traced (we trace the
//! parent with PTRACE_O_TRACEFORK) and stopped; it then fetches its own fds from the restorer
//! with `pidfd_getfd` and is rebuilt like the root.

use std::os::fd::RawFd;

use nix::unistd::Pid;

use crate::sys::clone3::{CLONE_ARGS_SIZE, CloneArgs, FdMove};
use crate::sys::ptrace::{self as pt, Stop};

use super::error::{RestoreError, Result};
use super::files::FileOpener;
use super::imgread::Images;
use super::ns::pid::TaskPids;
use super::plan::{RestorePlan, TaskPlan};
use super::rexec::{RemoteThread, write_mem};
use super::sessions;
use super::spawn::{self, GADGET_DATA, Spawned};

fn task_err(pid: i32, step: &str, reason: String) -> RestoreError {
    RestoreError::Task {
        pid,
        tid: pid,
        step: step.to_string(),
        reason,
    }
}

/// A task's session and process group at some point of the restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ids {
    pub sid: i32,
    pub pgid: i32,
}

/// The task that forks a child: its leader (still holding the gadget), its plan and its
/// session and group now (a leader deferring its `setsid()` is still in its old ones).
#[derive(Debug)]
pub struct Parent<'a> {
    pub rt: &'a mut RemoteThread,
    pub task: &'a TaskPlan,
    pub ids: Ids,
}

/// Forks task `t` from `parent` (a task restored earlier, still holding the gadget). Returns
/// it with its session and group once forked.
pub fn spawn_child(
    parent: Parent<'_>,
    plan: &RestorePlan,
    t: &TaskPlan,
    images: &Images,
    opener: &mut dyn FileOpener,
    gadget: u64,
    created: &mut TaskPids,
) -> Result<(Spawned, Ids)> {
    let Parent {
        rt: parent,
        task: parent_task,
        ids: cur,
    } = parent;
    // A leader deferring its setsid() stays in the forker's session and group for now.
    let deferred = t.sid == t.pid && t.sid_before.is_some();
    let new_session = t.sid == t.pid && !deferred;
    let new_group = t.sid != t.pid && t.pgid == t.pid;
    if let Some(want) = sessions::fork_sid(t)
        && want != cur.sid
    {
        return Err(RestoreError::Unsupported {
            pid: t.pid,
            what: format!(
                "session {want} while its forker {} is in session {}",
                parent_task.pid, cur.sid
            ),
            hint: "sessions are restored when inherited, led by the task, left by its parent's later setsid(), or led by a dead task (members under a child subreaper)",
        });
    }
    // A group led by another task of the session: joined once it exists (its leader, alive
    // or a zombie, was created earlier).
    let join_group = t.sid != t.pid && !new_group && t.pgid != cur.pgid;
    if join_group && !created.has(t.pgid) {
        return Err(RestoreError::Unsupported {
            pid: t.pid,
            what: format!(
                "process group {} (not its forker {}'s {}) whose leader is not restored before it",
                t.pgid, parent_task.pid, cur.pgid
            ),
            hint: "groups are restored when inherited, led by the task, or led by a task that comes earlier in the tree",
        });
    }
    // Only its parent has the address space (and handlers) it shares.
    if (t.share_vm || t.share_sighand) && parent_task.pid != t.ppid {
        return Err(RestoreError::Unsupported {
            pid: t.pid,
            what: format!(
                "an address space shared with its parent {} while {} must fork it (a helper for a dead session or group leader)",
                t.ppid, parent_task.pid
            ),
            hint: "a process sharing its parent's memory (CLONE_VM) is restored only when its parent forks it",
        });
    }
    // A zombie only exits: it needs no files.
    let (owned, moves, temp) = if t.is_zombie() {
        (Vec::new(), Vec::new(), spawn::TempFds::default())
    } else {
        spawn::prepare_fds(plan, t, images, opener)?
    };
    if let Some(holder) = created.holder(t.pid) {
        return Err(RestoreError::PidTaken { pid: t.pid, holder });
    }

    let data = gadget + GADGET_DATA;
    parent.step = format!("forking child {}", t.pid);
    let set_tid_addr = data + 0x400;
    // A helper exits during the restore: no SIGCHLD left pending in its (blocked) parent.
    let exit_signal = if t.helper { 0 } else { libc::SIGCHLD as u64 };
    let mut flags = 0;
    if t.share_files {
        flags |= libc::CLONE_FILES as u64;
    }
    if t.share_fs {
        flags |= libc::CLONE_FS as u64;
    }
    // The parent's memory is restored already: the child starts in it at the gadget. Both
    // use the gadget's scratch page, one remote call at a time.
    if t.share_vm {
        flags |= libc::CLONE_VM as u64;
    }
    if t.share_sighand {
        flags |= libc::CLONE_SIGHAND as u64;
    }
    let args = CloneArgs {
        flags,
        exit_signal,
        set_tid: set_tid_addr,
        set_tid_size: 1,
        ..CloneArgs::default()
    };
    let bytes: Vec<u8> = [
        args.flags,
        args.pidfd,
        args.child_tid,
        args.parent_tid,
        args.exit_signal,
        args.stack,
        args.stack_size,
        args.tls,
        args.set_tid,
        args.set_tid_size,
        args.cgroup,
    ]
    .iter()
    .flat_map(|w| w.to_le_bytes())
    .collect();
    write_mem(parent, data, &bytes)?;
    write_mem(parent, set_tid_addr, &t.pid.to_le_bytes())?;
    // A PID released a moment after its task vanished from /proc gives EEXIST: retry briefly.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let r = loop {
        let r = parent.raw(libc::SYS_clone3, [data, CLONE_ARGS_SIZE as u64, 0, 0, 0, 0])?;
        if r != -(libc::EEXIST as i64) {
            break r;
        }
        if let Some(holder) = created.holder(t.pid) {
            return Err(RestoreError::PidTaken { pid: t.pid, holder });
        }
        if std::time::Instant::now() >= deadline {
            return Err(RestoreError::PidTaken {
                pid: t.pid,
                holder: "a task that exited but whose PID the kernel has not released".into(),
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };

    if r != i64::from(t.pid) {
        return Err(task_err(
            parent.pid,
            &parent.step,
            format!("clone3 for {} returned {r}", t.pid),
        ));
    }
    // Its pid in criu's namespace: the fork event's (the same one without a pid namespace).
    let child = fork_event_pid(parent, t.pid)?;
    created.add(t.pid, child);
    match pt::wait_stop(child).map_err(|source| RestoreError::Ptrace {
        pid: t.pid,
        tid: t.pid,
        step: "collecting the forked child's first stop".into(),
        source,
    })? {
        Stop::Signal { sig } if sig == libc::SIGSTOP => {}
        Stop::EventStop { .. } => {}
        other => {
            return Err(task_err(
                t.pid,
                "forked child",
                format!("unexpected first stop {other:?}"),
            ));
        }
    }
    let regs = pt::get_regs(child).map_err(|source| RestoreError::Ptrace {
        pid: t.pid,
        tid: t.pid,
        step: "reading the forked child's registers".into(),
        source,
    })?;
    let mut rt = RemoteThread::new(t.pid, child, gadget, regs);
    spawn::unregister_rseq(&mut rt)?;
    rt.step = "joining session and group".into();
    // setpgid() only moves within one session: a task staying in its parent's old session
    // joins a group of that session, which works because the parent has not left it yet.
    if new_session {
        rt.call("setsid", libc::SYS_setsid, [0; 6])?;
    } else if new_group {
        rt.call("setpgid", libc::SYS_setpgid, [0, 0, 0, 0, 0, 0])?;
    } else if join_group {
        rt.call("setpgid", libc::SYS_setpgid, [0, t.pgid as u64, 0, 0, 0, 0])?;
    }
    if !t.is_zombie() {
        let (source, moves) = created.fd_source(&moves)?;
        install_fds_remote(&mut rt, source, &moves, !t.share_files)?;
    }
    drop(owned);
    let ids = if deferred {
        cur
    } else {
        Ids {
            sid: t.sid,
            pgid: t.pgid,
        }
    };
    Ok((
        Spawned {
            leader: rt,
            gadget,
            temp,
        },
        ids,
    ))
}

/// The pid in criu's namespace of the task (or thread) `inner` that `rt`'s last call
/// created, from ptrace's fork/clone event.
pub(crate) fn fork_event_pid(rt: &RemoteThread, inner: i32) -> Result<Pid> {
    rt.new_threads.last().copied().ok_or_else(|| {
        task_err(
            rt.pid,
            &rt.step,
            format!("clone3 created {inner} but ptrace reported no fork event"),
        )
    })
}

/// The deferred `setsid()` of a leader `t` that forked the children of its old session.
pub fn lead_session(rt: &mut RemoteThread, t: &TaskPlan) -> Result<Ids> {
    rt.step = "leading its session, its old session's children forked".into();
    tracing::debug!(pid = t.pid, old = ?t.sid_before, "deferred setsid");
    rt.call("setsid", libc::SYS_setsid, [0; 6])?;
    Ok(Ids {
        sid: t.pid,
        pgid: t.pid,
    })
}

/// The child side of fd installation, done by remote syscalls: each source fd (open in the
/// restorer) is fetched with `pidfd_getfd` above every destination, then `dup3`'d into place;
/// with `own_table`, everything else the child inherited from its parent is closed, else
/// (a table shared with the parent) only what was fetched.
/// `source`: the pid (as the task sees it) holding the sources.
fn install_fds_remote(
    rt: &mut RemoteThread,
    source: u64,
    moves: &[FdMove],
    own_table: bool,
) -> Result<()> {
    rt.step = "installing fds".into();
    let me = source;
    let high = moves.iter().map(|m| m.dst).max().unwrap_or(2) + 1;
    let opened = rt.call("pidfd_open", libc::SYS_pidfd_open, [me, 0, 0, 0, 0, 0])? as RawFd;
    // Keep the pidfd itself out of the way of destinations.
    let pidfd = rt.call(
        "fcntl(F_DUPFD_CLOEXEC)",
        libc::SYS_fcntl,
        [
            opened as u64,
            libc::F_DUPFD_CLOEXEC as u64,
            high as u64,
            0,
            0,
            0,
        ],
    )?;
    rt.call("close", libc::SYS_close, [opened as u64, 0, 0, 0, 0, 0])?;
    let mut fetched = Vec::with_capacity(moves.len());
    for m in moves {
        let got = rt.call(
            "pidfd_getfd",
            libc::SYS_pidfd_getfd,
            [pidfd, m.src as u64, 0, 0, 0, 0],
        )?;
        let up = rt.call(
            "fcntl(F_DUPFD_CLOEXEC)",
            libc::SYS_fcntl,
            [got, libc::F_DUPFD_CLOEXEC as u64, high as u64, 0, 0, 0],
        )?;
        rt.call("close", libc::SYS_close, [got, 0, 0, 0, 0, 0])?;
        fetched.push(up);
    }
    for (m, up) in moves.iter().zip(&fetched) {
        let flags = if m.cloexec { libc::O_CLOEXEC as u64 } else { 0 };
        rt.call("dup3", libc::SYS_dup3, [*up, m.dst as u64, flags, 0, 0, 0])?;
    }
    if !own_table {
        for fd in fetched.iter().chain([&pidfd]) {
            rt.call("close", libc::SYS_close, [*fd, 0, 0, 0, 0, 0])?;
        }
        return Ok(());
    }
    let mut keep: Vec<RawFd> = moves.iter().map(|m| m.dst).collect();
    keep.sort_unstable();
    keep.dedup();
    let mut next: u64 = 0;
    for &k in &keep {
        if (k as u64) > next {
            rt.call(
                "close_range",
                libc::SYS_close_range,
                [next, k as u64 - 1, 0, 0, 0, 0],
            )?;
        }
        next = k as u64 + 1;
    }
    rt.call(
        "close_range",
        libc::SYS_close_range,
        [next, u64::from(u32::MAX), 0, 0, 0, 0],
    )?;
    Ok(())
}
