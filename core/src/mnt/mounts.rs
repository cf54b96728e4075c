//! Mounting a checked [`MntTree`] under a staging directory, from criu's restoring thread
//! inside its new mount namespace (every mount private: nothing reaches criu's).
//!
//! Targets are opened inside the tree ([`super::build::in_tree`]: symlinks resolve as the
//! tree's tasks will see them) and mounted on through `/proc/self/fd/N`; each mount's own
//! root is kept open, so a mount stacked over it later is still reachable for its flags and
//! propagation. Per-mount flags are applied with a bind remount, then peer groups
//! (`MOVE_MOUNT_SET_GROUP`), slaves, and unbindable mounts.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::mount::{MsFlags, mount};
use nix::sys::stat::Mode;

use super::build::in_tree;
use super::model::FsKind;
use super::tree::{MntTree, Mount, Source, mount_err};
use crate::restore::imgread::Images;
use crate::restore::{RestoreError, Result};

/// The magic link of `fd` in criu's own `/proc`.
fn fd_path(fd: &impl AsRawFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// Opens `path` of the tree as an `O_PATH` directory, making it when missing.
fn open_in_tree(path: &str) -> std::result::Result<OwnedFd, String> {
    in_tree(|| {
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        match open(path, flags, Mode::empty()) {
            Err(Errno::ENOENT) => {
                std::fs::create_dir_all(path).map_err(|e| format!("mkdir -p {path}: {e}"))?;
                open(path, flags, Mode::empty()).map_err(|e| format!("open {path}: {e}"))
            }
            r => r.map_err(|e| format!("open {path}: {e}")),
        }
    })?
}

/// The host path `--external mnt[KEY]:HOSTPATH` (or `--ext-mount-map KEY:HOSTPATH`) gives.
pub fn external_path(external: &[String], key: &str) -> Option<String> {
    let pre = format!("mnt[{key}]:");
    external
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix(&pre))
        .map(str::to_string)
}

/// What the build made: each mount's root, by tree index.
#[derive(Debug)]
pub struct Built {
    pub roots: Vec<OwnedFd>,
}

/// Mounts every mount of `tree` (root on `staging`, a bind of `new_root` when given, the
/// others on their mountpoints in it), restores tmpfs contents, flags and propagation. `set_root` is told the tree's root as
/// soon as it is mounted (the later targets are opened inside it).
pub fn build(
    tree: &MntTree,
    images: &Images,
    external: &[String],
    new_root: Option<&Path>,
    staging: &Path,
    set_root: &mut dyn FnMut(&OwnedFd),
) -> Result<Built> {
    let mut roots: Vec<OwnedFd> = Vec::with_capacity(tree.mounts.len());
    for (i, m) in tree.mounts.iter().enumerate() {
        let e = &m.entry;
        let fail = |why: String| mount_err(tree, m, why);
        let target = if i == 0 {
            let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
            open(staging, flags, Mode::empty()).map_err(|e| fail(format!("staging: {e}")))?
        } else {
            open_in_tree(&e.mountpoint).map_err(|why| fail(format!("mountpoint: {why}")))?
        };
        let tpath = fd_path(&target);
        match &m.source {
            // `--root`: the tree's root mount is that directory.
            _ if i == 0 && new_root.is_some() => {
                let r = new_root.unwrap_or(Path::new("/")).to_string_lossy();
                bind(&r, &tpath).map_err(|e| fail(format!("--root: {e}")))?;
            }
            Source::Host { path } => bind(path, &tpath).map_err(&fail)?,
            Source::External { key } => {
                let path = external_path(external, key).ok_or_else(|| {
                    fail(format!(
                        "external mount {key:?}: give --external mnt[{key}]:HOSTPATH \
                         (or --ext-mount-map {key}:HOSTPATH)"
                    ))
                })?;
                bind(&path, &tpath).map_err(&fail)?;
            }
            Source::BindWithin { bind_of } => {
                let src = &tree.mounts[*bind_of].entry;
                let within = Path::new(&src.mountpoint).join(e.root.trim_start_matches('/'));
                let within = within.to_string_lossy().into_owned();
                let fd =
                    open_in_tree(&within).map_err(|why| fail(format!("bind source: {why}")))?;
                bind(&fd_path(&fd), &tpath).map_err(&fail)?;
            }
            Source::New { kind } => {
                let sb = MsFlags::from_bits_truncate(e.sb_flags.unwrap_or(0) as _);
                mount(
                    Some(e.source.as_str()),
                    tpath.as_str(),
                    Some(kind.name()),
                    sb,
                    Some(e.options.as_str()),
                )
                .map_err(|err| fail(format!("mount -t {} -o {}: {err}", kind.name(), e.options)))?;
            }
        }
        // The mount just made: its root, whatever is stacked on it later.
        let root = if i == 0 {
            let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
            open(staging, flags, Mode::empty()).map_err(|e| fail(format!("staging: {e}")))?
        } else {
            open_in_tree(&e.mountpoint).map_err(|why| fail(format!("new mount: {why}")))?
        };
        if i == 0 {
            set_root(&root);
        }
        if let Source::New { kind } = &m.source
            && kind.has_contents()
        {
            contents(tree, m, images)?;
        }
        remount_flags(&root, e.flags).map_err(&fail)?;
        roots.push(root);
    }
    propagation(tree, &roots)?;
    Ok(Built { roots })
}

/// A non-recursive bind of `src` on `target`.
fn bind(src: &str, target: &str) -> std::result::Result<(), String> {
    mount(
        Some(src),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| format!("bind {src}: {e}"))
}

