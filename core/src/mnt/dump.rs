//! Dump of the root's mount namespace: every mount of `/proc/ROOT/mountinfo` becomes one
//! CRIU `mnt_entry` in `mountpoints-<nsid>.img`, classified as
//! - external (`--external mnt[PATH]:KEY`, CRIU's syntax): only its key is kept
//!   (`ext_mount`, `ext_key`), the restore binds what `--external mnt[KEY]:HOSTPATH` (or
//!   `--ext-mount-map KEY:HOSTPATH`) names;
//! - a bind of one of criu's own mounts (same superblock, its root below that mount's root):
//!   restored as a bind of the same host path (our field `criu_rs_host_path`);
//! - a file system of its own the restore makes anew: proc, sysfs, devpts, mqueue, cgroup2
//!   and devtmpfs new instances, tmpfs and ramfs with their contents ([`super::tmpfs`]);
//!   a mount of such a superblock whose root is a subdirectory is a bind of the one that
//!   shows its root;
//! - anything else is refused naming mount id, fs type and mountpoint.
//!
//! Propagation: `shared:N` (a peer group of the namespace; one shared with criu's own
//! mounts is refused), `master:N` (a slave of a group of the namespace; of an outside group
//! refused), `unbindable` (CRIU's `MS_UNBINDABLE` in `flags`).

use std::collections::BTreeSet;
use std::path::{Component, Path};

use criu_proto::ImageKind;
use criu_proto::images::MntEntry;

use super::model::{self, FsKind, Propagation};
use super::tmpfs::{self, TmpfsError};
use crate::image::ImageDir;
use crate::proc::mountinfo::MountInfo;

/// Why a mount namespace cannot be dumped.
#[derive(Debug, thiserror::Error)]
pub enum MntDumpError {
    #[error(
        "mount {mnt_id} ({fstype}) at {path}: {why}; mark it external with \
         --external mnt[{path}]:KEY (restore with --external mnt[KEY]:HOSTPATH) or unmount it"
    )]
    Unsupported {
        mnt_id: i32,
        fstype: String,
        path: String,
        why: String,
    },
    #[error("no root mount (mountpoint / whose parent is outside the namespace) in {what}")]
    NoRoot { what: String },
    #[error("reading {what}")]
    Proc {
        what: String,
        #[source]
        source: crate::proc::ProcError,
    },
    #[error("writing {image}")]
    Image {
        image: String,
        #[source]
        source: crate::image::ImageError,
    },
    #[error("mount {mnt_id} at {path}: contents")]
    Tmpfs {
        mnt_id: i32,
        path: String,
        #[source]
        source: TmpfsError,
    },
    #[error("mount {mnt_id} at {path}: {what}")]
    Stat {
        mnt_id: i32,
        path: String,
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// One mount as it will be written, with what the dump must add (a contents archive).
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub entry: MntEntry,
    /// A tmpfs/ramfs whose contents go into `tmpfs-dev-<root_dev>.tar.gz.img`.
    pub contents: bool,
}

/// The key `--external mnt[PATH]:KEY` gives the mount at `path`.
pub fn external_key(external: &[String], path: &str) -> Option<String> {
    let pre = format!("mnt[{path}]:");
    external
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix(&pre))
        .map(str::to_string)
}

/// `root` below `base` (both absolute paths within one file system): the rest, "" when equal.
fn below<'a>(root: &'a str, base: &str) -> Option<&'a str> {
    if base == "/" {
        return Some(root.trim_start_matches('/'));
    }
    let rest = root.strip_prefix(base)?;
    if rest.is_empty() {
        Some("")
    } else {
        rest.strip_prefix('/')
    }
}

