//! Kernel objects shared between processes without CLONE_THREAD, from the ids the dump
//! recorded with kcmp (`TaskKobjIdsEntry`): an fd table (CLONE_FILES) or an fs_struct (cwd,
//! root, umask: CLONE_FS) shared with the parent is restored by forking the task with that
//! flag, as CRIU's `get_clone_mask` does. Sharing with any other task cannot be rebuilt (a
//! task only shares what its creator hands it at clone time) and is refused naming both
//! pids; so is a shared address space (CLONE_VM, which signal handler sharing, CLONE_SIGHAND,
//! requires).

use std::collections::BTreeMap;

use super::error::{RestoreError, Result};
use super::plan::TaskPlan;

/// Sets `share_files` / `share_fs` of every task, or refuses sharing that cannot be restored.
pub(super) fn plan_sharing(tasks: &mut [TaskPlan]) -> Result<()> {
    let index: BTreeMap<i32, usize> = tasks.iter().enumerate().map(|(i, t)| (t.pid, i)).collect();
    let mut first_vm: BTreeMap<u32, i32> = BTreeMap::new();
    let mut first_files: BTreeMap<u32, i32> = BTreeMap::new();
    let mut first_fs: BTreeMap<u32, i32> = BTreeMap::new();
    for i in 0..tasks.len() {
        let Some(ids) = tasks[i].ids else {
            continue;
        };
        let (pid, ppid) = (tasks[i].pid, tasks[i].ppid);
        let parent = index
            .get(&ppid)
            .and_then(|&p| tasks[p].ids.as_ref())
            .filter(|_| i > 0);
        if let Some(&other) = first_vm.get(&ids.vm_id) {
            let sighand = if parent.is_some_and(|p| p.sighand_id == ids.sighand_id) {
                " and signal handlers (CLONE_SIGHAND)"
            } else {
                ""
            };
            return Err(RestoreError::Unsupported {
                pid,
                what: format!("an address space (CLONE_VM){sighand} shared with process {other}"),
                hint: "processes sharing memory without being threads (vfork, CLONE_VM) are not restored",
            });
        }
        first_vm.insert(ids.vm_id, pid);
        let share = |first: &mut BTreeMap<u32, i32>,
                     id: u32,
                     parent_id: Option<u32>,
                     what: &str|
         -> Result<bool> {
            match first.get(&id) {
                None => {
                    first.insert(id, pid);
                    Ok(false)
                }
                Some(_) if parent_id == Some(id) => Ok(true),
                Some(&other) => Err(RestoreError::Unsupported {
                    pid,
                    what: format!(
                        "{what} shared with process {other}, which is not its parent {ppid}"
                    ),
                    hint: "a shared fd table or fs_struct is restored only between a parent and its child (clone with CLONE_FILES/CLONE_FS)",
                }),
            }
        };
        let share_files = share(
            &mut first_files,
            ids.files_id,
            parent.map(|p| p.files_id),
            "an fd table (CLONE_FILES)",
        )?;
        let share_fs = share(
            &mut first_fs,
            ids.fs_id,
            parent.map(|p| p.fs_id),
            "cwd, root and umask (CLONE_FS)",
        )?;
        tasks[i].share_files = share_files;
        tasks[i].share_fs = share_fs;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use criu_proto::images::{TaskCoreEntry, TaskKobjIdsEntry};

    fn task(pid: i32, ppid: i32, vm: u32, files: u32, fs: u32) -> TaskPlan {
        let mut t = TaskPlan::group_helper(pid, ppid, pid);
        t.helper = false;
        t.tc = TaskCoreEntry::default();
        t.ids = Some(TaskKobjIdsEntry {
            vm_id: vm,
            files_id: files,
            fs_id: fs,
            sighand_id: vm,
            ..Default::default()
        });
        t
    }

    #[test]
    fn sharing_with_the_parent_becomes_clone_flags() {
        let mut ts = vec![
            task(10, 1, 2, 2, 2),
            task(11, 10, 3, 2, 3),
            task(12, 10, 4, 4, 2),
            task(13, 11, 5, 2, 6),
        ];
        plan_sharing(&mut ts).expect("restorable");
        let flags: Vec<_> = ts.iter().map(|t| (t.share_files, t.share_fs)).collect();
        assert_eq!(
            flags,
            vec![(false, false), (true, false), (false, true), (true, false)]
        );
    }

    #[test]
    fn sharing_between_siblings_or_memory_is_refused() {
        let mut ts = vec![
            task(10, 1, 2, 2, 2),
            task(11, 10, 3, 3, 3),
            task(12, 10, 4, 3, 4),
        ];
        let msg = plan_sharing(&mut ts).expect_err("siblings").to_string();
        assert!(
            msg.contains("12") && msg.contains("11") && msg.contains("CLONE_FILES"),
            "{msg}"
        );
        let mut ts = vec![task(10, 1, 2, 2, 2), task(11, 10, 2, 3, 3)];
        let msg = plan_sharing(&mut ts).expect_err("vm").to_string();
        assert!(
            msg.contains("CLONE_VM") && msg.contains("CLONE_SIGHAND") && msg.contains("10"),
            "{msg}"
        );
    }
}
