//! The inotify plugin: CRIU's INOTIFY entry (`file_entry.ify`), one `inotify_wd_entry` per
//! watch with its wd, inode, device, mask and `fh_entry` (handle, and the path found for it).
//!
//! Restore: `inotify_init1`, then every watch in ascending wd order, added on its path (or
//! its handle when the path was gone at dump) through `/proc/self/fd/N` of an `O_PATH` fd,
//! with the mask the kernel kept (`IN_*` events, `IN_ONESHOT`, `IN_EXCL_UNLINK`). The wd is
//! chosen with `INOTIFY_IOC_SETNEXTWD` where the kernel has it; elsewhere watches are added
//! and removed until the kernel hands out the wanted number, as CRIU does. Every wd is
//! checked.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use criu_plugin_api::{DumpContext, FdDesc, FdHandler, FileRestorer, PluginError, RestoreContext};
use criu_proto::images::{FdTypes, FileEntry, InotifyFileEntry, InotifyWdEntry};
use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use crate::deferred::{Ghosts, drain, open_in_tree, restored_file};
use crate::fdinfo::{InotifyWatch, parse_inotify};
use crate::handle::{
    Found, find_path, from_fh_entry, kdev_name, open_target, read_mountinfo, to_fh_entry,
};
use crate::{INOTIFY_LINK, warn_queued};

/// The mask bits a watch keeps and `inotify_add_watch` takes back: the events,
/// `IN_ONESHOT` and `IN_EXCL_UNLINK`. (Older kernels also showed the internal
/// `FS_EVENT_ON_CHILD`, dropped here as CRIU does.)
pub const KEPT_MASK: u32 = libc::IN_ALL_EVENTS | libc::IN_ONESHOT | libc::IN_EXCL_UNLINK;

/// The inotify fd handler (stateless).
#[derive(Debug, Default)]
pub struct InotifyHandler;

fn describe_watch(w: &InotifyWatch, fd: &FdDesc) -> String {
    format!(
        "inotify watch wd {} (inode {:#x} on device {}) of {}",
        w.wd,
        w.ino,
        kdev_name(w.sdev),
        fd.describe()
    )
}

/// The `inotify_wd_entry` of one watch, its path found through its handle.
fn dump_watch(
    ctx: &dyn DumpContext,
    w: &InotifyWatch,
    id: u32,
    fd: &FdDesc,
    mounts: &[crate::handle::Mount],
) -> Result<InotifyWdEntry, PluginError> {
    let refuse = |hint: String| PluginError::Unsupported {
        resource: describe_watch(w, fd),
        pid: fd.pid,
        hint,
    };
    let handle = w.handle.as_ref().ok_or_else(|| {
        refuse("its filesystem gives no file handle, so the watched file cannot be found again; remove the watch before the dump".into())
    })?;
    let mut file_id = None;
    let path = match find_path(mounts, w.sdev, w.ino, handle) {
        Ok(Found::Path(p)) => Some(p),
        Ok(Found::HandleOnly) => {
            file_id = open_in_tree(ctx, fd.pid, w.sdev, w.ino);
            tracing::warn!(
                pid = fd.pid,
                fd = fd.fd,
                wd = w.wd,
                ino = format_args!("{:#x}", w.ino),
                ?file_id,
                "the watched file has no path (unlinked or replaced): restore puts the watch on the tree's file of that id, else reopens the file handle (which works only while the inode exists)"
            );
            None
        }
        Err(why) => {
            return Err(refuse(format!(
                "its file handle does not open ({why}); the watched file may be in another mount namespace"
            )));
        }
    };
    Ok(InotifyWdEntry {
        id,
        i_ino: w.ino,
        mask: w.mask,
        ignored_mask: w.ignored_mask,
        s_dev: w.sdev,
        wd: w.wd as u32,
        f_handle: to_fh_entry(Some(handle), path),
        criu_rs_file_id: file_id,
    })
}

impl FdHandler for InotifyHandler {
    fn fd_types(&self) -> &[FdTypes] {
        &[FdTypes::Inotify]
    }

    fn claims(&self, fd: &FdDesc) -> bool {
        fd.link == INOTIFY_LINK
    }