/// The path in criu's namespace of `m`'s root: through criu's mount of the same superblock
/// whose root holds it (the deepest such root).
pub fn host_path(m: &MountInfo, host: &[MountInfo]) -> Option<String> {
    host.iter()
        .filter(|h| (h.dev_major, h.dev_minor) == (m.dev_major, m.dev_minor))
        .filter_map(|h| below(&m.root, &h.root).map(|rest| (h, rest)))
        .max_by_key(|(h, _)| h.root.len())
        .map(|(h, rest)| match rest {
            "" => h.mount_point.clone(),
            rest => Path::new(&h.mount_point)
                .join(rest)
                .to_string_lossy()
                .into_owned(),
        })
}

fn unsupported(m: &MountInfo, why: impl Into<String>) -> MntDumpError {
    MntDumpError::Unsupported {
        mnt_id: m.mnt_id,
        fstype: m.fs_type.clone(),
        path: m.mount_point.clone(),
        why: why.into(),
    }
}

/// Classifies the namespace's `mounts` against criu's own (`host`).
pub fn plan(
    mounts: &[MountInfo],
    host: &[MountInfo],
    external: &[String],
) -> Result<Vec<Planned>, MntDumpError> {
    let ids: BTreeSet<i32> = mounts.iter().map(|m| m.mnt_id).collect();
    let roots: Vec<_> = mounts
        .iter()
        .filter(|m| !ids.contains(&m.parent_id))
        .collect();
    match roots.as_slice() {
        [r] if r.mount_point == "/" => {}
        [] => {
            return Err(MntDumpError::NoRoot {
                what: "its mountinfo".into(),
            });
        }
        [r, ..] => {
            return Err(unsupported(
                r,
                "its parent is not visible from the root task (a root chrooted below its \
                 namespace's root?)",
            ));
        }
    }
    let host_groups: BTreeSet<u32> = host
        .iter()
        .map(|h| Propagation::parse(&h.optional).shared)
        .filter(|&g| g != 0)
        .collect();
    let groups: BTreeSet<u32> = mounts
        .iter()
        .map(|m| Propagation::parse(&m.optional).shared)
        .filter(|&g| g != 0)
        .collect();
    let mut out = Vec::with_capacity(mounts.len());
    for m in mounts {
        if Path::new(&m.mount_point)
            .components()
            .any(|c| c == Component::ParentDir)
        {
            return Err(unsupported(m, "a mountpoint with '..'"));
        }
        let prop = Propagation::parse(&m.optional);
        if prop.shared != 0 && host_groups.contains(&prop.shared) {
            return Err(unsupported(
                m,
                format!(
                    "it shares peer group {} with criu's mounts (CRIU's \
                     --enable-external-sharing is not supported)",
                    prop.shared
                ),
            ));
        }
        if prop.master != 0 && !groups.contains(&prop.master) {
            return Err(unsupported(
                m,
                format!(
                    "it is a slave of peer group {}, which has no mount in the namespace \
                     (CRIU's --enable-external-masters is not supported)",
                    prop.master
                ),
            ));
        }
        let (sb_flags, options) = model::super_flags(&m.super_options);
        let mut flags = model::mount_flags(&m.mount_options);
        if prop.unbindable {
            flags |= nix::mount::MsFlags::MS_UNBINDABLE.bits() as u32;
        }
        let mut entry = MntEntry {
            fstype: model::code_of_name(&m.fs_type),
            mnt_id: m.mnt_id as u32,
            root_dev: model::kdev(m.dev_major, m.dev_minor),
            parent_mnt_id: m.parent_id as u32,
            flags,
            root: m.root.clone(),
            mountpoint: m.mount_point.clone(),
            source: m.source.clone(),
            options,
            shared_id: Some(prop.shared),
            master_id: Some(prop.master),
            sb_flags: Some(sb_flags),
            fsname: Some(m.fs_type.clone()),
            ..Default::default()
        };
        let mut contents = false;
        if let Some(key) = external_key(external, &m.mount_point) {
            entry.ext_mount = Some(true);
            entry.ext_key = Some(key);
        } else if let Some(path) = host_path(m, host) {
            entry.criu_rs_host_path = Some(path);
        } else if let Some(kind) = FsKind::from_name(&m.fs_type) {
            entry.fstype = kind.code();
            let fsroot = mounts
                .iter()
                .any(|o| (o.dev_major, o.dev_minor) == (m.dev_major, m.dev_minor) && o.root == "/");
            if !fsroot {
                return Err(unsupported(
                    m,
                    format!(
                        "a bind of {} of a {} no mount of the namespace shows from its root",
                        m.root, m.fs_type
                    ),
                ));
            }
            contents = kind.has_contents() && m.root == "/";
        } else {
            return Err(unsupported(
                m,
                "neither a new instance of a file system dumped here (tmpfs, ramfs, proc, \
                 sysfs, devpts, mqueue, cgroup2, devtmpfs) nor a bind of a mount of criu's",
            ));
        }
        out.push(Planned { entry, contents });
    }
    Ok(out)
}

