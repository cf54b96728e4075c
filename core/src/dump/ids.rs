//! Ids: kernel-object ids (vm, files, fs, sighand) and namespace ids, numbered like CRIU:
//! criu's own task gets the first of each (it goes to the inventory's `root_ids`), and one
//! counter numbers namespaces in the order pid, net, ipc, uts, time, mnt, user, cgroup.

use std::collections::HashMap;

use criu_proto::images::{InventoryEntry, Lsmtype, TaskKobjIdsEntry};

use nix::unistd::Pid;

use crate::proc::misc;
use crate::sys::kcmp::{KcmpOrder, KcmpType, kcmp};

use super::DumpError;

#[derive(Debug, Default)]
pub struct IdGen {
    ns: HashMap<(usize, u64), u32>,
    next_ns: u32,
    /// Dumped processes and their (vm, files, fs, sighand) ids.
    kobj: HashMap<i32, [u32; 4]>,
    /// Per kind: object id -> the first process found holding it.
    first_holder: [HashMap<u32, i32>; 4],
    /// Last id given per kobj kind (criu itself holds 1).
    next_kobj: [u32; 4],
    /// Per kind: one (pid, id) per distinct kernel object, in kcmp order.
    sorted: [Vec<(i32, u32)>; 4],
    /// Ids of the tree's root (the first dumped task).
    pub tree_root: Option<TaskKobjIdsEntry>,
}

/// Where `pid`'s object of `kind` is in `sorted`: `Ok(index)` of the same object, or
/// `Err(insertion point)`.
fn find_kobj(
    sorted: &[(i32, u32)],
    pid: i32,
    kind: KcmpType,
) -> Result<Result<usize, usize>, DumpError> {
    let cmp = |other: i32| {
        kcmp(Pid::from_raw(other), Pid::from_raw(pid), kind)
            .map_err(|e| DumpError::sys(pid, "ids", format!("kcmp {kind:?} with {other}"), e.errno))
    };
    let (mut lo, mut hi) = (0, sorted.len());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match cmp(sorted[mid].0)? {
            KcmpOrder::Equal => return Ok(Ok(mid)),
            KcmpOrder::Less => lo = mid + 1,
            KcmpOrder::Greater => hi = mid,
            // Never for these kinds; compare with every object then.
            KcmpOrder::Unordered => {
                for (i, (other, _)) in sorted.iter().enumerate() {
                    if cmp(*other)?.is_equal() {
                        return Ok(Ok(i));
                    }
                }
                return Ok(Err(sorted.len()));
            }
        }
    }
    Ok(Err(lo))
}

/// What each of [`KOBJ_KINDS`] is, with the clone flag that shares it.
const KOBJ_WHAT: [&str; 4] = [
    "an address space (CLONE_VM)",
    "an fd table (CLONE_FILES)",
    "cwd, root and umask (CLONE_FS)",
    "signal handlers (CLONE_SIGHAND)",
];

/// Refuses a root that shares a kernel object with its parent `ppid`, which is not dumped:
/// the restored root would silently stop sharing it. A parent we may not compare with (kcmp
/// refused, or it is outside our pid namespace) is left alone.
pub fn check_root_sharing(root: i32, ppid: i32) -> Result<(), DumpError> {
    if ppid <= 0 {
        return Ok(());
    }
    for (kind, what) in KOBJ_KINDS.iter().zip(KOBJ_WHAT) {
        let same = match kcmp(Pid::from_raw(root), Pid::from_raw(ppid), *kind) {
            Ok(o) => o.is_equal(),
            Err(e) => {
                tracing::debug!(root, ppid, error = %e, "kcmp with the root's parent");
                false
            }
        };
        if same {
            return Err(DumpError::Unsupported {
                pid: root,
                step: "ids",
                what: format!(
                    "{what} shared with its parent {ppid}, which is outside the dumped tree"
                ),
                hint: "dump the parent's tree instead: criu dump -t PARENT",
            });
        }
    }
    Ok(())
}

const KOBJ_KINDS: [KcmpType; 4] = [
    KcmpType::Vm,
    KcmpType::Files,
    KcmpType::Fs,
    KcmpType::Sighand,
];

impl IdGen {
    fn ns_ids(&mut self, pid: i32) -> Result<[u32; 8], DumpError> {
        Ok(self.number_ns(ns_inodes(pid)?))
    }

