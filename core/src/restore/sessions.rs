//! Sessions left behind by `setsid()`: the order in which tasks are forked.
//!
//! Every task is forked by its parent (or a helper) and inherits the forker's session at that
//! moment, so a task A that forked children and then called `setsid()` leaves them in the
//! session A was in before (its parent's, typically). As CRIU does, such an A is forked into
//! that old session (`sid_before`), forks the children that stay there, and only then calls
//! `setsid()` before forking the children of its new session. Their groups are set up at
//! their own fork as usual: inherited from the forker, led by themselves, or joined with
//! `setpgid()` while still in the old session.
//!
//! [`plan`] chooses each leader's `sid_before`, refuses the sessions forking cannot produce,
//! and orders the tasks so that a parent comes before its children, a group or session
//! leader before its members, and a deferring leader's old-session children before those of
//! its new session (otherwise keeping the pstree order).

use std::collections::{BTreeMap, BTreeSet};

use super::error::{RestoreError, Result};
use super::plan::TaskPlan;

/// The session `t` must be in when it is forked: its own session for a member, the session
/// it leaves with `setsid()` for a leader that forks children before that, `None` when any
/// will do (a leader that calls `setsid()` right away).
pub fn fork_sid(t: &TaskPlan) -> Option<i32> {
    if t.sid == t.pid {
        t.sid_before
    } else {
        Some(t.sid)
    }
}

/// Chooses `sid_before` of every session leader, checks each task's session can be inherited
/// from its forker, and reorders `tasks` (see the module docs). The root keeps index 0.
pub fn plan(tasks: &mut Vec<TaskPlan>) -> Result<()> {
    let pids: BTreeSet<i32> = tasks.iter().map(|t| t.pid).collect();
    let kids = children(tasks);
    choose_sid_before(tasks, &pids, &kids);
    check(tasks, &pids)?;
    let order = order(tasks, &kids)?;
    let mut slots: Vec<Option<TaskPlan>> = std::mem::take(tasks).into_iter().map(Some).collect();
    tasks.extend(order.into_iter().filter_map(|i| slots[i].take()));
    Ok(())
}

/// A session whose leader is in no image (it died): its members are forked by a helper.
fn dead_led(pids: &BTreeSet<i32>, sid: i32) -> bool {
    sid != 0 && !pids.contains(&sid)
}

/// A session led by a zombie child of `p`: it forked `p`'s children of that session before
/// dying, and they were re-parented to `p`, a child subreaper. The zombie forks them again.
fn zombie_led(tasks: &[TaskPlan], p: &TaskPlan, sid: i32) -> bool {
    p.tc.child_subreaper == Some(true)
        && tasks
            .iter()
            .any(|z| z.pid == sid && z.is_zombie() && z.ppid == p.pid)
}

/// The indices of each task's children, by the parent's pid.
fn children(tasks: &[TaskPlan]) -> BTreeMap<i32, Vec<usize>> {
    let mut kids: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
    for (i, t) in tasks.iter().enumerate().skip(1) {
        kids.entry(t.ppid).or_default().push(i);
    }
    kids
}

/// Children first (pstree order puts parents first): a leader's choice depends on its
/// children's own `sid_before`.
fn choose_sid_before(
    tasks: &mut [TaskPlan],
    pids: &BTreeSet<i32>,
    kids: &BTreeMap<i32, Vec<usize>>,
) {
    for i in (1..tasks.len()).rev() {
        let p = &tasks[i];
        if p.sid != p.pid || p.is_zombie() {
            continue;
        }
        let subreaper = p.tc.child_subreaper == Some(true);
        let tasks_ro: &[TaskPlan] = tasks;
        let wanted: Vec<i32> = kids
            .get(&p.pid)
            .into_iter()
            .flatten()
            .filter_map(|&c| fork_sid(&tasks_ro[c]))
            .filter(|&s| s != p.pid)
            // A subreaper's children in a dead or zombie leader's session come from a
            // helper or from the zombie.
            .filter(|&s| !(zombie_led(tasks_ro, p, s) || subreaper && dead_led(pids, s)))
            .collect();
        // Several candidates: a live leader's session cannot come from a helper.
        let pick = wanted
            .iter()
            .find(|s| pids.contains(s))
            .or(wanted.first())
            .copied();
        tasks[i].sid_before = pick;
    }
}

