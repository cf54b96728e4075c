//! Dump: the fd of a secretmem object, and its mappings' pages, which the frozen task itself
//! writes into a pipe whose other end criu reads, one [`CHUNK`] at most at a time.

use std::os::fd::{AsRawFd, OwnedFd};

use criu_plugin_api::{DumpContext, FdDesc, PluginError, VmaDesc};
use criu_proto::images::{ExtFileEntry, FdTypes, FileEntry};
use zeroize::Zeroizing;

use crate::index::{CHUNK, INDEX_FILE, Index, VmaRec, chunk_file};
use crate::remote::{Task, pipe_capacity};
use crate::seal::{HEAD_ROOM, SecretKey, seal};
use crate::{NAME, seal_err};

/// The plugin's state for one dump.
#[derive(Debug, Default)]
pub struct DumpState {
    /// `None` until the first secretmem object: then the key file is read and the dump id drawn.
    started: Option<Option<SecretKey>>,
    index: Index,
}

impl DumpState {
    /// The key (if any), reading it and drawing the dump id on the first call.
    fn start(&mut self, ctx_key: Option<&std::path::Path>) -> Result<(), PluginError> {
        if self.started.is_some() {
            return Ok(());
        }
        let key = ctx_key
            .map(SecretKey::load)
            .transpose()
            .map_err(|e| seal_err(0, e))?;
        getrandom::fill(&mut self.index.dump_id).map_err(|e| PluginError::Unsupported {
            resource: "the secretmem dump id".into(),
            pid: 0,
            hint: format!("no random bytes: {e}"),
        })?;
        if key.is_none() {
            tracing::warn!(
                "memfd_secret contents are stored in clear in the images (no --secret-key)"
            );
        }
        self.started = Some(key);
        Ok(())
    }

    fn key(&self) -> Option<&SecretKey> {
        self.started.as_ref().and_then(Option::as_ref)
    }
}

fn state(ctx: &mut dyn DumpContext) -> Result<&mut DumpState, PluginError> {
    let key = ctx.options().secret_key.clone();
    let st = ctx.state::<DumpState>()?;
    st.start(key.as_deref())?;
    Ok(st)
}

/// Rewrites the index (small: one line per object, range and mapping).
fn write_index(ctx: &mut dyn DumpContext) -> Result<(), PluginError> {
    let st = ctx.state::<DumpState>()?;
    let text = Zeroizing::new(st.index.encode().into_bytes());
    let bytes = seal(st.key(), INDEX_FILE, &[0; 16], text).map_err(|e| seal_err(0, e))?;
    ctx.write_plugin_file(INDEX_FILE, &bytes)
}

/// The `files.img` entry of a secretmem fd: CRIU's EXT type (a file a plugin restores),
/// marked with our field `criu_rs_plugin`; the object is in the index.
pub fn dump_file(
    ctx: &mut dyn DumpContext,
    fd: &FdDesc,
    id: u32,
) -> Result<FileEntry, PluginError> {
    let size = u64::try_from(fd.stat.size).unwrap_or(0);
    let st = state(ctx)?;
    let obj = st.index.objects.entry(fd.stat.ino).or_default();
    obj.size = obj.size.max(size);
    obj.file_id = Some(id);
    tracing::debug!(
        pid = fd.pid,
        fd = fd.fd,
        id,
        ino = fd.stat.ino,
        size,
        "secretmem fd"
    );
    write_index(ctx)?;
    Ok(FileEntry {
        r#type: FdTypes::Ext as i32,
        id,
        ext: Some(ExtFileEntry {
            id,
            fown: fd.owner.to_entry(),
            criu_rs_plugin: Some(NAME.into()),
        }),
        ..Default::default()
    })
}