    /// Ids of the namespaces with these inodes (in [`misc::NS_KINDS`] order).
    fn number_ns(&mut self, inodes: [u64; 8]) -> [u32; 8] {
        let mut out = [0u32; 8];
        for (i, ino) in inodes.into_iter().enumerate() {
            let id = match self.ns.get(&(i, ino)) {
                Some(&id) => id,
                None => {
                    self.next_ns += 1;
                    self.ns.insert((i, ino), self.next_ns);
                    self.next_ns
                }
            };
            out[i] = id;
        }
        out
    }

    /// (vm, files, fs, sighand) ids of `pid`: shared with an earlier process when kcmp says
    /// the kernel object is the same (CLONE_VM, CLONE_FILES... without CLONE_THREAD). Each
    /// kind keeps its objects sorted by kcmp's (stable) order, so a task costs O(log n) kcmp
    /// calls, not one per earlier task (CRIU's kid tree does the same).
    fn kobj_ids(&mut self, pid: i32) -> Result<[u32; 4], DumpError> {
        let mut out = [0u32; 4];
        for (k, kind) in KOBJ_KINDS.iter().enumerate() {
            let sorted = &mut self.sorted[k];
            out[k] = match find_kobj(sorted, pid, *kind)? {
                Ok(i) => sorted[i].1,
                Err(at) => {
                    self.next_kobj[k] = self.next_kobj[k].max(1) + 1;
                    sorted.insert(at, (pid, self.next_kobj[k]));
                    self.first_holder[k].insert(self.next_kobj[k], pid);
                    self.next_kobj[k]
                }
            };
        }
        self.kobj.insert(pid, out);
        Ok(out)
    }

    /// Refuses kernel objects `pid` shares with another dumped process that is not its
    /// parent `ppid`: a restore can only hand a child what its creator has at clone time.
    /// Returns, when it shares its parent's address space (CLONE_VM), the first dumped
    /// process of that address space.
    pub fn check_sharing(&self, pid: i32, ppid: i32) -> Result<Option<i32>, DumpError> {
        let Some(mine) = self.kobj.get(&pid) else {
            return Ok(None);
        };
        let parent = self.kobj.get(&ppid).filter(|_| ppid != pid);
        for (k, what) in KOBJ_WHAT.iter().enumerate() {
            let Some(&other) = self.first_holder[k].get(&mine[k]).filter(|&&o| o != pid) else {
                continue;
            };
            if parent.is_none_or(|p| p[k] != mine[k]) {
                return Err(DumpError::Unsupported {
                    pid,
                    step: "ids",
                    what: format!(
                        "{what} shared with process {other}, which is not its parent {ppid}"
                    ),
                    hint: "a restore rebuilds such sharing only between a parent and the child it cloned",
                });
            }
        }
        Ok(self.first_holder[0]
            .get(&mine[0])
            .copied()
            .filter(|&owner| owner != pid))
    }

    /// `kobj` is (vm, files, fs, sighand).
    pub fn ids_for(&mut self, pid: i32, kobj: [u32; 4]) -> Result<TaskKobjIdsEntry, DumpError> {
        let ns = self.ns_ids(pid)?;
        Ok(Self::entry(ns, kobj))
    }

    fn entry(ns: [u32; 8], kobj: [u32; 4]) -> TaskKobjIdsEntry {
        let [pidns, net, ipc, uts, time, mnt, user, cgroup] = ns;
        TaskKobjIdsEntry {
            vm_id: kobj[0],
            files_id: kobj[1],
            fs_id: kobj[2],
            sighand_id: kobj[3],
            pid_ns_id: Some(pidns),
            net_ns_id: Some(net),
            ipc_ns_id: Some(ipc),
            uts_ns_id: Some(uts),
            mnt_ns_id: Some(mnt),
            user_ns_id: Some(user),
            cgroup_ns_id: Some(cgroup),
            time_ns_id: Some(time),
        }
    }
}

/// Inodes of `pid`'s namespaces, in [`misc::NS_KINDS`] order.
pub fn ns_inodes(pid: i32) -> Result<[u64; 8], DumpError> {
    let mut out = [0u64; 8];
    for (i, kind) in misc::NS_KINDS.iter().enumerate() {
        out[i] = misc::read_ns_inode(pid, kind).map_err(|e| DumpError::proc(pid, "ids", e))?;
    }
    Ok(out)
}