/// Every task's session must be its parent's current one, the one its parent left with
/// `setsid()`, or a dead leader's (a helper forks it).
fn check(tasks: &[TaskPlan], pids: &BTreeSet<i32>) -> Result<()> {
    let by_pid: BTreeMap<i32, &TaskPlan> = tasks.iter().map(|t| (t.pid, t)).collect();
    for t in tasks.iter().skip(1) {
        let Some(s) = fork_sid(t) else { continue };
        let Some(p) = by_pid.get(&t.ppid) else {
            continue; // RestorePlan::load already refused a missing parent
        };
        let before = (p.sid == p.pid).then_some(p.sid_before).flatten();
        if s == p.sid || before == Some(s) || dead_led(pids, s) || zombie_led(tasks, p, s) {
            continue;
        }
        let left = before.map_or(String::new(), |b| {
            format!(", nor {b}, which {} left with setsid()", p.pid)
        });
        let leader = match by_pid.get(&s) {
            Some(l) if l.is_zombie() => format!(
                "its leader {s} is a zombie of the tree, not a child of {} or {} not a child subreaper",
                p.pid, p.pid
            ),
            Some(_) => format!("its leader {s} is a live task of the tree"),
            None => format!("its leader {s} is outside the dumped pid namespace"),
        };
        // A deferring leader that cannot be in `s` itself: blame the child that needs it.
        let member = tasks
            .iter()
            .find(|c| t.sid == t.pid && c.ppid == t.pid && fork_sid(c) == Some(s));
        let (pid, what) = match member {
            Some(c) => (
                c.pid,
                format!(
                    "session {s}, which its parent {} could only have left with setsid() after forking it if {} had been in it, but {}'s parent {} is in session {}{left}; {leader}",
                    t.pid, t.pid, t.pid, p.pid, p.sid
                ),
            ),
            None => (
                t.pid,
                format!(
                    "session {s}, neither its parent {}'s session {}{left}; {leader}",
                    p.pid, p.sid
                ),
            ),
        };
        return Err(RestoreError::Unsupported {
            pid,
            what,
            hint: "a task is restored in its parent's session, in the one its parent left with setsid() after forking it, or in a dead or zombie leader's session under a child subreaper",
        });
    }
    Ok(())
}

