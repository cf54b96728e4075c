//! Recreating ghost files on restore: a temporary node next to the old path (or in the
//! nearest existing ancestor, as CRIU does; a directory at its old path when free), filled
//! and given the dumped owner, mode and times, opened, then removed at once so that only
//! the open file remains. The pipes plugin recreates unlinked FIFOs with [`restore`].

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;

use criu_plugin_api::{ImageCursor, ImageRef, PluginError, RestoreContext};
use criu_proto::images::{GhostChunkEntry, GhostFileEntry, Timeval};
use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, AtFlags, OFlag, open};
use nix::sys::stat::{FchmodatFlags, Mode, SFlag, UtimensatFlags, fchmodat, mknod, utimensat};
use nix::sys::time::TimeSpec;
use nix::unistd::{
    Gid, Uid, UnlinkatFlags, fchownat, ftruncate, mkdir, symlinkat, unlink, unlinkat,
};

/// Recreates ghost `id` for the file that was at `orig_path` and returns it open: read-write
/// for a regular file, read-only for a directory, `O_PATH` for a device node, a FIFO or a symlink
/// (descriptions are reopened from it through `/proc/self/fd` with their own flags).
pub fn restore(
    ctx: &mut dyn RestoreContext,
    id: u32,
    orig_path: &str,
) -> Result<OwnedFd, PluginError> {
    let image = ImageRef::ghost_file(id);
    let body = ctx
        .read_image(image)?
        .ok_or_else(|| PluginError::bad_image(image.to_string(), "missing ghost file image"))?;
    let mut cursor = ImageCursor::new(image, &body);
    let entry: GhostFileEntry = cursor
        .next_entry()?
        .ok_or_else(|| PluginError::bad_image(image.to_string(), "empty ghost file image"))?;
    let kind = entry.mode & libc::S_IFMT;
    let (path, fd) = match kind {
        libc::S_IFREG => create_near(orig_path, id, |p| {
            let flags = OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_CLOEXEC;
            open(p, flags, Mode::from_bits_truncate(0o600))
        })?,
        // At its own path when that is free, as CRIU does: a task's removed cwd then reads
        // back as the same "<path> (deleted)".
        libc::S_IFDIR => match make_dir(orig_path) {
            Ok(fd) => (orig_path.to_string(), fd),
            Err(Errno::EEXIST | Errno::ENOENT) => create_near(orig_path, id, make_dir)?,
            Err(e) => return Err(PluginError::path(orig_path, "create ghost directory", e)),
        },
        libc::S_IFCHR | libc::S_IFBLK | libc::S_IFIFO => {
            // A FIFO has no device number (CRIU writes none).
            let rdev = match entry.rdev {
                Some(rdev) => rdev,
                None if kind == libc::S_IFIFO => 0,
                None => {
                    return Err(PluginError::bad_image(
                        image.to_string(),
                        "ghost device without rdev",
                    ));
                }
            };
            create_near(orig_path, id, |p| {
                let sflag = SFlag::from_bits_truncate(kind);
                mknod(p, sflag, Mode::from_bits_truncate(0o600), u64::from(rdev))?;
                open(p, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty()).inspect_err(|_| {
                    let _ = unlink(p);
                })
            })?
        }
        libc::S_IFLNK => {
            let target = entry.symlnk_target.as_deref().ok_or_else(|| {
                PluginError::bad_image(image.to_string(), "ghost symlink without symlnk_target")
            })?;
            create_near(orig_path, id, |p| {
                symlinkat(target, AT_FDCWD, p)?;
                open(
                    p,
                    OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .inspect_err(|_| {
                    let _ = unlink(p);
                })
            })?
        }
        _ => {
            return Err(PluginError::Unsupported {
                resource: format!("ghost file {orig_path} (mode {:o})", entry.mode),
                pid: ctx.current_pid(),
                hint: "unlinked files, directories, device nodes, FIFOs and symlinks only".into(),
            });
        }
    };
    let result = if kind == libc::S_IFREG {
        fill(&fd, &entry, &mut cursor, image)
    } else {
        Ok(())
    }
    .and_then(|()| apply_metadata(&entry, &path));
    // Removed whatever happened: it must not outlive the restore under a visible name.
    let removed = if kind == libc::S_IFDIR {
        unlinkat(AT_FDCWD, path.as_str(), UnlinkatFlags::RemoveDir)
    } else {
        unlink(path.as_str())
    };
    result?;
    removed.map_err(|e| PluginError::path(&path, "unlink", e))?;
    tracing::debug!(id, path, mode = entry.mode, "ghost recreated");
    Ok(fd)
}

/// A new directory at `p`, open (removed again when it cannot be opened).
fn make_dir(p: &str) -> Result<OwnedFd, Errno> {
    mkdir(p, Mode::from_bits_truncate(0o700))?;
    open(
        p,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .inspect_err(|_| {
        let _ = unlinkat(AT_FDCWD, p, UnlinkatFlags::RemoveDir);
    })
}

/// Makes `<orig>.cr.<id>.ghost` with `make`, trying the parent directories upwards when the
/// original directory is gone.
fn create_near<T>(
    orig_path: &str,
    id: u32,
    make: impl Fn(&str) -> Result<T, Errno>,
) -> Result<(String, T), PluginError> {
    let (dir, name) = orig_path.rsplit_once('/').unwrap_or(("", orig_path));
    let mut dir = dir.to_string();
    loop {
        let path = format!("{dir}/{name}.cr.{id:x}.ghost");
        match make(&path) {
            Ok(made) => return Ok((path, made)),
            Err(Errno::ENOENT) if !dir.is_empty() => {
                dir = dir
                    .rsplit_once('/')
                    .map(|(d, _)| d.to_string())
                    .unwrap_or_default();
            }
            Err(e) => return Err(PluginError::path(path, "create ghost file", e)),
        }
    }
}

fn fill(
    file: &OwnedFd,
    entry: &GhostFileEntry,
    cursor: &mut ImageCursor<'_>,
    image: ImageRef,
) -> Result<(), PluginError> {
    let write_err = |e: std::io::Error| PluginError::Image {
        image: image.to_string(),
        source: Box::new(e),
    };
    let out = File::from(file.try_clone().map_err(write_err)?);
    if entry.chunks != Some(true) {
        return out.write_all_at(cursor.rest(), 0).map_err(write_err);
    }
    let size = entry
        .size
        .ok_or_else(|| PluginError::bad_image(image.to_string(), "chunked ghost without size"))?;
    let size = i64::try_from(size)
        .map_err(|_| PluginError::bad_image(image.to_string(), "ghost size out of range"))?;
    ftruncate(file.as_fd(), size).map_err(|e| write_err(e.into()))?;
    while let Some(chunk) = cursor.next_entry::<GhostChunkEntry>()? {
        let len = usize::try_from(chunk.len)
            .map_err(|_| PluginError::bad_image(image.to_string(), "chunk length out of range"))?;
        let data = cursor.raw(len)?;
        out.write_all_at(data, chunk.off).map_err(write_err)?;
    }
    Ok(())
}

/// Owner, permissions and times, set by path (an `O_PATH` fd of a node allows none of it).
fn apply_metadata(entry: &GhostFileEntry, path: &str) -> Result<(), PluginError> {
    let (uid, gid) = (Uid::from_raw(entry.uid), Gid::from_raw(entry.gid));
    fchownat(
        AT_FDCWD,
        path,
        Some(uid),
        Some(gid),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(|e| PluginError::path(path, "chown", e))?;
    if entry.mode & libc::S_IFMT == libc::S_IFLNK {
        // A symlink's own mode is fixed; a chmod would follow it to its target.
        return set_times(entry, path);
    }
    let mode = Mode::from_bits_truncate(entry.mode & 0o7777);
    fchmodat(AT_FDCWD, path, mode, FchmodatFlags::FollowSymlink)
        .map_err(|e| PluginError::path(path, "chmod", e))?;
    set_times(entry, path)
}

/// Access and modification times, set on the node itself.
fn set_times(entry: &GhostFileEntry, path: &str) -> Result<(), PluginError> {
    if let (Some(a), Some(m)) = (entry.atim, entry.mtim) {
        // Clamped: a corrupt image must not overflow the conversion.
        let ts =
            |t: Timeval| TimeSpec::new(t.tv_sec as i64, (t.tv_usec.min(999_999) * 1000) as i64);
        utimensat(
            AT_FDCWD,
            path,
            &ts(a),
            &ts(m),
            UtimensatFlags::NoFollowSymlink,
        )
        .map_err(|e| PluginError::path(path, "utimensat", e))?;
    }
    Ok(())
}
