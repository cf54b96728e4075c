//! Restoring a fanotify group: `fanotify_init` with the dumped flags (then `O_NONBLOCK` as
//! the file had it), the marks on their paths or handles, the marks on unlinked files of
//! the tree and the emptying of the queue in [`FileRestorer::finish`].

use std::os::fd::{AsRawFd, OwnedFd};

use criu_plugin_api::{FileRestorer, PluginError, RestoreContext};
use criu_proto::images::{FanotifyFileEntry, FanotifyMarkEntry, FileEntry, MarkType};
use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, FcntlArg, OFlag, fcntl, open};
use nix::sys::fanotify::{EventFFlags, Fanotify, InitFlags, MarkFlags, MaskFlags};
use nix::sys::stat::Mode;

use crate::FANOTIFY_LINK;
use crate::deferred::{Ghosts, drain_group, restored_file};
use crate::handle::{from_fh_entry, kdev_name, open_target};

/// The restorer of one restore: CRIU's ghost files are read when a mark needs them.
pub(crate) fn start(
    ctx: &mut dyn RestoreContext,
    entries: &[FileEntry],
) -> Result<Box<dyn FileRestorer>, PluginError> {
    let pathless = entries
        .iter()
        .filter_map(|e| e.ffy.as_ref())
        .flat_map(|f| f.mark.iter().filter_map(|m| m.ie.as_ref()))
        .any(|ie| ie.f_handle.path.is_none() && ie.criu_rs_file_id.is_none());
    Ok(Box::new(Restorer {
        later: Vec::new(),
        ghosts: if pathless {
            Ghosts::read(ctx)?
        } else {
            Ghosts::default()
        },
    }))
}

/// One restored group, for [`FileRestorer::finish`]: the marks left for then (on files of
/// the tree that had no path at dump), and its queue to empty.
struct Later {
    id: u32,
    group: Fanotify,
    marks: Vec<(usize, FanotifyMarkEntry)>,
    /// A notification group (no permission events, which would need an answer).
    notif: bool,
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
        let ffy = entry.ffy.as_ref().ok_or_else(|| {
            PluginError::bad_image(
                "files.img",
                format!("FANOTIFY entry {} without ffy", entry.id),
            )
        })?;
        let mut ffy = ffy.clone();
        for m in ffy.mark.iter_mut() {
            let sdev = m.s_dev;
            if let Some(ie) = m.ie.as_mut()
                && ie.f_handle.path.is_none()
                && ie.criu_rs_file_id.is_none()
            {
                ie.criu_rs_file_id = self.ghosts.find(sdev, ie.i_ino);
            }
        }
        let ffy = &ffy;
        let (fd, marks) = restore_fanotify(entry.id, ffy)?;
        {
            let dup = fd.try_clone().map_err(|e| PluginError::Restore {
                id: entry.id,
                what: FANOTIFY_LINK.into(),
                op: "dup",
                source: e,
            })?;
            self.later.push(Later {
                id: entry.id,
                group: crate::sys::fanotify_of(dup),
                marks,
                notif: ffy.faflags & (libc::FAN_CLASS_CONTENT | libc::FAN_CLASS_PRE_CONTENT) == 0,
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
            for (_, m) in &l.marks {
                // Only inode marks are deferred; anything else here is a bug of ours, said
                // as an error rather than a panic in the middle of a restore.
                let Some(ie) = m.ie.as_ref() else {
                    return Err(PluginError::bad_image(
                        "files.img",
                        "fanotify: a mark deferred to the end of the restore is not an inode mark",
                    ));
                };
                let file = ie.criu_rs_file_id.unwrap_or_default();
                let target = restored_file(ctx, file)?;
                let what = format!(
                    "fanotify mark on the tree's file id {file} (inode {:#x} on device {} at dump, unlinked)",
                    ie.i_ino,
                    kdev_name(m.s_dev)
                );
                apply_mark(&l.group, l.id, m, &target, libc::FAN_MARK_INODE, &what)?;
            }
            if l.notif {
                drain_group(l.id, &l.group)?;
            }
        }
        Ok(())
    }
}

/// An inode mark on an unlinked file the tree holds: for [`FileRestorer::finish`].
fn is_later(m: &FanotifyMarkEntry) -> bool {
    m.ie.as_ref()
        .is_some_and(|ie| ie.f_handle.path.is_none() && ie.criu_rs_file_id.is_some())
}

/// Creates the fanotify group of entry `id` with its marks; returns it and the marks on
/// unlinked files of the tree (with their index), to be added once the tree has its files.
pub fn restore_fanotify(
    id: u32,
    ffy: &FanotifyFileEntry,
) -> Result<(OwnedFd, Vec<(usize, FanotifyMarkEntry)>), PluginError> {
    let fail = |op: &'static str, e: Errno| PluginError::Restore {
        id,
        what: FANOTIFY_LINK.into(),
        op,
        source: e.into(),
    };
    // The init flags as dumped (fdinfo shows them, FAN_CLOEXEC and FAN_NONBLOCK included);
    // the file's O_NONBLOCK may have changed since with F_SETFL: set it as it was.
    let group = Fanotify::init(
        InitFlags::from_bits_retain(ffy.faflags),
        EventFFlags::from_bits_retain(ffy.evflags),
    )
    .map_err(|e| fail("fanotify_init", e))?;
    let nonblock = OFlag::from_bits_retain(ffy.flags as i32) & OFlag::O_NONBLOCK;
    let now = OFlag::from_bits_retain(
        fcntl(&group, FcntlArg::F_GETFL).map_err(|e| fail("fcntl(F_GETFL)", e))?,
    );
    if now & OFlag::O_NONBLOCK != nonblock {
        fcntl(
            &group,
            FcntlArg::F_SETFL((now - OFlag::O_NONBLOCK) | nonblock),
        )
        .map_err(|e| fail("fcntl(F_SETFL)", e))?;
    }
    let mut later = Vec::new();
    for (i, m) in ffy.mark.iter().enumerate() {
        if is_later(m) {
            later.push((i, m.clone()));
        } else {
            let (target, kind, what) = open_mark_target(id, i, m)?;
            apply_mark(&group, id, m, &target, kind, &what)?;
        }
    }
    Ok((group.into(), later))
}