/// The inode of the mapping of `pid` at `start` (`/proc/PID/maps`: VmaDesc has no inode).
fn vma_inode(pid: i32, start: u64) -> Result<u64, PluginError> {
    let path = format!("/proc/{pid}/maps");
    let text = std::fs::read_to_string(&path).map_err(|e| PluginError::Path {
        path: path.clone().into(),
        op: "read",
        source: e,
    })?;
    text.lines()
        .find_map(|l| {
            let mut w = l.split_ascii_whitespace();
            let range = w.next()?;
            let s = u64::from_str_radix(range.split('-').next()?, 16).ok()?;
            (s == start).then(|| w.nth(3)?.parse().ok())?
        })
        .ok_or_else(|| PluginError::Unsupported {
            resource: format!("memfd_secret mapping at {start:#x}"),
            pid,
            hint: format!("not found in {path}"),
        })
}

/// Records a secretmem mapping and dumps the object's range it maps, unless a mapping of
/// the same range (another task's, shared since a fork) already did.
pub fn dump_vma(ctx: &mut dyn DumpContext, vma: &VmaDesc) -> Result<(), PluginError> {
    let inode = vma_inode(vma.pid, vma.start)?;
    let len = vma.len();
    let st = state(ctx)?;
    let obj = st.index.objects.entry(inode).or_default();
    obj.size = obj.size.max(vma.pgoff + len);
    let done = obj
        .segments
        .range(..=vma.pgoff)
        .any(|(off, l)| off + l >= vma.pgoff + len);
    st.index.vmas.push(VmaRec {
        pid: vma.pid,
        start: vma.start,
        end: vma.end,
        inode,
        pgoff: vma.pgoff,
        prot: vma.prot,
    });
    if !done {
        dump_range(ctx, vma, inode)?;
        let st = ctx.state::<DumpState>()?;
        let obj = st.index.objects.entry(inode).or_default();
        let seg = obj.segments.entry(vma.pgoff).or_default();
        *seg = (*seg).max(len);
    }
    write_index(ctx)
}

/// The pipe inside the task: its write end there, its read end here.
struct TaskPipe {
    scratch: u64,
    write_end: Option<u64>,
    read_end: Option<OwnedFd>,
}

/// Has the frozen task write `vma`'s pages into a pipe criu reads, chunk by chunk into
/// content files. Whatever it set up in the task is undone, also on error.
fn dump_range(ctx: &mut dyn DumpContext, vma: &VmaDesc, inode: u64) -> Result<(), PluginError> {
    let mut pipe = TaskPipe {
        scratch: 0,
        write_end: None,
        read_end: None,
    };
    let readable = vma.prot & libc::PROT_READ as u32 != 0;
    let r = (|| {
        if !readable {
            with_task(ctx, vma.pid, |t| {
                t.mprotect(vma.start, vma.len(), vma.prot | libc::PROT_READ as u32)
            })?;
        }
        open_pipe(ctx, vma.pid, &mut pipe)?;
        copy_out(ctx, vma, inode, &mut pipe)
    })();
    let undo = with_task(ctx, vma.pid, |t| {
        let mut r = Ok(());
        if let Some(w) = pipe.write_end {
            r = r.and(t.close(w));
        }
        if pipe.scratch != 0 {
            r = r.and(
                t.sys("munmap", libc::SYS_munmap, [pipe.scratch, 4096, 0, 0, 0, 0])
                    .map(|_| ()),
            );
        }
        if !readable {
            r = r.and(t.mprotect(vma.start, vma.len(), vma.prot));
        }
        r
    });
    r.and(undo)
}

fn with_task<R>(ctx: &mut dyn DumpContext, pid: i32, f: impl FnOnce(&mut Task<'_, '_>) -> R) -> R {
    let mut call = |nr, args| ctx.remote_syscall(pid, nr, args);
    f(&mut Task {
        tid: pid,
        call: &mut call,
    })
}

