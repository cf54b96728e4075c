//! The fanotify plugin: CRIU's FANOTIFY entry (`file_entry.ffy`): `fanotify_init` flags and
//! event flags, and every mark with its mark flags, mask and ignored mask. Inode marks carry
//! the inode's `fh_entry` (handle, and its path found at dump), mount marks the mount id and
//! its mount point. Filesystem marks (`FAN_MARK_FILESYSTEM`), which CRIU's `mark_type` has no
//! value for, are written as mount marks of a mount of that filesystem with our field
//! `criu_rs_filesystem = 1001` (upstream CRIU would restore them as mount marks). Mount
//! namespace marks are refused.
//!
//! Restore: `fanotify_init` with the dumped flags (then `O_NONBLOCK` as the file had it), then
//! per mark the ignored mask first (so that a mark made with `FAN_MARK_IGNORE` keeps those
//! semantics) and the mask after, each with the mark flags, on `/proc/self/fd/N` of an
//! `O_PATH` fd of the target.

use criu_plugin_api::{DumpContext, FdDesc, FdHandler, FileRestorer, PluginError, RestoreContext};
use criu_proto::images::{
    FanotifyFileEntry, FanotifyInodeMarkEntry, FanotifyMarkEntry, FanotifyMountMarkEntry, FdTypes,
    FileEntry, MarkType,
};

use crate::deferred::open_in_tree;
use crate::fdinfo::{FanotifyMark, MarkTarget, parse_fanotify};
use crate::handle::{Found, Mount, find_path, kdev_name, read_mountinfo, to_fh_entry};
use crate::{FANOTIFY_LINK, warn_queued};

/// The fanotify fd handler (stateless).
#[derive(Debug, Default)]
pub struct FanotifyHandler;

fn describe_mark(m: &FanotifyMark, fd: &FdDesc) -> String {
    let on = match &m.target {
        MarkTarget::Inode { ino, .. } => {
            format!("inode {ino:#x} on device {}", kdev_name(m.sdev))
        }
        MarkTarget::Mount { mnt_id } => format!("mount {mnt_id}"),
        MarkTarget::Filesystem => format!("filesystem {}", kdev_name(m.sdev)),
    };
    format!("fanotify mark on {on} of {}", fd.describe())
}

/// The `fanotify_mark_entry` of one mark.
fn dump_mark(
    ctx: &dyn DumpContext,
    m: &FanotifyMark,
    id: u32,
    fd: &FdDesc,
    mounts: &[Mount],
) -> Result<FanotifyMarkEntry, PluginError> {
    let refuse = |hint: String| PluginError::Unsupported {
        resource: describe_mark(m, fd),
        pid: fd.pid,
        hint,
    };
    let mut e = FanotifyMarkEntry {
        id,
        r#type: MarkType::Inode as i32,
        mflags: m.mflags,
        mask: m.mask,
        ignored_mask: m.ignored_mask,
        s_dev: m.sdev,
        ..Default::default()
    };
    match &m.target {
        MarkTarget::Inode { ino, handle } => {
            let handle = handle.as_ref().ok_or_else(|| {
                refuse(
                    "its filesystem gives no file handle, so the marked file cannot be found again"
                        .into(),
                )
            })?;
            let mut file_id = None;
            let path = match find_path(mounts, m.sdev, *ino, handle) {
                Ok(Found::Path(p)) => Some(p),
                Ok(Found::HandleOnly) => {
                    file_id = open_in_tree(ctx, fd.pid, m.sdev, *ino);
                    tracing::warn!(
                        pid = fd.pid,
                        fd = fd.fd,
                        ino = format_args!("{ino:#x}"),
                        ?file_id,
                        "the marked file has no path: restore marks the tree's file of that id, else reopens the file handle"
                    );
                    None
                }
                Err(why) => return Err(refuse(format!("its file handle does not open ({why})"))),
            };
            e.ie = Some(FanotifyInodeMarkEntry {
                i_ino: *ino,
                f_handle: to_fh_entry(Some(handle), path),
                criu_rs_file_id: file_id,
            });
        }
        MarkTarget::Mount { mnt_id } => {
            let mnt = mounts.iter().find(|x| x.mnt_id == *mnt_id).ok_or_else(|| {
                refuse("the task does not see that mount (another mount namespace?)".into())
            })?;
            e.r#type = MarkType::Mount as i32;
            e.s_dev = mnt.sdev;
            e.me = Some(mount_entry(mnt));
        }
        MarkTarget::Filesystem => {
            let mnt = mounts
                .iter()
                .find(|x| x.sdev == m.sdev)
                .ok_or_else(|| refuse("the task sees no mount of that filesystem".into()))?;
            e.r#type = MarkType::Mount as i32;
            e.me = Some(mount_entry(mnt));
            e.criu_rs_filesystem = Some(true);
        }
    }
    Ok(e)
}

fn mount_entry(m: &Mount) -> FanotifyMountMarkEntry {
    FanotifyMountMarkEntry {
        mnt_id: m.mnt_id,
        path: Some(m.mountpoint.to_string_lossy().into_owned()),
    }
}

impl FdHandler for FanotifyHandler {
    fn fd_types(&self) -> &[FdTypes] {
        &[FdTypes::Fanotify]
    }

    fn claims(&self, fd: &FdDesc) -> bool {
        fd.link == FANOTIFY_LINK
    }

    fn dump_file(
        &self,
        ctx: &mut dyn DumpContext,
        fd: &FdDesc,
        id: u32,
    ) -> Result<FileEntry, PluginError> {
        let refuse = |hint: String| PluginError::Unsupported {
            resource: fd.describe(),
            pid: fd.pid,
            hint,
        };
        let info = parse_fanotify(&fd.fdinfo.raw)
            .map_err(|why| refuse(format!("unexpected fanotify fdinfo ({why})")))?;
        warn_queued(fd, "fanotify");
        let mounts = read_mountinfo(Some(fd.pid))
            .map_err(|why| refuse(format!("cannot read the task's mounts: {why}")))?;
        let mark = info
            .marks
            .iter()
            .map(|m| dump_mark(ctx, m, id, fd, &mounts))
            .collect::<Result<Vec<_>, _>>()?;
        tracing::debug!(
            pid = fd.pid,
            fd = fd.fd,
            id,
            marks = mark.len(),
            "dumping fanotify"
        );
        Ok(FileEntry {
            r#type: FdTypes::Fanotify as i32,
            id,
            ffy: Some(FanotifyFileEntry {
                id,
                flags: fd.fdinfo.file_flags(),
                fown: fd.owner.to_entry(),
                faflags: info.flags,
                evflags: info.event_flags,
                mark,
            }),
            ..Default::default()
        })
    }

    fn start_restore(
        &self,
        ctx: &mut dyn RestoreContext,
        entries: &[FileEntry],
    ) -> Result<Box<dyn FileRestorer>, PluginError> {
        crate::fanotify_restore::start(ctx, entries)
    }
}
