//! Restoring a file description reached by a path.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use criu_plugin_api::{FileRestorer, ImageRef, PluginError, RestoreContext, read_messages};
use criu_proto::images::{FdTypes, FileEntry, RegFileEntry, RemapFilePathEntry, RemapType};
use nix::fcntl::{OFlag, open};
use nix::sys::stat::{Mode, fstat};
use nix::unistd::{Whence, lseek};

use crate::flags::{apply_async, reopen_flags};
use crate::{NAME, ghost_restore};

/// One restore's regular files: `remap-fpath.img` by original file id, and the paths of
/// the REG entries (a link remap's target is one). Ghosts recreated so far are kept in the
/// context.
#[derive(Debug)]
pub(crate) struct FilesRestorer {
    remaps: HashMap<u32, RemapFilePathEntry>,
    names: HashMap<u32, String>,
}

impl FilesRestorer {
    pub(crate) fn start(
        ctx: &mut dyn RestoreContext,
        entries: &[FileEntry],
    ) -> Result<Self, PluginError> {
        let mut remaps = HashMap::new();
        for r in read_messages::<RemapFilePathEntry>(ctx, ImageRef::REMAP_FPATH)? {
            remaps.insert(r.orig_id, r);
        }
        let names = entries
            .iter()
            .filter_map(|e| Some((e.id, e.reg.as_ref()?.name.clone())))
            .collect();
        Ok(FilesRestorer { remaps, names })
    }

    /// The description `reg` reopened through its link remap `link_id`, whose name goes
    /// before the tree resumes.
    fn open_linked(
        &self,
        ctx: &mut dyn RestoreContext,
        id: u32,
        reg: &RegFileEntry,
        link_id: u32,
    ) -> Result<OwnedFd, PluginError> {
        let link = self.names.get(&link_id).ok_or_else(|| {
            PluginError::bad_image(
                ImageRef::REMAP_FPATH.to_string(),
                format!("link remap of file id {id} names file id {link_id}, not in files.img"),
            )
        })?;
        let via_link = RegFileEntry {
            name: link.clone(),
            ..reg.clone()
        };
        let fd = open_path(ctx, id, &via_link)?;
        crate::link_remap::note_restored(ctx, link)?;
        Ok(fd)
    }
}

impl FileRestorer for FilesRestorer {
    fn open_file(
        &mut self,
        ctx: &mut dyn RestoreContext,
        entry: &FileEntry,
    ) -> Result<OwnedFd, PluginError> {
        if entry.r#type == FdTypes::Ns as i32 {
            return crate::nsfile::open_file(ctx, entry);
        }
        let reg = entry.reg.as_ref().ok_or_else(|| {
            PluginError::bad_image("files.img", format!("REG entry {} without reg", entry.id))
        })?;
        if reg.ext == Some(true) {
            return Err(PluginError::Unsupported {
                resource: format!("external file {} (file id {})", reg.name, entry.id),
                pid: ctx.current_pid(),
                hint: "external files (--external) are not supported yet".into(),
            });
        }
        let remap = self.remaps.get(&entry.id).cloned();
        if remap.is_none() && crate::proc_files::of_the_tree(ctx, &reg.name) {
            return crate::proc_files::defer(ctx, entry.id, reg);
        }
        let fd = match remap {
            None => open_path(ctx, entry.id, reg)?,
            Some(r) if r.remap_type == Some(RemapType::Ghost as i32) => {
                open_ghost(ctx, reg, r.remap_id)?
            }
            Some(r) if r.remap_type == Some(RemapType::Linked as i32) => {
                self.open_linked(ctx, entry.id, reg, r.remap_id)?
            }
            Some(r) => {
                return Err(PluginError::Unsupported {
                    resource: format!(
                        "{} (file id {}, remap type {:?})",
                        reg.name, entry.id, r.remap_type
                    ),
                    pid: ctx.current_pid(),
                    hint: "only ghost and link remaps are supported (no dead-process remaps)"
                        .into(),
                });
            }
        };
        seek(&fd, reg)?;
        apply_async(fd.as_fd(), reg.flags)
            .map_err(|e| PluginError::path(&reg.name, "fcntl(F_SETFL, O_ASYNC)", e))?;
        Ok(fd)
    }
}

