//! `mountpoints-N.img` read back and checked before anything is mounted: one root (the
//! mount at `/` whose parent is not in the image), every other parent in the image, no
//! cycle, no duplicate id, absolute paths without `..`, each mountpoint below its parent's,
//! a kind this engine restores. The mounts come out in image order, each after its parent.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Component, Path};

use criu_proto::ImageKind;
use criu_proto::images::MntEntry;

use super::model::FsKind;
use crate::restore::imgread::Images;
use crate::restore::{RestoreError, Result};

/// How a mount comes back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `--external mnt[KEY]:HOSTPATH` names what to bind.
    External { key: String },
    /// A bind of this path of criu's namespace.
    Host { path: String },
    /// A new instance of the file system...
    New { kind: FsKind },
    /// ...or a bind of a subdirectory of one (`bind_of`: the index of the mount showing its
    /// root, restored first).
    BindWithin { bind_of: usize },
}

/// One mount to make, with its index in the image (for errors).
#[derive(Debug, Clone)]
pub struct Mount {
    pub entry: MntEntry,
    pub index: usize,
    pub source: Source,
}

/// The namespace's mounts, parents first (the root first).
#[derive(Debug, Clone)]
pub struct MntTree {
    /// `mountpoints-N.img`.
    pub image: String,
    pub mounts: Vec<Mount>,
}

fn bad(image: &str, entry: Option<usize>, reason: impl Into<String>) -> RestoreError {
    RestoreError::BadImage {
        image: image.to_string(),
        entry,
        reason: reason.into(),
    }
}

/// Whether `p` is absolute and has no `..` (nor `.`) component.
fn clean_abs(p: &str) -> bool {
    let path = Path::new(p);
    path.is_absolute()
        && path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
}

impl MntTree {
    /// Reads and checks `mountpoints-<nsid>.img`.
    pub fn load(images: &Images, nsid: u32) -> Result<MntTree> {
        let image = ImageKind::Mnts.file_name(nsid as u64);
        if !images.exists(&image) {
            return Err(bad(&image, None, "missing (the root's mount namespace)"));
        }
        let entries: Vec<MntEntry> = images.entries(&image, ImageKind::Mnts.magic())?;
        MntTree::check(image, entries)
    }

    /// Checks `entries` of `image` and orders them parents first.
    pub fn check(image: String, entries: Vec<MntEntry>) -> Result<MntTree> {
        let err = |i: usize, e: &MntEntry, why: String| {
            bad(
                &image,
                Some(i),
                format!("mount {} at {}: {why}", e.mnt_id, e.mountpoint),
            )
        };
        let mut by_id = BTreeMap::new();
        for (i, e) in entries.iter().enumerate() {
            if by_id.insert(e.mnt_id, i).is_some() {
                return Err(err(i, e, "a second mount with this id".into()));
            }
            if !clean_abs(&e.mountpoint) || !clean_abs(&e.root) {
                return Err(err(
                    i,
                    e,
                    format!(
                        "root {:?} or mountpoint not an absolute path without '..'",
                        e.root
                    ),
                ));
            }
        }
        let mut root = None;
        let mut children: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (i, e) in entries.iter().enumerate() {
            match by_id.get(&e.parent_mnt_id) {
                Some(&p) => children.entry(p).or_default().push(i),
                None if e.mountpoint == "/" && root.is_none() => root = Some(i),
                None => {
                    return Err(err(
                        i,
                        e,
                        format!("parent id {} does not exist", e.parent_mnt_id),
                    ));
                }
            }
        }
        let Some(root) = root else {
            return Err(bad(
                &image,
                None,
                "no root mount (at / with no parent in the image)",
            ));
        };
        // Breadth first from the root: what is not reached hangs in a cycle.
        let mut order = Vec::with_capacity(entries.len());
        let mut queue = VecDeque::from([root]);
        while let Some(i) = queue.pop_front() {
            order.push(i);
            for &c in children.get(&i).map(Vec::as_slice).unwrap_or(&[]) {
                let (pm, cm) = (&entries[i].mountpoint, &entries[c].mountpoint);
                if !Path::new(cm).starts_with(pm) {
                    return Err(err(c, &entries[c], format!("not below its parent's {pm}")));
                }
                queue.push_back(c);
            }
        }
        if let Some(i) = (0..entries.len()).find(|i| !order.contains(i)) {
            return Err(err(i, &entries[i], "its parents form a cycle".into()));
        }
        // A tree: now in image order (the dumped mountinfo's, creation order), each mount
        // after its parent.
        let mut placed = vec![false; entries.len()];
        let mut order = Vec::with_capacity(entries.len());
        for i in 0..entries.len() {
            let mut chain = Vec::new();
            let mut at = i;
            while !placed[at] {
                placed[at] = true;
                chain.push(at);
                match by_id.get(&entries[at].parent_mnt_id) {
                    Some(&p) if at != root => at = p,
                    _ => break,
                }
            }
            order.extend(chain.into_iter().rev());
        }
        let mut mounts: Vec<Mount> = Vec::with_capacity(order.len());
        for i in order {
            let e = &entries[i];
            let source = source_of(&mounts, e).map_err(|why| err(i, e, why))?;
            mounts.push(Mount {
                entry: e.clone(),
                index: i,
                source,
            });
        }
        Ok(MntTree { image, mounts })
    }
}

/// How `e` comes back, given the mounts ordered before it.
fn source_of(before: &[Mount], e: &MntEntry) -> std::result::Result<Source, String> {
    if e.ext_mount == Some(true) || e.ext_key.is_some() {
        let key = e.ext_key.clone().unwrap_or_else(|| e.mountpoint.clone());
        return Ok(Source::External { key });
    }
    if let Some(path) = &e.criu_rs_host_path {
        if !clean_abs(path) {
            return Err(format!("host path {path:?} is not absolute without '..'"));
        }
        return Ok(Source::Host { path: path.clone() });
    }
    let kind = FsKind::from_code(e.fstype, e.fsname.as_deref()).ok_or_else(|| {
        format!(
            "file system {} ({}) is not restored here",
            e.fstype,
            e.fsname.as_deref().unwrap_or("?")
        )
    })?;
    if e.root == "/" {
        return Ok(Source::New { kind });
    }
    let bind_of = before
        .iter()
        .position(|m| {
            m.entry.root_dev == e.root_dev
                && m.entry.root == "/"
                && matches!(m.source, Source::New { .. })
        })
        .ok_or_else(|| {
            format!(
                "a bind of {} of device {:#x} with no mount of that device's root before it",
                e.root, e.root_dev
            )
        })?;
    Ok(Source::BindWithin { bind_of })
}

/// The restore error for a mount `m` of `tree`.
pub fn mount_err(tree: &MntTree, m: &Mount, why: String) -> RestoreError {
    bad(
        &tree.image,
        Some(m.index),
        format!("mount {} at {}: {why}", m.entry.mnt_id, m.entry.mountpoint),
    )
}