/// The per-mount flags (read-only, nosuid, nodev, noexec, atime), by a bind remount.
fn remount_flags(root: &OwnedFd, flags: u32) -> std::result::Result<(), String> {
    let keep = MsFlags::MS_RDONLY
        | MsFlags::MS_NOSUID
        | MsFlags::MS_NODEV
        | MsFlags::MS_NOEXEC
        | MsFlags::MS_NOATIME
        | MsFlags::MS_NODIRATIME
        | MsFlags::MS_RELATIME
        | MsFlags::MS_STRICTATIME;
    let f = MsFlags::from_bits_truncate(flags as _) & keep;
    mount(
        None::<&str>,
        fd_path(root).as_str(),
        None::<&str>,
        MsFlags::MS_REMOUNT | MsFlags::MS_BIND | f,
        None::<&str>,
    )
    .map_err(|e| format!("remount with flags {:#x}: {e}", f.bits()))
}

/// Unpacks `tmpfs-dev-<dev>.tar.gz.img` into the new tmpfs `m`.
fn contents(tree: &MntTree, m: &Mount, images: &Images) -> Result<()> {
    let e = &m.entry;
    let name = criu_proto::ImageKind::TmpfsDev.file_name(e.root_dev as u64);
    let path = images.path(&name);
    let file = File::open(&path).map_err(|source| RestoreError::ImageIo {
        path: path.clone(),
        source,
    })?;
    let mp = e.mountpoint.clone();
    in_tree(|| super::tmpfs::unpack(file, Path::new(&mp), &name))
        .map_err(|why| mount_err(tree, m, why))?
        .map_err(|err| mount_err(tree, m, crate::plugins::error_chain(&err)))
}

fn set(root: &OwnedFd, flag: MsFlags) -> std::result::Result<(), String> {
    mount(
        None::<&str>,
        fd_path(root).as_str(),
        None::<&str>,
        flag,
        None::<&str>,
    )
    .map_err(|e| format!("mount --make-{flag:?}: {e}"))
}

/// Peer groups, slaves and unbindable mounts, as the image says (every mount is private
/// until here). A group's first mount is its leader: made shared, the others join it with
/// `MOVE_MOUNT_SET_GROUP`; a slave joins its master's leader, then `MS_SLAVE`.
fn propagation(tree: &MntTree, roots: &[OwnedFd]) -> Result<()> {
    let mut leader: BTreeMap<u32, usize> = BTreeMap::new();
    for (i, m) in tree.mounts.iter().enumerate() {
        let g = m.entry.shared_id.unwrap_or(0);
        if g != 0 {
            leader.entry(g).or_insert(i);
        }
    }
    let fail = |i: usize, why: String| mount_err(tree, &tree.mounts[i], why);
    let set_group = |from: usize, to: usize| {
        crate::sys::mount::move_mount_set_group(roots[from].as_fd(), roots[to].as_fd()).map_err(
            |e| {
                fail(
                    to,
                    format!(
                        "move_mount(MOVE_MOUNT_SET_GROUP) from mount {}: {e}",
                        tree.mounts[from].entry.mnt_id
                    ),
                )
            },
        )
    };
    let mut done = vec![false; tree.mounts.len()];
    // Leaders first, masters before their slaves: a pass per level of mastership.
    for _ in 0..=tree.mounts.len() {
        let mut progress = false;
        for &l in leader.values() {
            if done[l] {
                continue;
            }
            let master = tree.mounts[l].entry.master_id.unwrap_or(0);
            if master != 0 {
                let Some(&ml) = leader.get(&master) else {
                    return Err(fail(l, format!("master group {master} has no mount")));
                };
                if !done[ml] {
                    continue;
                }
                set_group(ml, l)?;
                set(&roots[l], MsFlags::MS_SLAVE).map_err(|e| fail(l, e))?;
            }
            set(&roots[l], MsFlags::MS_SHARED).map_err(|e| fail(l, e))?;
            done[l] = true;
            progress = true;
        }
        if !progress {
            break;
        }
    }
    for (i, m) in tree.mounts.iter().enumerate() {
        let (g, master) = (
            m.entry.shared_id.unwrap_or(0),
            m.entry.master_id.unwrap_or(0),
        );
        if g != 0 && !done[i] {
            let l = leader[&g];
            if !done[l] {
                return Err(fail(
                    i,
                    format!("peer group {g} cannot be made (a master cycle?)"),
                ));
            }
            set_group(l, i)?;
        } else if g == 0 && master != 0 {
            let Some(&ml) = leader.get(&master) else {
                return Err(fail(i, format!("master group {master} has no mount")));
            };
            set_group(ml, i)?;
            set(&roots[i], MsFlags::MS_SLAVE).map_err(|e| fail(i, e))?;
        }
        let unbindable = m.entry.flags & MsFlags::MS_UNBINDABLE.bits() as u32 != 0;
        if unbindable && g == 0 {
            set(&roots[i], MsFlags::MS_UNBINDABLE).map_err(|e| fail(i, e))?;
        }
    }
    Ok(())
}

/// Whether `kind` instances made by criu's restoring thread would belong to the wrong
/// namespace when the root has its own pid (`pid`) or IPC (`ipc`) namespace.
pub fn wrong_instance(kind: FsKind, pid: bool, ipc: bool) -> bool {
    (kind == FsKind::Proc && pid) || (kind == FsKind::Mqueue && ipc)
}