/// What a mark is put on: target fd, `FAN_MARK_*` kind flag, description.
fn open_mark_target(
    id: u32,
    i: usize,
    m: &FanotifyMarkEntry,
) -> Result<(OwnedFd, u32, String), PluginError> {
    let bad = |why: &str| {
        PluginError::bad_image("files.img", format!("FANOTIFY entry {id}, mark {i}: {why}"))
    };
    let restore_err = |what: String, (step, e): (String, Errno)| PluginError::Restore {
        id,
        what: format!("{what}: {step}"),
        op: "open",
        source: e.into(),
    };
    match MarkType::try_from(m.r#type) {
        Ok(MarkType::Inode) => {
            let ie =
                m.ie.as_ref()
                    .ok_or_else(|| bad("inode mark without its inode (ie)"))?;
            let handle = from_fh_entry(&ie.f_handle).map_err(|why| bad(&why))?;
            let path = ie.f_handle.path.as_deref();
            if handle.is_none() && path.is_none() {
                return Err(bad("neither a file handle nor a path"));
            }
            let what = format!(
                "fanotify mark on {} (inode {:#x} on device {})",
                path.unwrap_or("its file handle"),
                ie.i_ino,
                kdev_name(m.s_dev)
            );
            let fd = open_target(path, handle.as_ref(), m.s_dev, ie.i_ino)
                .map_err(|e| restore_err(what.clone(), e))?;
            Ok((fd, libc::FAN_MARK_INODE, what))
        }
        Ok(MarkType::Mount) => {
            let me =
                m.me.as_ref()
                    .ok_or_else(|| bad("mount mark without its mount (me)"))?;
            let path = me
                .path
                .as_deref()
                .ok_or_else(|| bad("mount mark without a path"))?;
            let (kind, name) = if m.criu_rs_filesystem == Some(true) {
                (libc::FAN_MARK_FILESYSTEM, "filesystem")
            } else {
                (libc::FAN_MARK_MOUNT, "mount")
            };
            let what = format!("fanotify {name} mark on {path} (mount {})", me.mnt_id);
            let fd = open(path, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
                .map_err(|e| restore_err(what.clone(), (format!("open {path}"), e)))?;
            Ok((fd, kind, what))
        }
        Err(_) => Err(bad(&format!("unknown mark type {}", m.r#type))),
    }
}

/// Puts mark `m` (of entry `id`) on `target` (`kind`: `FAN_MARK_INODE`, `_MOUNT`, ...).
fn apply_mark(
    group: &Fanotify,
    id: u32,
    m: &FanotifyMarkEntry,
    target: &OwnedFd,
    kind: u32,
    what: &str,
) -> Result<(), PluginError> {
    let path = format!("/proc/self/fd/{}", target.as_raw_fd());
    let fail = |op: &'static str, e: Errno| PluginError::Restore {
        id,
        what: format!(
            "{what}, mark flags {:#x}, mask {:#x}, ignored mask {:#x}",
            m.mflags, m.mask, m.ignored_mask
        ),
        op,
        source: e.into(),
    };
    let base = libc::FAN_MARK_ADD | kind;
    let add = |flags: u32, mask: u32| {
        group.mark(
            MarkFlags::from_bits_retain(flags),
            MaskFlags::from_bits_retain(u64::from(mask)),
            AT_FDCWD,
            Some(path.as_str()),
        )
    };
    if m.ignored_mask != 0 {
        // FAN_MARK_IGNORE (6.0+) marks store their ignore flags; older ones need IGNORED_MASK.
        let how = if m.mflags & libc::FAN_MARK_IGNORE != 0 {
            0
        } else {
            libc::FAN_MARK_IGNORED_MASK
        };
        add(base | m.mflags | how, m.ignored_mask)
            .map_err(|e| fail("fanotify_mark (ignored mask)", e))?;
    }
    if m.mask != 0 {
        add(base | (m.mflags & !libc::FAN_MARK_IGNORE), m.mask)
            .map_err(|e| fail("fanotify_mark", e))?;
    }
    Ok(())
}
