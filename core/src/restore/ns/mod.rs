//! Namespaces of the restored tree: the root is cloned into new UTS and IPC namespaces when
//! its ids image names other ones than the inventory's `root_ids` (criu's at dump), and
//! their state ([`uts`], [`ipc`]) is set from inside by a thread of criu that joins them,
//! while the root is still stopped, before anything of the tree runs. The images are read
//! and checked before any task exists; a tree whose tasks do not all share the root's
//! namespaces, or a root with other namespaces of its own, is refused.

pub mod ipc;
pub mod ipcimg;
pub mod net;
pub mod pid;
pub mod relay;
pub mod time;
pub mod user;
pub mod uts;

use criu_proto::images::{InventoryEntry, TaskKobjIdsEntry};
use nix::sched::CloneFlags;

use super::error::{RestoreError, Result};
use super::imgread::{INVENTORY_MAGIC, Images};
use super::plan::RestorePlan;

/// The root's namespaces to create, with their state.
#[derive(Debug, Default)]
pub struct NsRestore {
    uts: Option<uts::UtsState>,
    ipc: Option<ipc::IpcState>,
    /// The root is the init of a pid namespace of its own ([`pid`]).
    pid: bool,
    /// The clocks of the root's own time namespace ([`time`]).
    time: Option<time::TimeState>,
    /// The maps of the root's own user namespace ([`user`]).
    user: Option<user::UserState>,
}

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

impl NsRestore {
    /// Reads and checks the namespace images the plan needs (none when the root shares
    /// criu's namespaces, or the images have no namespace ids).
    pub fn load(images: &Images, plan: &RestorePlan) -> Result<NsRestore> {
        let root = &plan.tasks[0];
        let (Some(ids), true) = (&root.ids, images.exists("inventory.img")) else {
            return Ok(NsRestore::default());
        };
        let inv: InventoryEntry = images.single("inventory.img", INVENTORY_MAGIC)?;
        let Some(criu) = inv.root_ids else {
            return Ok(NsRestore::default());
        };
        for t in &plan.tasks[1..] {
            let Some(tids) = &t.ids else { continue };
            for ((name, a), (_, b)) in kinds(tids).into_iter().zip(kinds(ids)) {
                if a != b {
                    return Err(RestoreError::Unsupported {
                        pid: t.pid,
                        what: format!("a {name} namespace other than the root's"),
                        hint: "every task must share the root's namespaces",
                    });
                }
            }
        }
        let mut out = NsRestore::default();
        for ((name, a), (_, b)) in kinds(ids).into_iter().zip(kinds(&criu)) {
            if a == b || a.is_none() || b.is_none() {
                continue;
            }
            let id = a.unwrap_or_default();
            match name {
                "uts" => out.uts = Some(uts::UtsState::load(images, id)?),
                "time" => out.time = Some(time::TimeState::load(images, id)?),
                "user" => out.user = Some(user::UserState::load(images, id)?),
                "ipc" => out.ipc = Some(ipc::IpcState::load(images, id)?),
                "pid" => {
                    pid::check_plan(plan)?;
                    out.pid = true;
                }
                // Made before the root, by the caller ([`net::NetRestore`],
                // [`crate::mnt::restore`]).
                "net" | "mnt" => {}
                _ => {
                    return Err(RestoreError::Unsupported {
                        pid: root.pid,
                        what: format!("a {name} namespace of its own (id {id})"),
                        hint: "only UTS, IPC, network, time, user and pid namespaces are \
                               restored yet",
                    });
                }
            }
        }
        if out.user.is_some() && ids.net_ns_id != criu.net_ns_id {
            return Err(RestoreError::Unsupported {
                pid: root.pid,
                what: "a user namespace of its own together with a network namespace of its \
                       own"
                .into(),
                hint: "the network namespace is made before the root, outside its new user \
                       namespace; restore inside the tree's network namespace",
            });
        }
        Ok(out)
    }

    /// The clone flags that create the root's namespaces.
    pub fn clone_flags(&self) -> u64 {
        let mut f = CloneFlags::empty();
        if self.uts.is_some() {
            f |= CloneFlags::CLONE_NEWUTS;
        }
        if self.ipc.is_some() {
            f |= CloneFlags::CLONE_NEWIPC;
        }
        if self.pid {
            f |= CloneFlags::CLONE_NEWPID;
        }
        if self.user.is_some() {
            f |= CloneFlags::CLONE_NEWUSER;
        }
        f.bits() as u64
    }

    /// Whether the root is restored as the init of a new pid namespace.
    pub fn new_pid_ns(&self) -> bool {
        self.pid
    }

    /// Puts the new root (`rt`, still single-threaded; `data`: its gadget's data page) into
    /// its own time namespace, when it had one: before anything else of it is restored.
    pub fn enter_time(&self, rt: &mut super::rexec::RemoteThread, data: u64) -> Result<()> {
        match &self.time {
            Some(t) => t.enter(rt, data),
            None => Ok(()),
        }
    }

    /// The root's own user namespace, if it has one.
    pub fn user(&self) -> Option<&user::UserState> {
        self.user.as_ref()
    }

    /// Sets the state of the new namespaces of the root (`pid` in the images, `host` in
    /// criu's pid namespace; created with [`NsRestore::clone_flags`] and still stopped).
    pub fn apply(&self, pid: i32, host: i32) -> Result<()> {
        if let Some(u) = &self.user {
            u.apply(pid, host)?;
        }
        let pid = host;
        if let Some(u) = &self.uts {
            u.apply(pid)?;
        }
        if let Some(i) = &self.ipc {
            i.apply(pid)?;
        }
        Ok(())
    }
}

/// A failure to join `pid`'s namespaces.
fn enter_err(pid: i32, step: &str, e: crate::sys::nsenter::NsEnterError) -> RestoreError {
    let reason = match std::error::Error::source(&e) {
        Some(s) => format!("{e}: {s}"),
        None => e.to_string(),
    };
    RestoreError::Task {
        pid,
        tid: pid,
        step: step.to_string(),
        reason,
    }
}
