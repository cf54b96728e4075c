//! Ghost files: unlinked files carried in CRIU's `ghost-file-<id>.img` format (a
//! `ghost_file_entry`, then for a regular file either the raw contents or, from 12 KiB on,
//! `ghost_chunk_entry` + bytes for each data extent, skipping holes). Dumping here, restoring
//! in [`crate::ghost_restore`].

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;

use criu_plugin_api::{DumpContext, FdDesc, ImageRef, PluginError, write_message};
use criu_proto::images::{GhostChunkEntry, GhostFileEntry, Timeval};
use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;
use nix::unistd::{Whence, lseek};

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

/// Writes `ghost-file-<id>.img` for the unlinked file behind `fd`: contents for a regular
/// file, only metadata for a directory or a FIFO, the device number for a device node and
/// the target for a symlink.
/// `id` must be unique among the dump's ghosts (the pipes plugin dumps FIFO ghosts too).
pub fn dump(ctx: &mut dyn DumpContext, fd: &FdDesc, id: u32) -> Result<(), PluginError> {
    let st = &fd.stat;
    let node = st.is_chr() || st.file_type() == libc::S_IFBLK;
    let chunked = st.is_reg() && st.size >= CHUNKS_THRESHOLD;
    let entry = GhostFileEntry {
        uid: st.uid,
        gid: st.gid,
        mode: st.mode,
        dev: Some(st.dev as u32),
        ino: Some(st.ino),
        // CRIU keeps 32 bits of the device number.
        rdev: node.then_some(st.rdev as u32),
        atim: Some(timeval(st.atime)),
        mtim: Some(timeval(st.mtime)),
        chunks: chunked.then_some(true),
        size: chunked.then_some(st.size as u64),
        symlnk_target: symlink_target(fd)?,
    };
    let image = ImageRef::ghost_file(id);
    if !st.is_reg() {
        tracing::debug!(id, mode = st.mode, "dumping ghost node");
        return write_message(ctx, image, &entry, &[]);
    }
    // Our own description of the file: reading it must not move the task's offset, and the
    // task's may be write-only.
    let own: OwnedFd = open(
        fd.reopen_path().as_str(),
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| fd_error(fd, "open(/proc/self/fd, O_RDONLY)", e))?;
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

/// The target of a symlink held with `O_PATH | O_NOFOLLOW` (CRIU's `symlnk_target`).
fn symlink_target(fd: &FdDesc) -> Result<Option<String>, PluginError> {
    if fd.stat.file_type() != libc::S_IFLNK {
        return Ok(None);
    }
    let target =
        nix::fcntl::readlinkat(fd.file.as_fd(), "").map_err(|e| fd_error(fd, "readlinkat", e))?;
    target.into_string().map(Some).map_err(|t| {
        fd_error(
            fd,
            "readlinkat",
            std::io::Error::other(format!("symlink target {t:?} is not UTF-8")),
        )
    })
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
