//! Watches and marks on a file that was unlinked but is still open in the tree (CRIU's
//! inotify00): its handle will not open at restore (the inode dies with the killed tree), so
//! at dump the `files.img` id of a tree fd open on that inode is recorded in our field
//! `criu_rs_file_id`, and at restore the watch goes on that file as restored (the files
//! plugin recreates it as a ghost), once every task has its fds ([`FileRestorer::finish`]),
//! as CRIU puts such watches on its ghost remap.
//!
//! [`FileRestorer::finish`] also empties the queue of every restored instance: what
//! restoring the tree did to watched files (a ghost file created and unlinked, files
//! reopened) queued events the program never caused, and the dump kept no events.
//!
//! [`FileRestorer::finish`]: criu_plugin_api::FileRestorer::finish

use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

use criu_plugin_api::{DumpContext, PluginError, RestoreContext};

use crate::handle::kdev_of;

/// The `files.img` id of an fd of the tree open on inode `ino` of device `sdev` (kernel
/// encoding): the fds of `pid` first, then of the other tasks whose fds have ids already.
pub fn open_in_tree(ctx: &dyn DumpContext, pid: i32, sdev: u32, ino: u64) -> Option<u32> {
    let mut pids = vec![pid];
    pids.extend(ctx.tasks().iter().map(|t| t.pid).filter(|&p| p != pid));
    pids.into_iter().find_map(|p| {
        let dir = std::fs::read_dir(format!("/proc/{p}/fd")).ok()?;
        dir.filter_map(Result::ok).find_map(|e| {
            let fd: i32 = e.file_name().to_str()?.parse().ok()?;
            let st = std::fs::metadata(e.path()).ok()?;
            (st.ino() == ino && kdev_of(st.dev()) == sdev)
                .then(|| ctx.file_id_of(p, fd))
                .flatten()
        })
    })
}

/// A duplicate of a restored task's fd whose description has `files.img` id `id`.
pub fn restored_file(ctx: &mut dyn RestoreContext, id: u32) -> Result<OwnedFd, PluginError> {
    for t in ctx.tasks() {
        if let Some(fd) = ctx.task_fds(t.pid)?.iter().find(|f| f.id == id) {
            return ctx.dup_task_fd(t.pid, fd.fd);
        }
    }
    Err(PluginError::bad_image(
        "files.img",
        format!("no task of the tree has file id {id}, the file a watch is on"),
    ))
}

/// Reads away the events queued on inotify fd `fd` of entry `id` (`FIONREAD` says how many
/// bytes; a read of that many never blocks).
pub fn drain(id: u32, fd: BorrowedFd<'_>) -> Result<(), PluginError> {
    let fail = |op: &'static str, e: nix::errno::Errno| PluginError::Restore {
        id,
        what: crate::INOTIFY_LINK.into(),
        op,
        source: e.into(),
    };
    loop {
        let n = crate::sys::queued_bytes(fd).map_err(|e| fail("ioctl(FIONREAD)", e))?;
        if n == 0 {
            return Ok(());
        }
        let mut buf = vec![0u8; n as usize];
        let got = nix::unistd::read(fd, &mut buf).map_err(|e| fail("read", e))?;
        tracing::debug!(id, bytes = got, "dropped inotify events the restore caused");
    }
}

/// [`drain`] for a fanotify group (the event fds it hands out are closed). Only
/// notification groups: a permission event would need an answer for the task that waits.
pub fn drain_group(id: u32, group: &nix::sys::fanotify::Fanotify) -> Result<(), PluginError> {
    use std::os::fd::AsFd;
    loop {
        let n = crate::sys::queued_bytes(group.as_fd()).unwrap_or(0);
        if n == 0 {
            return Ok(());
        }
        let events = group.read_events().map_err(|e| PluginError::Restore {
            id,
            what: crate::FANOTIFY_LINK.into(),
            op: "read",
            source: e.into(),
        })?;
        tracing::debug!(
            id,
            events = events.len(),
            "dropped fanotify events the restore caused"
        );
        if events.is_empty() {
            return Ok(());
        }
    }
}

/// The ghost files of the images (`remap-fpath.img` GHOST entries with their
/// `ghost-file-N.img`): for images without our `criu_rs_file_id` (CRIU's), a watch on an
/// unlinked file goes on the ghost file of the same device and inode, as CRIU's
/// `lookup_ghost_remap` does.
#[derive(Debug, Default)]
pub struct Ghosts(Vec<Ghost>);

#[derive(Debug)]
struct Ghost {
    file_id: u32,
    dev: u32,
    ino: u64,
}

impl Ghosts {
    /// Reads them (an images directory without `remap-fpath.img` has none).
    pub fn read(ctx: &mut dyn RestoreContext) -> Result<Ghosts, PluginError> {
        use criu_plugin_api::{ImageCursor, ImageRef, read_messages};
        use criu_proto::images::{GhostFileEntry, RemapFilePathEntry, RemapType};
        let mut out = Vec::new();
        for r in read_messages::<RemapFilePathEntry>(ctx, ImageRef::REMAP_FPATH)? {
            if r.remap_type != Some(RemapType::Ghost as i32) {
                continue;
            }
            let image = ImageRef::ghost_file(r.remap_id);
            let Some(body) = ctx.read_image(image)? else {
                continue; // the files plugin names a missing ghost image when it needs it
            };
            let e: Option<GhostFileEntry> = ImageCursor::new(image, &body).next_entry()?;
            if let Some(GhostFileEntry {
                dev: Some(dev),
                ino: Some(ino),
                ..
            }) = e
            {
                out.push(Ghost {
                    file_id: r.orig_id,
                    dev,
                    ino,
                });
            }
        }
        Ok(Ghosts(out))
    }

    /// The `files.img` id of the ghost file of inode `ino` on `sdev` (kernel encoding; a
    /// ghost's device may be in either encoding: CRIU writes the kernel's, criu-rs `st_dev`).
    pub fn find(&self, sdev: u32, ino: u64) -> Option<u32> {
        self.0
            .iter()
            .find(|g| g.ino == ino && (g.dev == sdev || kdev_of(u64::from(g.dev)) == sdev))
            .map(|g| g.file_id)
    }
}