/// [`open_path`], then the offset and `O_ASYNC` as [`FilesRestorer`] sets them.
pub(crate) fn open_reg(
    ctx: &mut dyn RestoreContext,
    id: u32,
    reg: &RegFileEntry,
) -> Result<OwnedFd, PluginError> {
    let fd = open_path(ctx, id, reg)?;
    seek(&fd, reg)?;
    apply_async(fd.as_fd(), reg.flags)
        .map_err(|e| PluginError::path(&reg.name, "fcntl(F_SETFL, O_ASYNC)", e))?;
    Ok(fd)
}

/// Opens the dumped path with the dumped flags and checks it is still the dumped file.
fn open_path(
    ctx: &mut dyn RestoreContext,
    id: u32,
    reg: &RegFileEntry,
) -> Result<OwnedFd, PluginError> {
    let fd = open(reg.name.as_str(), reopen_flags(reg.flags), Mode::empty())
        .map_err(|e| PluginError::path(&reg.name, "open", e))?;
    if !ctx.options().skip_file_checks {
        check_same(&fd, reg)?;
    }
    tracing::debug!(id, path = reg.name, flags = reg.flags, "file reopened");
    Ok(fd)
}

/// CRIU's checks: same mode (type and permissions), same size for regular files it sized.
fn check_same(fd: &OwnedFd, reg: &RegFileEntry) -> Result<(), PluginError> {
    let st = fstat(fd.as_fd()).map_err(|e| PluginError::path(&reg.name, "fstat", e))?;
    let changed = |what: String| PluginError::FileChanged {
        path: reg.name.clone().into(),
        what,
    };
    if let Some(mode) = reg.mode
        && st.st_mode != mode
    {
        return Err(changed(format!("mode {:o}, dumped {:o}", st.st_mode, mode)));
    }
    if let Some(size) = reg.size
        && st.st_mode & libc::S_IFMT == libc::S_IFREG
        && st.st_size as u64 != size
    {
        return Err(changed(format!("size {}, dumped {size}", st.st_size)));
    }
    Ok(())
}

/// A new description of ghost `ghost_id`: the ghost is recreated the first time (kept in the
/// context), every description reopens it through `/proc/self/fd`.
fn open_ghost(
    ctx: &mut dyn RestoreContext,
    reg: &RegFileEntry,
    ghost_id: u32,
) -> Result<OwnedFd, PluginError> {
    let key = format!("{NAME}:ghost:{ghost_id}");
    if ctx.kept_fd(&key).is_none() {
        let fd = ghost_restore::restore(ctx, ghost_id, &reg.name)?;
        ctx.keep_fd(&key, fd)?;
    }
    let kept = ctx.kept_fd(&key).ok_or_else(|| {
        PluginError::bad_image(
            ImageRef::ghost_file(ghost_id).to_string(),
            "the restore context lost the ghost file",
        )
    })?;
    let path = format!("/proc/self/fd/{}", kept.as_raw_fd());
    let mut flags = reopen_flags(reg.flags);
    if reg.mode.is_some_and(|m| m & libc::S_IFMT == libc::S_IFLNK) {
        // The magic link leads to the symlink itself; O_NOFOLLOW would open the magic
        // link instead. (The new description lacks that flag, which only an O_PATH
        // description of a symlink has and nothing reads back but fdinfo.)
        flags.remove(OFlag::O_NOFOLLOW);
    }
    open(path.as_str(), flags, Mode::empty())
        .map_err(|e| PluginError::path(format!("ghost of {}", reg.name), "open", e))
}

/// Puts the offset back (directories included: their offset is a readdir cookie).
fn seek(fd: &OwnedFd, reg: &RegFileEntry) -> Result<(), PluginError> {
    if reg.pos == 0 {
        return Ok(());
    }
    let pos = i64::try_from(reg.pos).map_err(|_| {
        PluginError::bad_image(
            "files.img",
            format!("{}: offset {} out of range", reg.name, reg.pos),
        )
    })?;
    lseek(fd.as_fd(), pos, Whence::SeekSet)
        .map(drop)
        .map_err(|e| PluginError::path(&reg.name, "lseek", e))
}
