//! The restore's side of [`crate::cgroup`]: reading `cgroup.img` with the tasks' sets, and
//! moving each task (then its threads) into its set right after it is forked.

use criu_proto::images::{CgroupEntry, InventoryEntry};

use crate::cgroup::restore::CgroupRestore;
use crate::image::ImageKind;

use super::error::{RestoreError, Result};
use super::imgread::{INVENTORY_MAGIC, Images};
use super::ns::pid::TaskPids;
use super::plan::{RestorePlan, TaskPlan};

fn cg_err(source: crate::cgroup::CgroupError) -> RestoreError {
    RestoreError::Cgroup { source }
}

/// A task's set: its leader's `thread_core.cg_set` (task_core's in older images); none for
/// zombies and helpers.
pub(super) fn task_set(t: &TaskPlan) -> Option<u32> {
    if t.helper || t.is_zombie() {
        return None;
    }
    t.threads
        .first()
        .and_then(|th| th.tc.cg_set)
        .or(t.tc.cg_set)
}

/// The image's cgroups, checked against the tasks' sets and remapped (None: nothing to do).
pub(super) fn load(
    images: &Images,
    plan: &RestorePlan,
    opts: &crate::cgroup::CgroupOptions,
) -> Result<Option<CgroupRestore>> {
    let inv: InventoryEntry = images.single("inventory.img", INVENTORY_MAGIC)?;
    let root_set = inv.root_cg_set.unwrap_or(0);
    let entry = if images.exists("cgroup.img") {
        let mut all: Vec<CgroupEntry> = images.entries("cgroup.img", ImageKind::Cgroup.magic())?;
        if all.len() > 1 {
            return Err(super::error::bad(
                "cgroup.img",
                Some(1),
                "more than one entry",
            ));
        }
        all.pop()
    } else {
        None
    };
    let mut tasks: Vec<(i32, u32)> = Vec::new();
    for t in &plan.tasks {
        tasks.extend(task_set(t).map(|s| (t.pid, s)));
        for th in t.threads.iter().skip(1) {
            tasks.extend(th.tc.cg_set.map(|s| (th.tid, s)));
        }
    }
    CgroupRestore::new(entry, root_set, &tasks, opts).map_err(cg_err)
}

/// The set `t` inherits: its nearest ancestor's with a set, else the root's reference set.
fn inherited(plan: &RestorePlan, t: &TaskPlan, root_set: u32) -> u32 {
    let mut ppid = t.ppid;
    while let Some(p) = plan.tasks.iter().find(|p| p.pid == ppid && ppid != 0) {
        if let Some(s) = task_set(p) {
            return s;
        }
        ppid = p.ppid;
    }
    root_set
}

/// Moves the just forked `t` into its set (before it runs anything of its own).
pub(super) fn enter_task(
    cg: &mut Option<CgroupRestore>,
    plan: &RestorePlan,
    t: &TaskPlan,
    pids: &TaskPids,
) -> Result<()> {
    let (Some(cg), Some(set)) = (cg.as_mut(), task_set(t)) else {
        return Ok(());
    };
    let current = inherited(plan, t, cg.root_set());
    // cgroup.procs takes the pid as criu's pid namespace sees it.
    let host = pids.host(t.pid).map_or(t.pid, |p| p.as_raw());
    cg.enter(host, set, current).map_err(cg_err)
}

/// Moves each thread whose set differs from its leader's (cgroup v1 per-thread membership).
pub(super) fn enter_threads(
    cg: &mut Option<CgroupRestore>,
    t: &TaskPlan,
    pids: &TaskPids,
) -> Result<()> {
    let (Some(cg), Some(set)) = (cg.as_mut(), task_set(t)) else {
        return Ok(());
    };
    for th in t.threads.iter().skip(1) {
        if let Some(s) = th.tc.cg_set {
            let host = pids.host(th.tid).map_or(th.tid, |p| p.as_raw());
            cg.enter_thread(host, s, set).map_err(cg_err)?;
        }
    }
    Ok(())
}
