//! Restore: one `memfd_secret` per dumped object, created in criu (its fd restored from
//! it, its size kept), mapped by each task at the dumped address from inside the task; the
//! pages go back through a pipe the task reads, one [`CHUNK`] at most at a time in criu.

use std::collections::{BTreeSet, HashMap};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use criu_plugin_api::{PluginError, RestoreContext, VmaDesc};
use criu_proto::images::FileEntry;
use zeroize::Zeroizing;

use crate::index::{CHUNK, INDEX_FILE, Index, Object, VmaRec, chunk_file};
use crate::remote::{Task, pipe_capacity};
use crate::seal::{SecretKey, open};
use crate::{LINK, seal_err, sys};

/// The plugin's state for one restore.
#[derive(Debug, Default)]
pub struct RestoreState {
    /// Whether `key` and `index` were read (on first use).
    loaded: bool,
    key: Option<SecretKey>,
    index: Index,
    /// criu's fd of each object, by dumped inode.
    objects: HashMap<u64, OwnedFd>,
    /// Segments (inode, offset) already written back.
    written: BTreeSet<(u64, u64)>,
}

fn state(ctx: &mut dyn RestoreContext) -> Result<&mut RestoreState, PluginError> {
    if !ctx.state::<RestoreState>()?.loaded {
        let key = ctx
            .options()
            .secret_key
            .as_deref()
            .map(SecretKey::load)
            .transpose()
            .map_err(|e| seal_err(0, e))?;
        let bytes = ctx
            .read_plugin_file(INDEX_FILE)?
            .ok_or_else(|| PluginError::bad_image(INDEX_FILE, "missing"))?;
        let text = open(key.as_ref(), INDEX_FILE, &[0; 16], bytes).map_err(|e| seal_err(0, e))?;
        let text = std::str::from_utf8(&text)
            .map_err(|_| PluginError::bad_image(INDEX_FILE, "not text"))?;
        let index = Index::parse(text).map_err(|e| PluginError::bad_image(INDEX_FILE, e))?;
        let st = ctx.state::<RestoreState>()?;
        (st.loaded, st.key, st.index) = (true, key, index);
    }
    ctx.state::<RestoreState>()
}

impl RestoreState {
    /// criu's fd of object `inode`: a new memfd_secret of the dumped size on first use.
    fn object(&mut self, inode: u64, obj: &Object) -> Result<&OwnedFd, PluginError> {
        use std::collections::hash_map::Entry;
        let slot = match self.objects.entry(inode) {
            Entry::Occupied(o) => return Ok(o.into_mut()),
            Entry::Vacant(v) => v,
        };
        let fail = |op, e: nix::errno::Errno| PluginError::Restore {
            id: obj.file_id.unwrap_or(0),
            what: format!("{LINK} (inode {inode})"),
            op,
            source: e.into(),
        };
        let fd = sys::memfd_secret().map_err(|e| fail("memfd_secret", e))?;
        let size = i64::try_from(obj.size).map_err(|_| {
            PluginError::bad_image(INDEX_FILE, format!("object {inode}: size too big"))
        })?;
        nix::unistd::ftruncate(&fd, size).map_err(|e| fail("ftruncate", e))?;
        Ok(slot.insert(fd))
    }
}

/// Opens the description of a secretmem fd (file id `entry.id`).
pub fn open_file(ctx: &mut dyn RestoreContext, entry: &FileEntry) -> Result<OwnedFd, PluginError> {
    let st = state(ctx)?;
    let (inode, obj) = st
        .index
        .by_file_id(entry.id)
        .map(|(i, o)| (i, o.clone()))
        .ok_or_else(|| {
            PluginError::bad_image(INDEX_FILE, format!("no object for file id {}", entry.id))
        })?;
    st.object(inode, &obj)?
        .try_clone()
        .map_err(|e| PluginError::Restore {
            id: entry.id,
            what: LINK.into(),
            op: "dup",
            source: e,
        })
}

/// Maps the object over the placeholder the core mapped at `vma`, from inside the task,
/// and writes back the dumped ranges this mapping covers (once per object and range).
pub fn restore_vma(ctx: &mut dyn RestoreContext, vma: &VmaDesc) -> Result<(), PluginError> {
    let pid = ctx.restored_pid(vma.pid).unwrap_or(vma.pid);
    let st = state(ctx)?;
    let rec = *st.index.vma(vma.pid, vma.start).ok_or_else(|| {
        PluginError::bad_image(
            INDEX_FILE,
            format!(
                "no entry for the mapping {:#x} of pid {}",
                vma.start, vma.pid
            ),
        )
    })?;
    let obj = st.index.objects[&rec.inode].clone();
    let segments: Vec<(u64, u64)> = obj
        .segments
        .iter()
        .map(|(o, l)| (*o, *l))
        .filter(|(o, l)| *o >= rec.pgoff && o + l <= rec.pgoff + (rec.end - rec.start))
        .filter(|(o, _)| !st.written.contains(&(rec.inode, *o)))
        .collect();
    let fd = st.object(rec.inode, &obj)?.as_raw_fd();
    let me = std::process::id() as u64;
    let mut call = |nr, args| ctx.remote_syscall(pid, nr, args);
    let mut t = Task {
        tid: pid,
        call: &mut call,
    };
    let pidfd = t.sys("pidfd_open", libc::SYS_pidfd_open, [me, 0, 0, 0, 0, 0])?;
    let r = map_object(&mut t, &rec, pidfd, fd as u64);
    let closed = t.close(pidfd);
    r?;
    closed?;
    for (off, len) in segments {
        write_back(ctx, pid, &rec, off, len)?;
        ctx.state::<RestoreState>()?
            .written
            .insert((rec.inode, off));
    }
    if rec.prot != (libc::PROT_READ | libc::PROT_WRITE) as u32 {
        let mut call = |nr, args| ctx.remote_syscall(pid, nr, args);
        Task {
            tid: pid,
            call: &mut call,
        }
        .mprotect(rec.start, rec.end - rec.start, rec.prot)?;
    }
    Ok(())
}

