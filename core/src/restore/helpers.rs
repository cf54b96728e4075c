//! Helper tasks standing in for dead session and group leaders (CRIU's TASK_HELPER).
//!
//! - A process group whose leader died: a helper at the group's id, forked by the member's
//!   parent, leads the group while the member joins it, then exits.
//! - A session whose leader died (a daemon's double fork): its members were re-parented to a
//!   child subreaper P. As in CRIU's `prepare_pstree_ids` (which does it for the root, the
//!   pid namespace's init), a helper at the session's id is forked by P, calls `setsid()`,
//!   forks every member that is P's child (they inherit the session; their groups are set up
//!   as usual, with group helpers forked by the session helper), and exits once every task
//!   exists: the kernel re-parents the members to P, their dumped parent. Nothing is
//!   re-parented by hand; it only works because P is a subreaper (as it was at dump time, or
//!   the members could not have become its children).
//! - A session whose leader is a zombie of the tree, with members re-parented to a child
//!   subreaper P (the zombie's parent): the zombie itself, forked by P, forks them after its
//!   `setsid()` and dies after every task exists, which re-parents them to P again.
//!
//! Helpers are cloned with exit signal 0 (no SIGCHLD left pending in the blocked parent) and
//! reaped by their parent with `wait4(__WALL)` from its gadget.

use std::collections::{BTreeMap, BTreeSet};

use super::children::{self, Ids, Parent};
use super::error::{RestoreError, Result};
use super::files::FileOpener;
use super::imgread::Images;
use super::ns::pid::TaskPids;
use super::plan::{RestorePlan, TaskPlan};
use super::rexec::RemoteThread;
use super::sessions;
use super::spawn::{GADGET_DATA, Spawned};
use super::zombie::{self, PendingZombie};

/// A session helper alive until every task exists.
#[derive(Debug)]
struct SessionHelper {
    plan: TaskPlan,
    rt: RemoteThread,
}

/// Helpers created so far, released by [`Helpers::release`].
#[derive(Debug)]
pub(super) struct Helpers {
    pids: BTreeSet<i32>,
    sessions: Vec<SessionHelper>,
    /// Group helpers with the pid of the task that forked them (which reaps them).
    groups: Vec<(PendingZombie, i32)>,
    /// Zombies of the tree, created and waiting to die (some fork their session's members
    /// first), and the parent of each zombie of the plan.
    zombies: Vec<PendingZombie>,
    zombie_parents: BTreeMap<i32, i32>,
    gadget: u64,
}

impl Helpers {
    pub fn new(plan: &RestorePlan, gadget: u64) -> Helpers {
        Helpers {
            pids: plan.tasks.iter().map(|t| t.pid).collect(),
            sessions: Vec::new(),
            groups: Vec::new(),
            zombies: Vec::new(),
            zombie_parents: plan
                .tasks
                .iter()
                .filter(|t| t.is_zombie())
                .map(|t| (t.pid, t.ppid))
                .collect(),
            gadget,
        }
    }

    /// Keeps a created zombie until [`Helpers::release`] hands it back.
    pub fn add_zombie(&mut self, z: PendingZombie) {
        self.zombies.push(z);
    }