/// Ids of criu itself (first in every sequence, as CRIU numbers them). `outer`: the
/// namespace inodes of the criu process that started the dump, when this one runs inside
/// the tree's pid namespace (see [`super::ns::pid`]).
pub fn own_ids(idgen: &mut IdGen, outer: Option<[u64; 8]>) -> Result<TaskKobjIdsEntry, DumpError> {
    let inodes = match outer {
        Some(i) => i,
        None => ns_inodes(std::process::id() as i32)?,
    };
    Ok(IdGen::entry(idgen.number_ns(inodes), [1; 4]))
}

/// Ids of a dumped task (kobj ids from 2 on: criu never shares them with its targets).
/// The first task asked about is the tree's root: its namespaces are checked against criu's
/// (`criu`), every later task's against the root's ([`super::ns::check`]).
pub fn task_ids(
    idgen: &mut IdGen,
    criu: &TaskKobjIdsEntry,
    pid: i32,
) -> Result<TaskKobjIdsEntry, DumpError> {
    let kobj = idgen.kobj_ids(pid)?;
    let ids = idgen.ids_for(pid, kobj)?;
    super::ns::time::check_for_children(pid)?;
    super::ns::check(pid, criu, idgen.tree_root.as_ref(), &ids)?;
    idgen.tree_root.get_or_insert(ids);
    Ok(ids)
}

pub fn inventory(root_ids: TaskKobjIdsEntry) -> InventoryEntry {
    InventoryEntry {
        img_version: criu_proto::kind::CRTOOLS_IMAGES_V1_1,
        fdinfo_per_id: Some(true),
        root_ids: Some(root_ids),
        ns_per_id: Some(true),
        root_cg_set: Some(1),
        lsmtype: Some(Lsmtype::NoLsm as i32),
        network_lock_method: Some(0),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_ids_like_criu() {
        let mut g = IdGen::default();
        let r = own_ids(&mut g, None).unwrap();
        assert_eq!(r.vm_id, 1);
        assert_eq!(r.pid_ns_id, Some(1));
        assert_eq!(r.net_ns_id, Some(2));
        assert_eq!(r.time_ns_id, Some(5));
        assert_eq!(r.mnt_ns_id, Some(6));
        assert_eq!(r.cgroup_ns_id, Some(8));
        // Ourselves again: same namespaces, same ids.
        let t = task_ids(&mut g, &r, std::process::id() as i32).unwrap();
        assert_eq!(t.vm_id, 2);
        assert_eq!(t.mnt_ns_id, r.mnt_ns_id);
        // The same process again shares everything (kcmp says equal).
        let t2 = task_ids(&mut g, &r, std::process::id() as i32).unwrap();
        assert_eq!(
            (t2.vm_id, t2.files_id, t2.fs_id, t2.sighand_id),
            (2, 2, 2, 2)
        );
        // Another process (our parent) gets new ids.
        let ppid = nix::unistd::getppid().as_raw();
        let t3 = task_ids(&mut g, &r, ppid).unwrap();
        assert_eq!(t3.vm_id, 3);
    }

    #[test]
    fn sharing_is_allowed_with_the_parent_only() {
        let mut g = IdGen::default();
        // (vm, files, fs, sighand): 11 is clone(CLONE_VM|CLONE_SIGHAND) of 10, 12 a fork of
        // 10, 13 a child of 12 holding 11's fd table.
        for (pid, ids) in [
            (10, [2, 2, 2, 2]),
            (11, [2, 3, 3, 2]),
            (12, [4, 4, 4, 4]),
            (13, [5, 3, 5, 5]),
        ] {
            g.kobj.insert(pid, ids);
            for (k, id) in ids.iter().enumerate() {
                g.first_holder[k].entry(*id).or_insert(pid);
            }
        }
        assert_eq!(g.check_sharing(10, 0).unwrap(), None);
        assert_eq!(g.check_sharing(11, 10).unwrap(), Some(10));
        assert_eq!(g.check_sharing(12, 10).unwrap(), None);
        let err = g.check_sharing(13, 12).unwrap_err().to_string();
        assert!(
            err.contains("CLONE_FILES") && err.contains("process 11") && err.contains("parent 12"),
            "{err}"
        );
    }
}
