//! Whether the root gets a mount namespace of its own at restore, and what of the images
//! that namespace cannot hold yet (refused before anything exists).

use std::path::Path;

use criu_proto::images::{InventoryEntry, TaskKobjIdsEntry};

use super::build::MntNs;
use super::mounts::wrong_instance;
use super::tree::{MntTree, Source};
use crate::restore::imgread::{INVENTORY_MAGIC, Images};
use crate::restore::plan::RestorePlan;
use crate::restore::{RestoreError, Result};

/// The root's mount namespace to make, read and checked.
#[derive(Debug)]
pub struct MntRestore {
    pid: i32,
    tree: MntTree,
}

fn differs(a: Option<u32>, b: Option<u32>) -> bool {
    matches!((a, b), (Some(a), Some(b)) if a != b)
}

/// Files a task holds that this restore would recreate in criu's mount namespace instead
/// of the tree's: refused, naming the file.
fn check_files(plan: &RestorePlan) -> Result<()> {
    let pid = plan.tasks[0].pid;
    if let Some(id) = plan.remapped.iter().next() {
        let name = plan
            .files
            .get(id)
            .and_then(|f| f.reg.as_ref())
            .map(|r| r.name.clone());
        return Err(RestoreError::Unsupported {
            pid,
            what: format!(
                "an unlinked or link-remapped file ({}, file id {id}) in a restored mount namespace",
                name.unwrap_or_default()
            ),
            hint: "ghost and link-remapped files are recreated in criu's namespace only; \
                   close them before the dump",
        });
    }
    for f in plan.files.values() {
        let named = f
            .usk
            .as_ref()
            .is_some_and(|u| u.name.first().is_some_and(|&c| c != 0));
        if named || f.fifo.is_some() {
            return Err(RestoreError::Unsupported {
                pid,
                what: format!(
                    "a {} (file id {}) in a restored mount namespace",
                    if named {
                        "unix socket bound to a path"
                    } else {
                        "FIFO"
                    },
                    f.id
                ),
                hint: "paths of sockets and FIFOs are not yet resolved in the restored tree",
            });
        }
    }
    Ok(())
}

impl MntRestore {
    /// None when the root shares criu's mount namespace (or the images have no ids).
    /// `new_root`: `--root`, which needs a mount namespace in the images.
    pub fn load(
        images: &Images,
        plan: &RestorePlan,
        new_root: Option<&Path>,
    ) -> Result<Option<MntRestore>> {
        let root = &plan.tasks[0];
        let none = || match new_root {
            Some(r) => Err(RestoreError::Unsupported {
                pid: root.pid,
                what: format!(
                    "--root {} for a tree in criu's mount namespace",
                    r.display()
                ),
                hint: "--root replaces the root mount of the tree's own mount namespace; \
                       these images have none",
            }),
            None => Ok(None),
        };
        let (Some(ids), true) = (&root.ids, images.exists("inventory.img")) else {
            return none();
        };
        let inv: InventoryEntry = images.single("inventory.img", INVENTORY_MAGIC)?;
        let Some(criu) = inv.root_ids else {
            return none();
        };
        if !differs(ids.mnt_ns_id, criu.mnt_ns_id) {
            return none();
        }
        let tree = MntTree::load(images, ids.mnt_ns_id.unwrap_or_default())?;
        check_instances(&tree, ids, &criu, root.pid)?;
        check_files(plan)?;
        Ok(Some(MntRestore {
            pid: root.pid,
            tree,
        }))
    }

    /// Makes the namespace, the calling thread inside it (see [`MntNs`]).
    pub fn create(
        &self,
        images: &Images,
        external: &[String],
        new_root: Option<&Path>,
    ) -> Result<MntNs> {
        MntNs::create(&self.tree, images, external, new_root, self.pid)
    }
}

/// A proc (mqueue) instance would be criu's pid (IPC) namespace's when the root has its
/// own: refused rather than restored showing the wrong processes (queues).
fn check_instances(
    tree: &MntTree,
    ids: &TaskKobjIdsEntry,
    criu: &TaskKobjIdsEntry,
    pid: i32,
) -> Result<()> {
    let own_pid = differs(ids.pid_ns_id, criu.pid_ns_id);
    let own_ipc = differs(ids.ipc_ns_id, criu.ipc_ns_id);
    for m in &tree.mounts {
        if let Source::New { kind } = m.source
            && wrong_instance(kind, own_pid, own_ipc)
        {
            return Err(RestoreError::Unsupported {
                pid,
                what: format!(
                    "a new {} instance (mount {} at {}) in a tree with its own {} namespace",
                    kind.name(),
                    m.entry.mnt_id,
                    m.entry.mountpoint,
                    if kind == super::model::FsKind::Proc {
                        "pid"
                    } else {
                        "IPC"
                    }
                ),
                hint: "criu's restoring thread would make it in its own namespace; not yet \
                       made from inside the tree",
            });
        }
    }
    Ok(())
}
