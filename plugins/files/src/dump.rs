//! Dumping a file description reached by a path.

use std::collections::HashMap;
use std::os::fd::AsFd;

use criu_plugin_api::{DumpContext, FdDesc, ImageRef, PluginError, write_message};
use criu_proto::images::{FdTypes, FileEntry, RegFileEntry, RemapFilePathEntry, RemapType};

use crate::flags::{is_tty_major, should_check_size};
use crate::ghost;

/// What one dump remembers across fds and tasks.
#[derive(Debug, Default)]
pub(crate) struct DumpState {
    /// Ghost ids by unlinked file (dev, inode): several descriptions may share one file.
    ghosts: HashMap<(u64, u64), u32>,
    /// Link remaps made so far (removed again if the dump fails or the tree runs on).
    pub(crate) links: Vec<String>,
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
    let (path, link_remap) = dumped_path(fd, ctx.options().link_remap)?;
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
        let ghost_id = ghost_once(ctx, fd, path)?;
        let remap = RemapFilePathEntry {
            orig_id: id,
            remap_id: ghost_id,
            remap_type: Some(RemapType::Ghost as i32),
        };
        write_message(ctx, ImageRef::REMAP_FPATH, &remap, &[])?;
    } else if link_remap {
        crate::link_remap::dump(ctx, fd, id, path)?;
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

/// The path to store: the link without its " (deleted)" tag for unlinked files; and whether
/// the file needs a link remap (its name was removed but it keeps other hard links), which
/// only `--link-remap` allows, as in CRIU.
fn dumped_path(fd: &FdDesc, link_remap: bool) -> Result<(&str, bool), PluginError> {
    let (stripped, tagged) = fd.path_and_deleted();
    if fd.stat.nlink == 0 {
        return Ok((stripped, false));
    }
    if tagged && !same_file_at(&fd.link, fd) {
        if fd.stat.is_dir() {
            return Err(unsupported(fd, "a removed directory that still has links"));
        }
        if !link_remap {
            return Err(unsupported(
                fd,
                "the file was unlinked but has other hard links: use --link-remap to give it a temporary link",
            ));
        }
        return Ok((stripped, true));
    }
    // A real name that happens to end in " (deleted)" stays as it is.
    let path = if tagged { fd.link.as_str() } else { stripped };
    check_path_names_file(fd, path)?;
    Ok((path, false))
}

/// Restore reopens the path: it must still name this very file (CRIU checks the same). Not
/// following a final symlink: the link of an `O_PATH | O_NOFOLLOW` fd names the symlink.
fn check_path_names_file(fd: &FdDesc, path: &str) -> Result<(), PluginError> {
    match nix::sys::stat::lstat(reachable(fd.pid, path).as_ref()) {
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
    nix::sys::stat::lstat(reachable(fd.pid, path).as_ref())
        .is_ok_and(|s| s.st_dev == fd.stat.dev && s.st_ino == fd.stat.ino)
}

/// `path` as criu reaches it: a holder in another mount namespace than criu's has fd links
/// naming paths of its namespace, reached through its root (`/proc/PID/root`).
fn reachable(pid: i32, path: &str) -> std::borrow::Cow<'_, str> {
    use std::os::unix::fs::MetadataExt;
    let ns = |p: String| std::fs::metadata(p).map(|m| (m.dev(), m.ino())).ok();
    let theirs = ns(format!("/proc/{pid}/ns/mnt"));
    if theirs.is_some() && theirs != ns("/proc/self/ns/mnt".into()) {
        return format!("/proc/{pid}/root{path}").into();
    }
    path.into()
}

/// The ghost id of the unlinked file behind `fd`, writing its image the first time this
/// dump meets the file (several descriptions may share one unlinked file).
fn ghost_once(ctx: &mut dyn DumpContext, fd: &FdDesc, path: &str) -> Result<u32, PluginError> {
    let limit = ctx.options().ghost_limit;
    // Only a regular file's contents travel in the image, and only its data extents: the
    // limit counts allocated blocks, as CRIU's does (a sparse file's holes cost nothing).
    let size = if fd.stat.is_reg() {
        allocated_bytes(fd)?
    } else {
        0
    };
    if size > limit {
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

/// Bytes the file occupies on disk (`st_blocks` counts 512-byte units whatever the
/// filesystem's block size).
fn allocated_bytes(fd: &FdDesc) -> Result<u64, PluginError> {
    let st = nix::sys::stat::fstat(fd.file.as_fd()).map_err(|e| PluginError::Fd {
        pid: fd.pid,
        fd: fd.fd,
        link: fd.link.clone(),
        op: "fstat",
        source: e.into(),
    })?;
    Ok((st.st_blocks.max(0) as u64).saturating_mul(512))
}
