//! Namespaces of the dumped tree (first part of CRIU's `namespaces.c`).
//!
//! Which namespaces may differ from criu's: the tree ROOT's UTS, IPC and network
//! namespaces, which every other task must share (as CRIU requires for these kinds); they
//! are dumped into `utsns-N.img`, the `ipcns-*-N.img` images and the network ones
//! ([`net`]), N being the namespace's id in the ids images and the inventory; its mount
//! namespace by [`crate::mnt::dump`], its time namespace to `timens-N.img` ([`time`]).
//! Anything else (a task in another namespace than the root, a root in its own user or
//! cgroup namespace) is refused naming the pid, the kind and the way out.

mod ipc;
pub mod net;
pub mod pid;
pub mod time;
pub mod user;
mod uts;

use criu_proto::images::TaskKobjIdsEntry;
use nix::sched::CloneFlags;

use crate::image::ImageDir;

use super::DumpError;

/// Each namespace kind of an ids entry: name and id.
fn kinds(ids: &TaskKobjIdsEntry) -> [(&'static str, Option<u32>); 8] {
    [
        ("pid", ids.pid_ns_id),
        ("net", ids.net_ns_id),
        ("ipc", ids.ipc_ns_id),
        ("uts", ids.uts_ns_id),
        ("mnt", ids.mnt_ns_id),
        ("user", ids.user_ns_id),
        ("cgroup", ids.cgroup_ns_id),
        ("time", ids.time_ns_id),
    ]
}

/// CLONE_NEWTIME, which nix's CloneFlags does not name.
pub const NEWTIME: CloneFlags = CloneFlags::from_bits_retain(libc::CLONE_NEWTIME);

/// The kinds a root may hold of its own (a pid namespace only as its init: [`pid`]).
// "user" is not listed yet: [`user`] dumps the maps and the restore writes them, but that
// restore has not been run end to end (tests/tests/userns.rs, ignored).
const DUMPED: [&str; 6] = ["uts", "ipc", "pid", "net", "mnt", "time"];

/// Checks the namespaces of `pid` (`ids`) against criu's and, for a task below the root,
/// against the root's (`root`, None when `pid` is the root).
pub fn check(
    pid: i32,
    criu: &TaskKobjIdsEntry,
    root: Option<&TaskKobjIdsEntry>,
    ids: &TaskKobjIdsEntry,
) -> Result<(), DumpError> {
    let mine = kinds(ids);
    match root {
        Some(root) => {
            for ((name, a), (_, b)) in mine.into_iter().zip(kinds(root)) {
                if a != b {
                    return Err(DumpError::Unsupported {
                        pid,
                        step: "namespaces",
                        what: format!("a {name} namespace other than the tree root's"),
                        hint: "every task must share the root's namespaces (as CRIU requires); \
                               dump a subtree whose tasks share them",
                    });
                }
            }
        }
        None => {
            for ((name, a), (_, b)) in mine.into_iter().zip(kinds(criu)) {
                if a != b && !DUMPED.contains(&name) {
                    return Err(DumpError::Unsupported {
                        pid,
                        step: "namespaces",
                        what: format!("a {name} namespace of its own"),
                        hint: "only UTS, IPC, network, mount, time and pid namespaces (the \
                               root as its init) are dumped yet (user and cgroup namespaces \
                               are not); run criu inside the tree's other namespaces",
                    });
                }
            }
        }
    }
    Ok(())
}

/// The clone flags of the namespaces the root holds apart from criu.
pub fn own_namespaces(criu: &TaskKobjIdsEntry, root: &TaskKobjIdsEntry) -> CloneFlags {
    let mut flags = CloneFlags::empty();
    if root.uts_ns_id != criu.uts_ns_id {
        flags |= CloneFlags::CLONE_NEWUTS;
    }
    if root.ipc_ns_id != criu.ipc_ns_id {
        flags |= CloneFlags::CLONE_NEWIPC;
    }
    if root.net_ns_id != criu.net_ns_id {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    if root.time_ns_id != criu.time_ns_id {
        flags |= NEWTIME;
    }
    if root.user_ns_id != criu.user_ns_id {
        flags |= CloneFlags::CLONE_NEWUSER;
    }
    flags
}

/// Writes the images of the root's own namespaces (`root_pid`, ids `root`; `userns`: the
/// maps of its own user namespace).
pub fn dump_namespaces(
    dir: &ImageDir,
    root_pid: i32,
    criu: &TaskKobjIdsEntry,
    root: &TaskKobjIdsEntry,
    external: &[String],
    userns: Option<&user::IdMaps>,
) -> Result<(), DumpError> {
    let own = own_namespaces(criu, root);
    if let Some(maps) = userns {
        let others = [
            (CloneFlags::CLONE_NEWUTS, "uts"),
            (CloneFlags::CLONE_NEWIPC, "ipc"),
            (CloneFlags::CLONE_NEWNET, "net"),
            (NEWTIME, "time"),
        ];
        let mut kinds: Vec<&'static str> = others
            .iter()
            .filter(|(f, _)| own.contains(*f))
            .map(|(_, k)| *k)
            .collect();
        if root.pid_ns_id == criu.pid_ns_id {
            return Err(DumpError::Unsupported {
                pid: root_pid,
                step: "namespaces",
                what: "a user namespace of its own in criu's pid namespace".into(),
                hint: "its tasks could not take their pids back (clone3 set_tid needs \
                       CAP_CHECKPOINT_RESTORE over the pid namespace); give the tree a pid \
                       namespace of its own, created inside the user namespace, as \
                       containers have",
            });
        }
        kinds.push("pid");
        user::check_owners(root_pid, &kinds)?;
        user::dump(dir, root_pid, root.user_ns_id.unwrap_or_default(), maps)?;
    }
    if own.contains(CloneFlags::CLONE_NEWUTS) {
        uts::dump(dir, root_pid, root.uts_ns_id.unwrap_or_default())?;
    }
    if own.contains(CloneFlags::CLONE_NEWIPC) {
        ipc::dump(dir, root_pid, root.ipc_ns_id.unwrap_or_default())?;
    }
    if own.contains(CloneFlags::CLONE_NEWNET) {
        net::dump(dir, root_pid, root.net_ns_id.unwrap_or_default())?;
    }
    if let (Some(mine), true) = (root.mnt_ns_id, root.mnt_ns_id != criu.mnt_ns_id) {
        crate::mnt::dump::dump(dir, root_pid, mine, external).map_err(|source| {
            DumpError::Mount {
                pid: root_pid,
                source,
            }
        })?;
    }
    if own.contains(NEWTIME) {
        time::dump(dir, Some(root_pid), root.time_ns_id.unwrap_or_default())?;
    } else {
        time::dump(dir, None, 0)?;
    }
    Ok(())
}

fn enter_err(pid: i32, source: crate::sys::nsenter::NsEnterError) -> DumpError {
    DumpError::Namespace { pid, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(uts: u32, ipc: u32, pid: u32) -> TaskKobjIdsEntry {
        TaskKobjIdsEntry {
            pid_ns_id: Some(pid),
            net_ns_id: Some(2),
            ipc_ns_id: Some(ipc),
            uts_ns_id: Some(uts),
            mnt_ns_id: Some(6),
            user_ns_id: Some(7),
            cgroup_ns_id: Some(8),
            time_ns_id: Some(5),
            ..Default::default()
        }
    }

    #[test]
    fn root_may_own_uts_and_ipc_only() {
        let criu = ids(4, 3, 1);
        let root = ids(10, 11, 1);
        check(5, &criu, None, &root).unwrap();
        assert_eq!(
            own_namespaces(&criu, &root),
            CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC
        );
        // A pid namespace of its own is dumped from inside it (`pid`), a mount one too;
        // a user one is not.
        check(5, &criu, None, &ids(4, 3, 12)).unwrap();
        let own_mnt = TaskKobjIdsEntry {
            mnt_ns_id: Some(60),
            ..ids(4, 3, 1)
        };
        check(5, &criu, None, &own_mnt).unwrap();
        let own_user = TaskKobjIdsEntry {
            user_ns_id: Some(70),
            ..ids(4, 3, 1)
        };
        let err = check(5, &criu, None, &own_user).unwrap_err().to_string();
        assert!(
            err.contains("pid 5") && err.contains("a user namespace of its own"),
            "{err}"
        );
        // A child must share the root's, even criu's own when the root left it.
        check(6, &criu, Some(&root), &root).unwrap();
        let err = check(6, &criu, Some(&root), &criu).unwrap_err().to_string();
        assert!(
            err.contains("pid 6") && err.contains("ipc namespace other than the tree root's"),
            "{err}"
        );
    }
}