    fn dump_file(
        &self,
        ctx: &mut dyn DumpContext,
        fd: &FdDesc,
        id: u32,
    ) -> Result<FileEntry, PluginError> {
        let watches = parse_inotify(&fd.fdinfo.raw).map_err(|why| PluginError::Unsupported {
            resource: fd.describe(),
            pid: fd.pid,
            hint: format!("unexpected inotify fdinfo ({why})"),
        })?;
        warn_queued(fd, "inotify");
        let mounts = read_mountinfo(Some(fd.pid)).map_err(|why| PluginError::Unsupported {
            resource: fd.describe(),
            pid: fd.pid,
            hint: format!("cannot read the task's mounts: {why}"),
        })?;
        let wd = watches
            .iter()
            .map(|w| dump_watch(ctx, w, id, fd, &mounts))
            .collect::<Result<Vec<_>, _>>()?;
        tracing::debug!(
            pid = fd.pid,
            fd = fd.fd,
            id,
            watches = wd.len(),
            "dumping inotify"
        );
        Ok(FileEntry {
            r#type: FdTypes::Inotify as i32,
            id,
            ify: Some(InotifyFileEntry {
                id,
                flags: fd.fdinfo.file_flags(),
                fown: fd.owner.to_entry(),
                wd,
            }),
            ..Default::default()
        })
    }

    fn start_restore(
        &self,
        ctx: &mut dyn RestoreContext,
        entries: &[FileEntry],
    ) -> Result<Box<dyn FileRestorer>, PluginError> {
        let pathless = entries.iter().filter_map(|e| e.ify.as_ref()).any(|i| {
            i.wd.iter()
                .any(|w| w.f_handle.path.is_none() && w.criu_rs_file_id.is_none())
        });
        Ok(Box::new(Restorer {
            later: Vec::new(),
            ghosts: if pathless {
                Ghosts::read(ctx)?
            } else {
                Ghosts::default()
            },
        }))
    }
}

/// One restored inotify, for [`FileRestorer::finish`]: the watches left for then (on files
/// of the tree that had no path at dump), and its queue to empty.
struct Later {
    id: u32,
    ino: Inotify,
    watches: Vec<InotifyWdEntry>,
    next_wd: i32,
}

struct Restorer {
    later: Vec<Later>,
    ghosts: Ghosts,
}

impl FileRestorer for Restorer {
    fn open_file(
        &mut self,
        _ctx: &mut dyn RestoreContext,
        entry: &FileEntry,
    ) -> Result<OwnedFd, PluginError> {
        let ify = entry.ify.as_ref().ok_or_else(|| {
            PluginError::bad_image(
                "files.img",
                format!("INOTIFY entry {} without ify", entry.id),
            )
        })?;
        let mut ify = ify.clone();
        for w in ify.wd.iter_mut() {
            if w.f_handle.path.is_none() && w.criu_rs_file_id.is_none() {
                w.criu_rs_file_id = self.ghosts.find(w.s_dev, w.i_ino);
            }
        }
        let ify = &ify;
        let (fd, watches) = restore_inotify(entry.id, ify)?;
        {
            let dup = fd.try_clone().map_err(|e| PluginError::Restore {
                id: entry.id,
                what: INOTIFY_LINK.into(),
                op: "dup",
                source: e,
            })?;
            self.later.push(Later {
                id: entry.id,
                ino: crate::sys::inotify_of(dup),
                next_wd: ify.wd.iter().map(|w| w.wd as i32).max().unwrap_or(0) + 1,
                watches,
            });
        }
        Ok(fd)
    }

    fn finish(
        &mut self,
        ctx: &mut dyn RestoreContext,
        _installed: &[criu_plugin_api::InstalledFd],
    ) -> Result<(), PluginError> {
        for l in self.later.drain(..) {
            for w in &l.watches {
                let file = w.criu_rs_file_id.unwrap_or_default();
                let target = restored_file(ctx, file)?;
                add_watch_as(&l.ino, &target, w, true).map_err(|(op, e)| PluginError::Restore {
                    id: l.id,
                    what: format!(
                        "inotify wd {} on the tree's file id {file} (inode {:#x} on device {} at dump, unlinked)",
                        w.wd,
                        w.i_ino,
                        kdev_name(w.s_dev)
                    ),
                    op,
                    source: e.into(),
                })?;
            }
            // Later adds continue after the highest wd, as they would have.
            let _ = crate::sys::inotify_set_next_wd(l.ino.as_fd(), l.next_wd);
            drain(l.id, l.ino.as_fd())?;
        }
        Ok(())
    }
}

