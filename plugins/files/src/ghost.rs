//! Ghost files: the contents of unlinked files, in CRIU's `ghost-file-<id>.img` format (a
//! `ghost_file_entry`, then either the raw contents or, from 12 KiB on, `ghost_chunk_entry`
//! + bytes for each data extent, skipping holes).

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;

use criu_plugin_api::{DumpContext, FdDesc, ImageCursor, ImageRef, PluginError, write_message};
use criu_proto::images::{GhostChunkEntry, GhostFileEntry, Timeval};
use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::sys::stat::{Mode, fchmod, futimens};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, Whence, fchown, ftruncate, lseek, unlink};

/// From this size on CRIU stores ghost contents as chunks.
const CHUNKS_THRESHOLD: i64 = 3 * 4096;
/// Largest chunk read into memory at once.
const CHUNK_MAX: u64 = 1 << 20;

fn fd_error(fd: &FdDesc, op: &'static str, e: impl Into<std::io::Error>) -> PluginError {
    PluginError::Fd {
        pid: fd.pid,
        fd: fd.fd,
        link: fd.link.clone(),
        op,
        source: e.into(),
    }
}

/// Writes `ghost-file-<id>.img` for the unlinked regular file behind `fd`.
pub(crate) fn dump(ctx: &mut dyn DumpContext, fd: &FdDesc, id: u32) -> Result<(), PluginError> {
    let st = &fd.stat;
    let chunked = st.size >= CHUNKS_THRESHOLD;
    let entry = GhostFileEntry {
        uid: st.uid,
        gid: st.gid,
        mode: st.mode,
        dev: Some(st.dev as u32),
        ino: Some(st.ino),
        rdev: None,
        atim: Some(timeval(st.atime)),
        mtim: Some(timeval(st.mtime)),
        chunks: chunked.then_some(true),
        size: chunked.then_some(st.size as u64),
        symlnk_target: None,
    };
    // Our own description of the file: reading it must not move the task's offset, and the
    // task's may be write-only.
    let own: OwnedFd = open(
        fd.reopen_path().as_str(),
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| fd_error(fd, "open(/proc/self/fd, O_RDONLY)", e))?;
    let image = ImageRef::ghost_file(id);
    tracing::debug!(id, size = st.size, chunked, "dumping ghost file");
    if !chunked {
        let data = read_range(fd, &own, 0, st.size as u64)?;
        return write_message(ctx, image, &entry, &data);
    }
    write_message(ctx, image, &entry, &[])?;
    for (start, total) in data_extents(fd, &own, st.size)? {
        // Bounded memory whatever --ghost-limit says: a long extent becomes several chunks.
        let mut off = start;
        while off < start + total {
            let len = (start + total - off).min(CHUNK_MAX);
            let data = read_range(fd, &own, off, len)?;
            write_message(ctx, image, &GhostChunkEntry { len, off }, &data)?;
            off += len;
        }
    }
    Ok(())
}

fn timeval(t: criu_plugin_api::Timespec) -> Timeval {
    Timeval {
        tv_sec: t.sec.max(0) as u64,
        tv_usec: (t.nsec.max(0) / 1000) as u64,
    }
}

/// `len` bytes at `off`; a file that shrank since `fstat` is an error (the task is frozen,
/// so that means someone else is writing it).
fn read_range(fd: &FdDesc, own: &OwnedFd, off: u64, len: u64) -> Result<Vec<u8>, PluginError> {
    let file = File::from(own.try_clone().map_err(|e| fd_error(fd, "dup", e))?);
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, off)
        .map_err(|e| fd_error(fd, "pread", e))?;
    Ok(buf)
}

/// The data extents `(offset, length)` of the first `size` bytes, via SEEK_DATA/SEEK_HOLE;
/// one extent covering everything when the filesystem does not support them.
fn data_extents(fd: &FdDesc, own: &OwnedFd, size: i64) -> Result<Vec<(u64, u64)>, PluginError> {
    let mut out = Vec::new();
    let mut hole = 0i64;
    while hole < size {
        let data = match lseek(own.as_fd(), hole, Whence::SeekData) {
            Ok(d) => d,
            Err(Errno::ENXIO) => break,
            Err(Errno::EINVAL) if hole == 0 => return Ok(vec![(0, size as u64)]),
            Err(e) => return Err(fd_error(fd, "lseek(SEEK_DATA)", e)),
        };
        hole = lseek(own.as_fd(), data, Whence::SeekHole)
            .map_err(|e| fd_error(fd, "lseek(SEEK_HOLE)", e))?
            .min(size);
        if hole > data {
            out.push((data as u64, (hole - data) as u64));
        }
    }
    Ok(out)
}

/// Recreates ghost `id` for the file that was at `orig_path`: a temporary file next to it
/// (or in the nearest existing ancestor directory), filled from the image, given the
/// dumped owner, mode and times, then unlinked. Returns it open read-write.
pub(crate) fn restore(
    ctx: &mut dyn criu_plugin_api::RestoreContext,
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
    if entry.mode & libc::S_IFMT != libc::S_IFREG {
        return Err(PluginError::Unsupported {
            resource: format!("ghost file {orig_path} (mode {:o})", entry.mode),
            pid: ctx.current_pid(),
            hint: "only unlinked regular files can be restored".into(),
        });
    }
    let (path, file) = create_near(orig_path, id)?;
    let result =
        fill(&file, &entry, &mut cursor, image).and_then(|()| apply_metadata(&file, &entry, &path));
    // Unlinked whatever happened: it must not outlive the restore under a visible name.
    let unlinked = unlink(path.as_str());
    result?;
    unlinked.map_err(|e| PluginError::path(&path, "unlink", e))?;
    tracing::debug!(id, path, "ghost file recreated");
    Ok(file)
}

/// Creates `<orig>.cr.<id>.ghost`, trying the parent directories upwards when the original
/// directory is gone (as CRIU does).
fn create_near(orig_path: &str, id: u32) -> Result<(String, OwnedFd), PluginError> {
    let (dir, name) = orig_path.rsplit_once('/').unwrap_or(("", orig_path));
    let mut dir = dir.to_string();
    loop {
        let path = format!("{dir}/{name}.cr.{id:x}.ghost");
        let flags = OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_CLOEXEC;
        match open(path.as_str(), flags, Mode::from_bits_truncate(0o600)) {
            Ok(fd) => return Ok((path, fd)),
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
    let out = File::from(file.try_clone().map_err(|e| PluginError::Image {
        image: image.to_string(),
        source: Box::new(e),
    })?);
    let write_err = |e: std::io::Error| PluginError::Image {
        image: image.to_string(),
        source: Box::new(e),
    };
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

fn apply_metadata(file: &OwnedFd, entry: &GhostFileEntry, path: &str) -> Result<(), PluginError> {
    fchown(
        file.as_fd(),
        Some(Uid::from_raw(entry.uid)),
        Some(Gid::from_raw(entry.gid)),
    )
    .map_err(|e| PluginError::path(path, "fchown", e))?;
    fchmod(file.as_fd(), Mode::from_bits_truncate(entry.mode & 0o7777))
        .map_err(|e| PluginError::path(path, "fchmod", e))?;
    if let (Some(a), Some(m)) = (entry.atim, entry.mtim) {
        // Clamped: a corrupt image must not overflow the conversion.
        let ts =
            |t: Timeval| TimeSpec::new(t.tv_sec as i64, (t.tv_usec.min(999_999) * 1000) as i64);
        futimens(file.as_fd(), &ts(a), &ts(m))
            .map_err(|e| PluginError::path(path, "futimens", e))?;
    }
    Ok(())
}