/// Dumps the mount namespace `nsid` of `root_pid`: `mountpoints-<nsid>.img` and the
/// contents of its tmpfs mounts. Returns how many mounts were written.
pub fn dump(
    dir: &ImageDir,
    root_pid: i32,
    nsid: u32,
    external: &[String],
) -> Result<usize, MntDumpError> {
    use crate::proc::mountinfo::read_mountinfo;
    let mounts = read_mountinfo(root_pid).map_err(|source| MntDumpError::Proc {
        what: format!("/proc/{root_pid}/mountinfo"),
        source,
    })?;
    let me = nix::unistd::getpid().as_raw();
    let host = read_mountinfo(me).map_err(|source| MntDumpError::Proc {
        what: format!("criu's /proc/{me}/mountinfo"),
        source,
    })?;
    let planned = plan(&mounts, &host, external)?;
    for p in planned.iter().filter(|p| p.contents) {
        archive(dir, root_pid, &p.entry)?;
    }
    let entries: Vec<MntEntry> = planned.into_iter().map(|p| p.entry).collect();
    let image = ImageKind::Mnts.file_name(nsid as u64);
    dir.write_image(ImageKind::Mnts, nsid as u64, &entries)
        .map_err(|source| MntDumpError::Image { image, source })?;
    tracing::info!(
        pid = root_pid,
        nsid,
        mounts = entries.len(),
        "mount namespace dumped"
    );
    Ok(entries.len())
}

/// The contents of tmpfs `e`, read through the root's view (`/proc/ROOT/root/MOUNTPOINT`),
/// checked to be that very superblock (not a mount stacked over it).
fn archive(dir: &ImageDir, root_pid: i32, e: &MntEntry) -> Result<(), MntDumpError> {
    use std::os::unix::fs::MetadataExt;
    let path =
        Path::new(&format!("/proc/{root_pid}/root")).join(e.mountpoint.trim_start_matches('/'));
    let stat_err = |what: &str, source| MntDumpError::Stat {
        mnt_id: e.mnt_id as i32,
        path: e.mountpoint.clone(),
        what: what.to_string(),
        source,
    };
    let md = std::fs::metadata(&path).map_err(|s| stat_err("stat", s))?;
    let dev = md.dev();
    let (major, minor) = (
        nix::sys::stat::major(dev) as u32,
        nix::sys::stat::minor(dev) as u32,
    );
    if model::kdev(major, minor) != e.root_dev {
        return Err(stat_err(
            "its contents are hidden by a mount stacked on it",
            std::io::Error::from_raw_os_error(libc::EBUSY),
        ));
    }
    let image = ImageKind::TmpfsDev.file_name(e.root_dev as u64);
    let (file, _) = dir
        .create_file(&image)
        .map_err(|source| MntDumpError::Image {
            image: image.clone(),
            source,
        })?;
    tmpfs::archive(&path, dev, file, &image).map_err(|source| MntDumpError::Tmpfs {
        mnt_id: e.mnt_id as i32,
        path: e.mountpoint.clone(),
        source,
    })
}