    /// Creates `t`, a child of `parent`, through the helpers it needs.
    #[allow(clippy::too_many_arguments)]
    pub fn spawn(
        &mut self,
        parent: Parent<'_>,
        plan: &RestorePlan,
        t: &TaskPlan,
        images: &Images,
        opener: &mut dyn FileOpener,
        created: &mut TaskPids,
    ) -> Result<(Spawned, Ids)> {
        let gadget = self.gadget;
        let forker = if let Some(sid) = needs_session_helper(&self.pids, t, parent.ids) {
            let i = self.session_helper(parent, sid, plan, t, images, opener, created)?;
            let s = &mut self.sessions[i];
            Parent {
                rt: &mut s.rt,
                task: &s.plan,
                ids: Ids { sid, pgid: sid },
            }
        } else if let Some(z) = sessions::fork_sid(t).filter(|&s| {
            s != parent.ids.sid && self.zombie_parents.get(&s) == Some(&parent.task.pid)
        }) {
            // Its session's leader forked it, then died unreaped: it does so again before
            // it dies (t is then re-parented to `parent`, a child subreaper).
            check_adoption(t, z, parent.task, "is a zombie", "the zombie")?;
            let ids = Ids { sid: z, pgid: z };
            if needs_group_helper(&self.pids, t, ids, created) {
                return Err(RestoreError::Unsupported {
                    pid: t.pid,
                    what: format!(
                        "process group {} with a dead leader in session {z}, whose leader is a zombie",
                        t.pgid
                    ),
                    hint: "a zombie cannot reap a group helper",
                });
            }
            let (Some(i), Some(task)) = (
                self.zombies.iter().position(|p| p.rt.pid == z),
                plan.tasks.iter().find(|p| p.pid == z),
            ) else {
                return Err(RestoreError::Unsupported {
                    pid: t.pid,
                    what: format!("session {z} whose zombie leader is not created before it"),
                    hint: "a session leader is restored before its members",
                });
            };
            tracing::debug!(zombie = z, "forked by its zombie session leader");
            Parent {
                rt: &mut self.zombies[i].rt,
                task,
                ids,
            }
        } else {
            parent
        };
        let forker = if needs_group_helper(&self.pids, t, forker.ids, created) {
            let h = TaskPlan::group_helper(t.pgid, forker.task.pid, t.sid);
            tracing::debug!(helper = t.pgid, "helper for a dead group leader");
            let (hs, _) = children::spawn_child(
                Parent {
                    rt: forker.rt,
                    task: forker.task,
                    ids: forker.ids,
                },
                plan,
                &h,
                images,
                opener,
                gadget,
                created,
            )?;
            self.groups.push((
                PendingZombie {
                    rt: hs.leader,
                    exit_code: 0,
                    comm: h.tc.comm.clone(),
                    data: gadget + GADGET_DATA,
                },
                forker.task.pid,
            ));
            forker
        } else {
            forker
        };
        children::spawn_child(forker, plan, t, images, opener, gadget, created)
    }

    /// The index of the helper of session `sid` (`t`'s, or the one `t` leaves later),
    /// created (forked by `parent`) if needed.
    #[allow(clippy::too_many_arguments)]
    fn session_helper(
        &mut self,
        parent: Parent<'_>,
        sid: i32,
        plan: &RestorePlan,
        t: &TaskPlan,
        images: &Images,
        opener: &mut dyn FileOpener,
        created: &mut TaskPids,
    ) -> Result<usize> {
        check_adoption(t, sid, parent.task, "is dead", "the helper")?;
        if let Some(i) = self.sessions.iter().position(|h| h.plan.pid == sid) {
            if self.sessions[i].plan.ppid != parent.task.pid {
                return Err(RestoreError::Unsupported {
                    pid: t.pid,
                    what: format!(
                        "session {sid} whose leader is dead, with members under both {} and {}",
                        self.sessions[i].plan.ppid, parent.task.pid
                    ),
                    hint: "only a dead leader's members sharing one parent are restored",
                });
            }
            return Ok(i);
        }
        let h = TaskPlan::session_helper(sid, parent.task.pid);
        tracing::debug!(helper = sid, "helper for a dead session leader");
        let (hs, _) =
            children::spawn_child(parent, plan, &h, images, opener, self.gadget, created)?;
        self.sessions.push(SessionHelper {
            plan: h,
            rt: hs.leader,
        });
        Ok(self.sessions.len() - 1)
    }