/// Creates the inotify instance of entry `id` with its watches, wds checked; returns it and
/// the watches on unlinked files of the tree, to be added once the tree has its files.
pub fn restore_inotify(
    id: u32,
    ify: &InotifyFileEntry,
) -> Result<(OwnedFd, Vec<InotifyWdEntry>), PluginError> {
    let (later, mut watches): (Vec<&InotifyWdEntry>, Vec<&InotifyWdEntry>) = ify
        .wd
        .iter()
        .partition(|w| w.f_handle.path.is_none() && w.criu_rs_file_id.is_some());
    // Ascending wds: each add may only take the number asked for or a higher one.
    watches.sort_by_key(|w| w.wd);
    let targets = watches
        .iter()
        .map(|w| check_wd_entry(id, w))
        .collect::<Result<Vec<_>, _>>()?;
    let mut flags = InitFlags::IN_CLOEXEC;
    if ify.flags & libc::O_NONBLOCK as u32 != 0 {
        flags |= InitFlags::IN_NONBLOCK;
    }
    let fail = |what: String, op: &'static str, e: Errno| PluginError::Restore {
        id,
        what,
        op,
        source: e.into(),
    };
    let ino = Inotify::init(flags).map_err(|e| fail(INOTIFY_LINK.into(), "inotify_init1", e))?;
    for (w, (path, handle)) in watches.iter().zip(&targets) {
        let what = format!(
            "inotify wd {} on {} (inode {:#x} on device {})",
            w.wd,
            path.as_deref().unwrap_or("its file handle"),
            w.i_ino,
            kdev_name(w.s_dev)
        );
        let target = open_target(path.as_deref(), handle.as_ref(), w.s_dev, w.i_ino).map_err(
            |(step, e)| PluginError::Restore {
                id,
                what: format!("{what}: {step}"),
                op: "open",
                source: e.into(),
            },
        )?;
        add_watch_as(&ino, &target, w, true).map_err(|(op, e)| fail(what.clone(), op, e))?;
    }
    for w in &later {
        check_wd_entry(id, w)?;
    }
    Ok((ino.into(), later.into_iter().cloned().collect()))
}

type Target = (Option<String>, Option<crate::sys::FileHandle>);

/// A watch needs a path or a handle; a bad handle is a bad image.
fn check_wd_entry(id: u32, w: &InotifyWdEntry) -> Result<Target, PluginError> {
    let bad = |why: String| {
        PluginError::bad_image(
            "files.img",
            format!("INOTIFY entry {id}, watch wd {}: {why}", w.wd),
        )
    };
    if w.wd == 0 || w.wd > i32::MAX as u32 {
        return Err(bad("watch descriptor out of range".into()));
    }
    let handle = from_fh_entry(&w.f_handle).map_err(bad)?;
    if handle.is_none() && w.f_handle.path.is_none() && w.criu_rs_file_id.is_none() {
        return Err(bad("neither a file handle nor a path".into()));
    }
    Ok((w.f_handle.path.clone(), handle))
}

/// Adds watch `w` on `target` so that it gets exactly `w.wd`.
/// `use_setnextwd: false` takes the kernels' way without the ioctl (tests).
pub(crate) fn add_watch_as(
    ino: &Inotify,
    target: &OwnedFd,
    w: &InotifyWdEntry,
    use_setnextwd: bool,
) -> Result<(), (&'static str, Errno)> {
    let path = format!("/proc/self/fd/{}", target.as_raw_fd());
    let mask = AddWatchFlags::from_bits_retain(w.mask & KEPT_MASK);
    let want = w.wd as i32;
    let setnext = use_setnextwd && crate::sys::inotify_set_next_wd(ino.as_fd(), want).is_ok();
    loop {
        let wd = ino
            .add_watch(path.as_str(), mask)
            .map_err(|e| ("inotify_add_watch", e))?;
        let got = wd.as_raw();
        if got == want {
            return Ok(());
        }
        // Lower numbers are free ones below ours (without SETNEXTWD the kernel hands them
        // out cyclically from its cursor): take them away and ask again. A higher one or
        // a repeat means the wanted number cannot be had.
        if got > want || setnext {
            return Err((
                "inotify_add_watch (got wd another than dumped)",
                Errno::EEXIST,
            ));
        }
        ino.rm_watch(wd).map_err(|e| ("inotify_rm_watch", e))?;
    }
}
