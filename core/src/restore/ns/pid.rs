//! Pids of the restored tasks: the pid each task has in the images (the one it sees, the
//! innermost level, as CRIU writes it) and the pid criu talks to the kernel with (ptrace,
//! `/proc`, kill, waitpid, pidfds). They are the same unless the root gets a pid namespace
//! of its own: the root is then cloned with CLONE_NEWPID and `set_tid = [1]` (pid 1 of the
//! new namespace, any pid in ours, as CRIU does), and every other task is forked from
//! inside by its parent with `set_tid` holding its pid there; its pid in criu's namespace
//! is what ptrace's fork/clone event reports. [`TaskPids`] is the one mapping between both.

use std::collections::BTreeSet;

use nix::unistd::Pid;

use crate::sys::clone3::FdMove;

use super::super::error::{Result, bad};
use super::super::plan::RestorePlan;
use super::super::spawn;
use super::relay::{self, Relay};

/// Every task and thread created so far: pid in the images, pid in criu's namespace.
#[derive(Debug, Default)]
pub struct TaskPids {
    /// The root has a pid namespace of its own (the pids differ).
    pidns: bool,
    /// In creation order (a failed restore kills them in reverse).
    created: Vec<(i32, Pid)>,
    /// Where tasks inside the new namespace fetch their fds ([`relay`]).
    relay: Option<std::sync::Arc<Relay>>,
}

impl TaskPids {
    /// An empty map; `pidns`: whether the root is restored into a new pid namespace.
    pub fn new(pidns: bool) -> TaskPids {
        TaskPids {
            pidns,
            created: Vec::new(),
            relay: None,
        }
    }

    /// Sets whether the tree gets a new pid namespace (known once the images are read).
    pub fn set_pidns(&mut self, pidns: bool) {
        self.pidns = pidns;
    }

    /// Whether the root is restored into a new pid namespace.
    pub fn pidns(&self) -> bool {
        self.pidns
    }

    /// Records a created task or thread.
    pub fn add(&mut self, inner: i32, host: Pid) {
        self.created.push((inner, host));
    }

    /// Whether the task with image pid `inner` was created.
    pub fn has(&self, inner: i32) -> bool {
        self.created.iter().any(|(i, _)| *i == inner)
    }

    /// The pid in criu's namespace of the created task `inner`.
    pub fn host(&self, inner: i32) -> Option<Pid> {
        self.created
            .iter()
            .find(|(i, _)| *i == inner)
            .map(|(_, h)| *h)
    }

    /// Forgets a task that is gone (its pid may be reused by another).
    pub fn forget(&mut self, inner: i32) {
        self.created.retain(|(i, _)| *i != inner);
    }

    /// Pids in criu's namespace, in creation order.
    pub fn hosts(&self) -> Vec<Pid> {
        self.created.iter().map(|(_, h)| *h).collect()
    }

    /// Starts the fd relay in the new namespace of the root (`root_host` in ours), at a
    /// pid no task or thread of `plan` uses.
    pub fn start_relay(&mut self, root_host: Pid, plan: &RestorePlan) -> Result<()> {
        let used: BTreeSet<i32> = plan
            .tasks
            .iter()
            .flat_map(|t| std::iter::once(t.pid).chain(t.threads.iter().map(|th| th.tid)))
            .collect();
        let r = Relay::start(root_host, relay::free_pid(&used, pid_max()))?;
        self.relay = Some(std::sync::Arc::new(r));
        Ok(())
    }

    /// Ends the fd relay, if any (before the tree runs, or on failure).
    pub fn stop_relay(&mut self) {
        if let Some(r) = self.relay.take() {
            r.stop();
        }
    }

    /// Where a task fetches `moves` from: the pid it opens a pidfd of (criu, or the relay
    /// inside a new pid namespace) and the moves with their sources numbered there.
    pub fn fd_source(&self, moves: &[FdMove]) -> Result<(u64, Vec<FdMove>)> {
        let Some(r) = &self.relay else {
            return Ok((u64::from(std::process::id()), moves.to_vec()));
        };
        let mut out = Vec::with_capacity(moves.len());
        for m in moves {
            out.push(FdMove {
                src: r.put(m.src)?,
                ..*m
            });
        }
        Ok((r.inner_pid() as u64, out))
    }

    /// The fd relay, for the plugins' `install_fd` service.
    pub fn relay(&self) -> Option<std::sync::Arc<Relay>> {
        self.relay.clone()
    }

    /// (image pid, pid in criu's namespace) of every created task and thread.
    pub fn pairs(&self) -> Vec<(i32, i32)> {
        self.created.iter().map(|(i, h)| (*i, h.as_raw())).collect()
    }

    /// Who holds image pid `inner` before it is created, in words; None when free. In a
    /// new pid namespace only the tree's own tasks live, which the plan keeps apart.
    pub fn holder(&self, inner: i32) -> Option<String> {
        if self.pidns {
            return None;
        }
        spawn::holder_of(Pid::from_raw(inner))
    }
}

/// The kernel's `pid_max` (4194304 when unreadable: the largest it allows on 64 bits).
fn pid_max() -> i32 {
    std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(4_194_304)
}

/// Checks the tree restored into a new pid namespace: its root is pid 1 there and every
/// pid and thread id fits below `pid_max` (duplicates are refused by the plan already).
pub fn check_plan(plan: &RestorePlan) -> Result<()> {
    check_pids(plan, pid_max())
}

fn check_pids(plan: &RestorePlan, max: i32) -> Result<()> {
    let root = &plan.tasks[0];
    if root.pid != 1 {
        return Err(bad(
            "pstree.img",
            Some(0),
            format!(
                "the root (pid {}) has a pid namespace of its own but is not its init (pid 1)",
                root.pid
            ),
        ));
    }
    for (i, t) in plan.tasks.iter().enumerate() {
        for tid in std::iter::once(t.pid).chain(t.threads.iter().map(|th| th.tid)) {
            if tid < 1 || tid >= max {
                return Err(bad(
                    "pstree.img",
                    Some(i),
                    format!("pid {tid} is out of range 1..{max} (kernel.pid_max)"),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_inner_to_host() {
        let mut m = TaskPids::new(true);
        m.add(1, Pid::from_raw(5000));
        m.add(2, Pid::from_raw(5001));
        assert_eq!(m.host(2), Some(Pid::from_raw(5001)));
        assert!(m.has(1) && !m.has(3));
        // Pid 1 is the host's init, but in a new namespace it is ours to take.
        assert_eq!(m.holder(1), None);
        m.forget(2);
        assert_eq!(m.hosts(), vec![Pid::from_raw(5000)]);
        let same = TaskPids::new(false);
        assert!(
            same.holder(1).is_some(),
            "pid 1 is taken in criu's namespace"
        );
    }
}