    /// Once every task exists: group helpers exit and are reaped by whoever forked them, then
    /// session helpers exit (their children go to the subreaper that forked them) and are
    /// reaped. `reapers` are the restored tasks still at their gadget, by pid. Returns the
    /// zombies of the tree, still to die.
    pub fn release(
        self,
        reapers: &mut [(i32, &mut RemoteThread)],
        created: &mut TaskPids,
    ) -> Result<Vec<PendingZombie>> {
        let Helpers {
            mut sessions,
            groups,
            zombies,
            ..
        } = self;
        for (z, forker) in groups {
            let hpid = z.rt.pid;
            zombie::release(z)?;
            let rt = match sessions.iter_mut().find(|s| s.plan.pid == forker) {
                Some(s) => Some(&mut s.rt),
                None => reapers
                    .iter_mut()
                    .find(|(p, _)| *p == forker)
                    .map(|(_, rt)| &mut **rt),
            };
            if let Some(rt) = rt {
                reap(rt, hpid, created)?;
            }
        }
        for s in sessions {
            let (hpid, ppid, comm) = (s.plan.pid, s.plan.ppid, s.plan.tc.comm.clone());
            zombie::release(PendingZombie {
                rt: s.rt,
                exit_code: 0,
                comm,
                data: self.gadget + GADGET_DATA,
            })?;
            if let Some((_, rt)) = reapers.iter_mut().find(|(p, _)| *p == ppid) {
                reap(rt, hpid, created)?;
            }
        }
        Ok(zombies)
    }
}

/// Refuses what a task forked by a stand-in for its session's dead leader (a helper, or the
/// leader itself while still a zombie to be) cannot get back: a parent-death signal (the
/// stand-in's exit sends it), a parent that is not a child subreaper (the task would not be
/// re-parented to it), tables shared with the parent (the stand-in has its own).
fn check_adoption(t: &TaskPlan, sid: i32, parent: &TaskPlan, leader: &str, by: &str) -> Result<()> {
    let unsupported = |what: String, hint: &'static str| RestoreError::Unsupported {
        pid: t.pid,
        what,
        hint,
    };
    if let Some(sig) = t
        .threads
        .iter()
        .find_map(|th| th.tc.pdeath_sig.filter(|s| *s != 0))
    {
        return Err(unsupported(
            format!(
                "parent-death signal {sig} in a member of session {sid} whose leader {leader} ({by}'s exit would send it)"
            ),
            "clear PR_SET_PDEATHSIG in that task before the dump",
        ));
    }
    if parent.tc.child_subreaper != Some(true) {
        return Err(unsupported(
            format!(
                "session {sid} whose leader {leader}, under parent {} which is not a child subreaper",
                parent.pid
            ),
            "only members re-parented to a child subreaper (PR_SET_CHILD_SUBREAPER) are restored",
        ));
    }
    if t.share_files || t.share_fs {
        return Err(unsupported(
            format!(
                "an fd table or fs_struct shared with its parent {} in session {sid} whose leader {leader} ({by} forks it)",
                parent.pid
            ),
            "not restored; the task forking it cannot pass on its parent's tables",
        ));
    }
    Ok(())
}

/// The session `t` must be forked in when its leader is in no image (it died) and `t`'s
/// parent is not in it now: `t` is then forked by a helper of that session.
fn needs_session_helper(pids: &BTreeSet<i32>, t: &TaskPlan, parent: Ids) -> Option<i32> {
    sessions::fork_sid(t).filter(|&s| s != parent.sid && s != 0 && !pids.contains(&s))
}

/// Whether `t` belongs to a group of its forker's session whose leader is in no image (it
/// died): a helper then leads the group while `t` joins it.
fn needs_group_helper(pids: &BTreeSet<i32>, t: &TaskPlan, forker: Ids, c: &TaskPids) -> bool {
    t.sid != t.pid
        && t.pgid != t.pid
        && t.sid == forker.sid
        && t.pgid != forker.pgid
        && t.pgid != t.sid
        && !c.has(t.pgid)
        && !pids.contains(&t.pgid)
}

fn reap(rt: &mut RemoteThread, hpid: i32, created: &mut TaskPids) -> Result<()> {
    rt.step = format!("reaping helper {hpid}");
    rt.call(
        "wait4",
        libc::SYS_wait4,
        [hpid as u64, 0, libc::__WALL as u64, 0, 0, 0],
    )?;
    // Its pid is free again: a later failure must not kill whoever takes it.
    created.forget(hpid);
    Ok(())
}