/// A page of scratch memory in the task (for `pipe2`'s two fds), the pipe, and its read
/// end fetched into criu (closed in the task: only the write end stays there).
fn open_pipe(ctx: &mut dyn DumpContext, pid: i32, pipe: &mut TaskPipe) -> Result<(), PluginError> {
    with_task(ctx, pid, |t| {
        pipe.scratch = t.sys(
            "mmap",
            libc::SYS_mmap,
            [
                0,
                4096,
                (libc::PROT_READ | libc::PROT_WRITE) as u64,
                (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64,
                u64::MAX,
                0,
            ],
        )?;
        t.sys(
            "pipe2",
            libc::SYS_pipe2,
            [pipe.scratch, libc::O_CLOEXEC as u64, 0, 0, 0, 0],
        )
    })?;
    let mut fds = [0u8; 8];
    ctx.read_task_memory(pid, pipe.scratch, &mut fds)?;
    let fd = |b: &[u8]| u64::from(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    let (rd, wr) = (fd(&fds[..4]), fd(&fds[4..]));
    pipe.write_end = Some(wr);
    let got = ctx.dup_task_fd(pid, rd as i32);
    let closed = with_task(ctx, pid, |t| t.close(rd));
    pipe.read_end = Some(got?);
    closed
}

/// The copy itself: remote `write`s of at most the pipe's capacity, each read back here
/// into one chunk buffer, which is sealed, written and wiped before the next chunk.
fn copy_out(
    ctx: &mut dyn DumpContext,
    vma: &VmaDesc,
    inode: u64,
    pipe: &mut TaskPipe,
) -> Result<(), PluginError> {
    let (Some(rd), Some(wr)) = (pipe.read_end.as_ref(), pipe.write_end) else {
        return Ok(());
    };
    let piece = pipe_capacity(rd)?;
    let len = vma.len();
    let mut off = 0u64;
    let mut n = 0u64;
    while off < len {
        let chunk = (len - off).min(CHUNK) as usize;
        let mut buf = Zeroizing::new(Vec::with_capacity(chunk + HEAD_ROOM));
        buf.resize(chunk, 0);
        let mut filled = 0usize;
        while filled < chunk {
            let want = (chunk - filled).min(piece);
            let addr = vma.start + off + filled as u64;
            let wrote = with_task(ctx, vma.pid, |t| {
                t.sys("write", libc::SYS_write, [wr, addr, want as u64, 0, 0, 0])
            })? as usize;
            if wrote == 0 || wrote > want {
                return Err(PluginError::Task {
                    pid: vma.pid,
                    op: format!("remote write of secret memory at {addr:#x}"),
                    source: format!("wrote {wrote} of {want} bytes").into(),
                });
            }
            read_exact(rd, &mut buf[filled..filled + wrote], vma.pid)?;
            filled += wrote;
        }
        let name = chunk_file(inode, vma.pgoff, n);
        let st = ctx.state::<DumpState>()?;
        let bytes =
            seal(st.key(), &name, &st.index.dump_id, buf).map_err(|e| seal_err(vma.pid, e))?;
        ctx.write_plugin_file(&name, &bytes)?;
        off += chunk as u64;
        n += 1;
    }
    tracing::debug!(
        pid = vma.pid,
        start = vma.start,
        len,
        chunks = n,
        "secretmem pages dumped"
    );
    Ok(())
}

fn read_exact(fd: &OwnedFd, mut buf: &mut [u8], pid: i32) -> Result<(), PluginError> {
    while !buf.is_empty() {
        match nix::unistd::read(fd, buf) {
            Ok(0) => {
                return Err(PluginError::Task {
                    pid,
                    op: format!("read from the secret pipe (fd {})", fd.as_raw_fd()),
                    source: "end of file before the pages written".into(),
                });
            }
            Ok(k) => buf = &mut buf[k..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => {
                return Err(PluginError::Task {
                    pid,
                    op: "read from the secret pipe".into(),
                    source: Box::new(e),
                });
            }
        }
    }
    Ok(())
}
