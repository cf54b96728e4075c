//! Kernel objects shared between processes without CLONE_THREAD, from the ids the dump
//! recorded with kcmp (`TaskKobjIdsEntry`): an address space (CLONE_VM), signal handlers
//! (CLONE_SIGHAND, which the kernel allows only with CLONE_VM), an fd table (CLONE_FILES) or
//! an fs_struct (cwd, root, umask: CLONE_FS) shared with the parent is restored by forking the
//! task with that flag, as CRIU's `get_clone_mask` does for files and fs. Sharing with any
//! other task cannot be rebuilt (a task only shares what its creator hands it at clone time)
//! and is refused naming both pids.

use std::collections::BTreeMap;

use super::error::{RestoreError, Result, bad};
use super::plan::TaskPlan;

/// The four shared kinds, with the clone flag each stands for.
const KINDS: [&str; 4] = [
    "an address space (CLONE_VM)",
    "signal handlers (CLONE_SIGHAND)",
    "an fd table (CLONE_FILES)",
    "cwd, root and umask (CLONE_FS)",
];

fn kind_ids(ids: &criu_proto::images::TaskKobjIdsEntry) -> [u32; 4] {
    [ids.vm_id, ids.sighand_id, ids.files_id, ids.fs_id]
}

/// Sets the `share_*` flags of every task, or refuses sharing that cannot be restored.
pub(super) fn plan_sharing(tasks: &mut [TaskPlan]) -> Result<()> {
    let index: BTreeMap<i32, usize> = tasks.iter().enumerate().map(|(i, t)| (t.pid, i)).collect();
    // Per kind: object id -> the first task holding it.
    let mut first: [BTreeMap<u32, i32>; 4] = Default::default();
    for i in 0..tasks.len() {
        let Some(ids) = tasks[i].ids.as_ref().map(kind_ids) else {
            continue;
        };
        let (pid, ppid) = (tasks[i].pid, tasks[i].ppid);
        let parent = index
            .get(&ppid)
            .and_then(|&p| tasks[p].ids.as_ref())
            .filter(|_| i > 0)
            .map(kind_ids);
        let mut shared = [false; 4];
        for k in 0..4 {
            match first[k].get(&ids[k]) {
                None => {
                    first[k].insert(ids[k], pid);
                }
                Some(_) if parent.is_some_and(|p| p[k] == ids[k]) => shared[k] = true,
                Some(&other) => {
                    return Err(RestoreError::Unsupported {
                        pid,
                        what: format!(
                            "{} shared with process {other}, which is not its parent {ppid}",
                            KINDS[k]
                        ),
                        hint: "shared memory, signal handlers, fd tables and fs_structs are restored only between a parent and its child (clone with CLONE_VM/CLONE_SIGHAND/CLONE_FILES/CLONE_FS)",
                    });
                }
            }
        }
        let [share_vm, share_sighand, share_files, share_fs] = shared;
        if share_sighand && !share_vm {
            return Err(bad(
                &format!("ids-{pid}.img"),
                Some(0),
                format!(
                    "signal handlers shared with parent {ppid} but not the address space (the kernel requires CLONE_VM for CLONE_SIGHAND)"
                ),
            ));
        }
        let t = &mut tasks[i];
        t.share_vm = share_vm;
        t.share_sighand = share_sighand;
        t.share_files = share_files;
        t.share_fs = share_fs;
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
        // A sibling's address space: 12 shares 11's, but was forked by 10.
        let mut ts = vec![
            task(10, 1, 2, 2, 2),
            task(11, 10, 3, 3, 3),
            task(12, 10, 3, 4, 4),
        ];
        let msg = plan_sharing(&mut ts).expect_err("vm").to_string();
        assert!(
            msg.contains("CLONE_VM") && msg.contains("11") && msg.contains("12"),
            "{msg}"
        );
    }

    #[test]
    fn address_space_and_handlers_shared_with_the_parent_become_clone_flags() {
        let mut ts = vec![
            task(10, 1, 2, 2, 2),
            task(11, 10, 2, 3, 3),
            task(12, 10, 2, 4, 4),
            task(13, 11, 2, 5, 5),
        ];
        // 12 shares memory but has its own handlers (clone(CLONE_VM) alone).
        ts[2].ids.as_mut().expect("ids").sighand_id = 9;
        plan_sharing(&mut ts).expect("restorable");
        let flags: Vec<_> = ts.iter().map(|t| (t.share_vm, t.share_sighand)).collect();
        assert_eq!(
            flags,
            vec![(false, false), (true, true), (true, false), (true, true)]
        );
    }

    #[test]
    fn handlers_without_memory_are_a_bad_image() {
        let mut ts = vec![task(10, 1, 2, 2, 2), task(11, 10, 3, 3, 3)];
        ts[1].ids.as_mut().expect("ids").sighand_id = 2;
        let msg = plan_sharing(&mut ts).expect_err("bad").to_string();
        assert!(
            msg.contains("ids-11.img") && msg.contains("CLONE_VM"),
            "{msg}"
        );
    }
}