/// `pidfd_getfd` of criu's object fd into the task, `mmap(MAP_FIXED | MAP_SHARED)` of it
/// (readable and writable until the pages are back), and `close`.
fn map_object(t: &mut Task<'_, '_>, rec: &VmaRec, pidfd: u64, fd: u64) -> Result<(), PluginError> {
    let tfd = t.sys(
        "pidfd_getfd",
        libc::SYS_pidfd_getfd,
        [pidfd, fd, 0, 0, 0, 0],
    )?;
    let got = t.sys(
        "mmap",
        libc::SYS_mmap,
        [
            rec.start,
            rec.end - rec.start,
            (libc::PROT_READ | libc::PROT_WRITE) as u64,
            (libc::MAP_SHARED | libc::MAP_FIXED) as u64,
            tfd,
            rec.pgoff,
        ],
    );
    let closed = t.close(tfd);
    if got? != rec.start {
        return Err(PluginError::Task {
            pid: t.tid,
            op: format!("remote mmap of {LINK} at {:#x}", rec.start),
            source: "mapped elsewhere".into(),
        });
    }
    closed
}

/// Writes segment `(off, len)` of the mapping's object through a pipe the task reads.
fn write_back(
    ctx: &mut dyn RestoreContext,
    pid: i32,
    rec: &VmaRec,
    off: u64,
    len: u64,
) -> Result<(), PluginError> {
    let fail = |op: &str, e: nix::errno::Errno| PluginError::Task {
        pid,
        op: op.into(),
        source: Box::new(e),
    };
    let (rd, wr) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| fail("pipe2 in criu", e))?;
    let piece = pipe_capacity(&wr)?;
    let me = std::process::id() as u64;
    let mut call = |nr, args| ctx.remote_syscall(pid, nr, args);
    let mut t = Task {
        tid: pid,
        call: &mut call,
    };
    let pidfd = t.sys("pidfd_open", libc::SYS_pidfd_open, [me, 0, 0, 0, 0, 0])?;
    let trd = t.sys(
        "pidfd_getfd",
        libc::SYS_pidfd_getfd,
        [pidfd, rd.as_raw_fd() as u64, 0, 0, 0, 0],
    );
    let closed = t.close(pidfd);
    let trd = trd?;
    closed?;
    drop(rd);
    let r = copy_in(ctx, pid, rec, off, len, (&wr, trd, piece));
    let mut call = |nr, args| ctx.remote_syscall(pid, nr, args);
    let closed = Task {
        tid: pid,
        call: &mut call,
    }
    .close(trd);
    r.and(closed)
}

/// Decrypts one content file at a time into a wiped buffer and feeds it to the task.
fn copy_in(
    ctx: &mut dyn RestoreContext,
    pid: i32,
    rec: &VmaRec,
    off: u64,
    len: u64,
    pipe: (&OwnedFd, u64, usize),
) -> Result<(), PluginError> {
    let (wr, trd, piece) = pipe;
    let base = rec.start + (off - rec.pgoff);
    let mut done = 0u64;
    let mut n = 0u64;
    while done < len {
        let name = chunk_file(rec.inode, off, n);
        let bytes = ctx
            .read_plugin_file(&name)?
            .ok_or_else(|| PluginError::bad_image(&name, "missing"))?;
        let st = ctx.state::<RestoreState>()?;
        let data: Zeroizing<Vec<u8>> =
            open(st.key.as_ref(), &name, &st.index.dump_id, bytes).map_err(|e| seal_err(pid, e))?;
        let want = (len - done).min(CHUNK);
        if data.len() as u64 != want {
            return Err(PluginError::bad_image(
                &name,
                format!("holds {} bytes, the range needs {want}", data.len()),
            ));
        }
        for part in data.chunks(piece) {
            nix::unistd::write(wr.as_fd(), part)
                .map_err(|e| PluginError::Task {
                    pid,
                    op: "write to the secret pipe".into(),
                    source: Box::new(e),
                })
                .and_then(|k| {
                    (k == part.len())
                        .then_some(())
                        .ok_or_else(|| PluginError::Task {
                            pid,
                            op: "write to the secret pipe".into(),
                            source: format!("short write: {k} of {}", part.len()).into(),
                        })
                })?;
            let mut at = 0usize;
            while at < part.len() {
                let addr = base + done + at as u64;
                let mut call = |nr, args| ctx.remote_syscall(pid, nr, args);
                let got = Task {
                    tid: pid,
                    call: &mut call,
                }
                .sys(
                    "read",
                    libc::SYS_read,
                    [trd, addr, (part.len() - at) as u64, 0, 0, 0],
                )?;
                if got == 0 {
                    return Err(PluginError::Task {
                        pid,
                        op: format!("remote read of secret pages at {addr:#x}"),
                        source: "end of file".into(),
                    });
                }
                at += got as usize;
            }
            done += part.len() as u64;
        }
        n += 1;
    }
    Ok(())
}
