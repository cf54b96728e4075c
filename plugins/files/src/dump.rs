//! Dumping a file description reached by a path.

use std::collections::HashMap;

use criu_plugin_api::{DumpContext, FdDesc, ImageRef, PluginError, write_message};
use criu_proto::images::{FdTypes, FileEntry, RegFileEntry, RemapFilePathEntry, RemapType};

use crate::flags::{is_tty_major, should_check_size};
use crate::ghost;

/// What one dump remembers across fds and tasks.
#[derive(Debug, Default)]
pub(crate) struct DumpState {
    /// Ghost ids by unlinked file (dev, inode): several descriptions may share one file.
    ghosts: HashMap<(u64, u64), u32>,
}

fn unsupported(fd: &FdDesc, hint: &str) -> PluginError {
    PluginError::Unsupported {
        resource: fd.describe(),
        pid: fd.pid,
        hint: hint.to_string(),
    }
}

/// The REG entry for `fd` under `id`; an unlinked file's contents go to a ghost image.
pub(crate) fn dump_file(
    ctx: &mut dyn DumpContext,
    fd: &FdDesc,
    id: u32,
) -> Result<FileEntry, PluginError> {
    let st = &fd.stat;
    if st.is_chr() && is_tty_major(nix::sys::stat::major(st.rdev)) {
        return Err(unsupported(
            fd,
            // Reached for terminals the tty plugin does not claim, or when it is not loaded.
            "no plugin handles this terminal: the tty plugin covers Unix98 ptys, /dev/tty, the console, virtual terminals and USB serial lines (legacy BSD ptys and 8250 serial ports are not supported); load it with --plugin-dir if this criu lacks it",
        ));
    }
    let path = dumped_path(fd)?;
    let flags = fd.fdinfo.file_flags();
    tracing::debug!(
        pid = fd.pid,
        fd = fd.fd,
        id,
        path,
        flags,
        pos = fd.fdinfo.pos,
        "dumping file"
    );

    if st.nlink == 0 {
        if st.file_type() == libc::S_IFLNK {
            return Err(unsupported(
                fd,
                "removed symlinks held with O_PATH are not supported",
            ));
        }
        let ghost_id = ghost_once(ctx, fd, path)?;
        let remap = RemapFilePathEntry {
            orig_id: id,
            remap_id: ghost_id,
            remap_type: Some(RemapType::Ghost as i32),
        };
        write_message(ctx, ImageRef::REMAP_FPATH, &remap, &[])?;
    }

    let size = (st.is_reg() && should_check_size(flags)).then_some(st.size as u64);
    let reg = RegFileEntry {
        id,
        flags,
        pos: fd.fdinfo.pos,
        fown: fd.owner.to_entry(),
        name: path.to_string(),
        size,
        mode: Some(st.mode),
        ..Default::default()
    };
    Ok(FileEntry {
        r#type: FdTypes::Reg as i32,
        id,
        reg: Some(reg),
        ..Default::default()
    })
}

/// The path to store: the link without its " (deleted)" tag for unlinked files. A file still
/// linked under another name but not under this one would need CRIU's link remaps.
fn dumped_path(fd: &FdDesc) -> Result<&str, PluginError> {
    let (stripped, tagged) = fd.path_and_deleted();
    if fd.stat.nlink == 0 {
        return Ok(stripped);
    }
    if tagged && !same_file_at(&fd.link, fd) {
        return Err(unsupported(
            fd,
            "the file was unlinked but has other hard links; link remaps (--link-remap) are not supported yet",
        ));
    }
    // A real name that happens to end in " (deleted)" stays as it is.
    let path = if tagged { fd.link.as_str() } else { stripped };
    check_path_names_file(fd, path)?;
    Ok(path)
}

/// Restore reopens the path: it must still name this very file (CRIU checks the same). Not
/// following a final symlink: the link of an `O_PATH | O_NOFOLLOW` fd names the symlink.
fn check_path_names_file(fd: &FdDesc, path: &str) -> Result<(), PluginError> {
    match nix::sys::stat::lstat(path) {
        Ok(s) if s.st_dev == fd.stat.dev && s.st_ino == fd.stat.ino => Ok(()),
        Ok(_) => Err(unsupported(
            fd,
            &format!(
                "{path} now names another file than the one open; link remaps (--link-remap) are not supported yet"
            ),
        )),
        Err(nix::errno::Errno::ENOENT) => Err(unsupported(
            fd,
            &format!("{path} cannot be reached from criu (renamed, or in another mount namespace)"),
        )),
        Err(e) => Err(PluginError::Fd {
            pid: fd.pid,
            fd: fd.fd,
            link: fd.link.clone(),
            op: "stat of its path",
            source: e.into(),
        }),
    }
}

fn same_file_at(path: &str, fd: &FdDesc) -> bool {
    nix::sys::stat::lstat(path).is_ok_and(|s| s.st_dev == fd.stat.dev && s.st_ino == fd.stat.ino)
}

/// The ghost id of the unlinked file behind `fd`, writing its image the first time this
/// dump meets the file (several descriptions may share one unlinked file).
fn ghost_once(ctx: &mut dyn DumpContext, fd: &FdDesc, path: &str) -> Result<u32, PluginError> {
    let size = fd.stat.size.max(0) as u64;
    let limit = ctx.options().ghost_limit;
    // Only a regular file's contents travel in the image.
    if fd.stat.is_reg() && size > limit {
        return Err(PluginError::GhostTooBig {
            path: path.into(),
            pid: fd.pid,
            fd: fd.fd,
            size,
            limit,
        });
    }
    let key = (fd.stat.dev, fd.stat.ino);
    let state = ctx.state::<DumpState>()?;
    if let Some(&id) = state.ghosts.get(&key) {
        return Ok(id);
    }
    // Ghost ids count from 1 per dump, like CRIU's.
    let id = state.ghosts.len() as u32 + 1;
    ghost::dump(ctx, fd, id)?;
    ctx.state::<DumpState>()?.ghosts.insert(key, id);
    Ok(id)
}