/// A topological order of `tasks` (indices), the smallest pstree index first among the
/// tasks ready: the pstree order itself whenever it already satisfies every constraint.
fn order(tasks: &[TaskPlan], kids: &BTreeMap<i32, Vec<usize>>) -> Result<Vec<usize>> {
    let idx: BTreeMap<i32, usize> = tasks.iter().enumerate().map(|(i, t)| (t.pid, i)).collect();
    let n = tasks.len();
    let mut after: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); n];
    // The root is created by the restorer, in whatever group and session it can join.
    for (i, t) in tasks.iter().enumerate().skip(1) {
        // Its parent, its group's and its session's leaders come first.
        for id in [t.ppid, t.pgid, t.sid] {
            if let Some(&j) = idx.get(&id)
                && j != i
            {
                after[j].insert(i);
            }
        }
    }
    // A deferring leader forks its old session's children before its setsid(), its new
    // session's after it.
    for p in tasks.iter().filter(|p| p.sid == p.pid) {
        let Some(old) = p.sid_before else { continue };
        let mine = kids.get(&p.pid).map_or(&[][..], Vec::as_slice);
        let wanting = |s: i32| {
            mine.iter()
                .filter(move |&&c| fork_sid(&tasks[c]) == Some(s))
        };
        for &b in wanting(old) {
            for &a in wanting(p.pid) {
                after[b].insert(a);
            }
        }
    }
    let mut indeg = vec![0usize; n];
    for &k in after.iter().flatten() {
        indeg[k] += 1;
    }
    let mut ready: BTreeSet<usize> = (0..n).filter(|&i| indeg[i] == 0).collect();
    let mut out = Vec::with_capacity(n);
    while let Some(i) = ready.pop_first() {
        out.push(i);
        for &k in &after[i] {
            indeg[k] -= 1;
            if indeg[k] == 0 {
                ready.insert(k);
            }
        }
    }
    if out.first() != Some(&0) || out.len() != n {
        let stuck = (0..n).find(|i| !out.contains(i)).unwrap_or(0);
        let t = &tasks[stuck];
        return Err(RestoreError::Unsupported {
            pid: t.pid,
            what: format!(
                "a creation order for session {}, group {} and parent {} (their constraints form a cycle)",
                t.sid, t.pgid, t.ppid
            ),
            hint: "a task is forked after its parent and its group and session leaders, and before its parent's setsid() when it stays in the old session; a parent in its child's process group cannot be restored",
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use criu_proto::images::TaskCoreEntry;

    /// (pid, ppid, pgid, sid), pstree order.
    fn tree(ids: &[(i32, i32, i32, i32)]) -> Vec<TaskPlan> {
        ids.iter()
            .map(|&(pid, ppid, pgid, sid)| {
                TaskPlan::bare(pid, ppid, pgid, sid, TaskCoreEntry::default())
            })
            .collect()
    }

    fn pids(t: &[TaskPlan]) -> Vec<i32> {
        t.iter().map(|t| t.pid).collect()
    }

    fn before(t: &[TaskPlan], pid: i32) -> Option<i32> {
        t.iter().find(|t| t.pid == pid).and_then(|t| t.sid_before)
    }

    #[test]
    fn a_leader_forks_its_old_sessions_children_before_setsid() {
        // R leads 10; A forked B (R's group), then B2 (own group 14 of session 10), then
        // called setsid() and forked C. The pid order puts C before B2.
        let mut t = tree(&[
            (10, 1, 10, 10),
            (11, 10, 11, 11),
            (12, 11, 10, 10),
            (13, 11, 11, 11),
            (14, 11, 14, 10),
        ]);
        plan(&mut t).expect("plan");
        assert_eq!(before(&t, 11), Some(10));
        assert_eq!(before(&t, 10), None);
        assert_eq!(pids(&t), vec![10, 11, 12, 14, 13]);
        assert_eq!(fork_sid(&t[1]), Some(10));
        assert_eq!(fork_sid(&t[4]), Some(11));
    }

    #[test]
    fn deferral_goes_up_through_several_leaders() {
        // R -> A -> X -> B; X then A called setsid(): B and X's old session is R's.
        let mut t = tree(&[
            (10, 1, 10, 10),
            (11, 10, 11, 11),
            (12, 11, 12, 12),
            (13, 12, 10, 10),
            (14, 11, 11, 11),
        ]);
        plan(&mut t).expect("plan");
        assert_eq!((before(&t, 11), before(&t, 12)), (Some(10), Some(10)));
        // X (and its subtree) before A's new-session child 14.
        assert_eq!(pids(&t), vec![10, 11, 12, 13, 14]);
    }

    #[test]
    fn a_valid_pstree_order_is_kept() {
        // Groups joined across siblings (a2 joins a1's group): pid order already works.
        let ids = [
            (10, 1, 10, 10),
            (11, 10, 11, 11),
            (12, 11, 12, 11),
            (13, 12, 12, 11),
            (14, 11, 12, 11),
            (15, 10, 15, 10),
        ];
        let mut t = tree(&ids);
        plan(&mut t).expect("plan");
        assert_eq!(pids(&t), ids.iter().map(|i| i.0).collect::<Vec<_>>());
        assert!(t.iter().all(|t| t.sid_before.is_none()));
    }

    #[test]
    fn a_group_leader_comes_before_its_members() {
        // 12 joins the group of its later sibling 13 (pids wrapped).
        let mut t = tree(&[(10, 1, 10, 10), (12, 10, 13, 10), (13, 10, 13, 10)]);
        plan(&mut t).expect("plan");
        assert_eq!(pids(&t), vec![10, 13, 12]);
    }

    #[test]
    fn a_session_led_by_an_unrelated_live_task_is_refused() {
        // B (12, child of A) in the session of D (20), A's sibling.
        let mut t = tree(&[
            (10, 1, 10, 10),
            (11, 10, 11, 11),
            (12, 11, 20, 20),
            (20, 10, 20, 20),
        ]);
        let msg = plan(&mut t).expect_err("refused").to_string();
        assert!(
            msg.contains("pid 12") && msg.contains("session 20") && msg.contains("live task"),
            "{msg}"
        );
    }

    #[test]
    fn a_zombie_session_leader_forks_its_members_under_a_subreaper() {
        // 11 forked 12 in its session, died unreaped; 12 went to the subreaper 10.
        let ids = [(10, 1, 10, 10), (11, 10, 11, 11), (12, 10, 11, 11)];
        let mut t = tree(&ids);
        t[1].tc.task_state = super::super::plan::TASK_DEAD;
        t[0].tc.child_subreaper = Some(true);
        plan(&mut t).expect("zombie leader under a subreaper");
        assert_eq!(pids(&t), vec![10, 11, 12]);
        // The same under a parent that is no subreaper cannot have happened.
        let mut t = tree(&ids);
        t[1].tc.task_state = super::super::plan::TASK_DEAD;
        let msg = plan(&mut t).expect_err("refused").to_string();
        assert!(
            msg.contains("pid 12") && msg.contains("11") && msg.contains("zombie"),
            "{msg}"
        );
        // A deferring leader with a subreaper's zombie: no old session to keep.
        let mut t = tree(&[
            (10, 1, 10, 10),
            (11, 10, 11, 11),
            (12, 11, 12, 12),
            (13, 11, 12, 12),
        ]);
        t[1].tc.child_subreaper = Some(true);
        t[2].tc.task_state = super::super::plan::TASK_DEAD;
        plan(&mut t).expect("zombie child of a subreaper leader");
        assert_eq!(before(&t, 11), None);
    }

    #[test]
    fn dead_leaders_sessions_go_to_helpers_under_a_subreaper() {
        // P (11) leads its session and has a child in the session of a dead 30.
        let ids = [(10, 1, 10, 10), (11, 10, 11, 11), (12, 11, 12, 30)];
        let mut t = tree(&ids);
        t[1].tc.child_subreaper = Some(true);
        plan(&mut t).expect("subreaper");
        assert_eq!(before(&t, 11), None);
        // Not a subreaper: P was in session 30 when it forked 12 (its own parent's helper
        // puts it there).
        let mut t = tree(&ids);
        plan(&mut t).expect("deferred");
        assert_eq!(before(&t, 11), Some(30));
    }

    #[test]
    fn contradictory_constraints_are_refused() {
        // 12 stays in A's old session but in the group of 13, of A's new session.
        let mut t = tree(&[
            (10, 1, 10, 10),
            (11, 10, 11, 11),
            (12, 11, 13, 10),
            (13, 11, 13, 11),
        ]);
        let msg = plan(&mut t).expect_err("cycle").to_string();
        assert!(msg.contains("cycle"), "{msg}");
    }

    #[test]
    fn a_parent_in_its_childs_group() {
        // The root joins whatever group it can: no constraint on it.
        let mut t = tree(&[(10, 1, 11, 5), (11, 10, 11, 5)]);
        plan(&mut t).expect("root");
        assert_eq!(pids(&t), vec![10, 11]);
        // Below it, a parent cannot be forked after its child.
        let mut t = tree(&[(10, 1, 10, 10), (11, 10, 12, 10), (12, 11, 12, 10)]);
        let msg = plan(&mut t).expect_err("cycle").to_string();
        assert!(
            msg.contains("cycle") && msg.contains("child's process group"),
            "{msg}"
        );
    }

    #[test]
    fn the_roots_old_session_is_not_ours_to_give() {
        // The root leads its session; a child in another live task's session.
        let mut t = tree(&[(10, 1, 10, 10), (11, 10, 11, 11), (12, 10, 11, 11)]);
        let msg = plan(&mut t).expect_err("refused").to_string();
        assert!(
            msg.contains("pid 12") && msg.contains("session 11"),
            "{msg}"
        );
    }
}
