//! Restoring pipe and FIFO descriptions.

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use criu_plugin_api::{
    FileRestorer, ImageCursor, ImageRef, PluginError, RestoreContext, read_messages,
};
use criu_proto::images::{FdTypes, FileEntry, PipeDataEntry, RemapFilePathEntry, RemapType};
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl, open};
use nix::sys::stat::{Mode, fstat};
use nix::unistd::pipe2;

use crate::NAME;
use crate::data::{self, PipeData};

/// `O_LARGEFILE` marks a pipe description that was reopened through `/proc` (pipe2 never
/// sets it): CRIU uses it to tell original ends from reopened ones, and so do we.
/// The kernel's value: `libc::O_LARGEFILE` is 0 on 64-bit targets (the C library adds it
/// implicitly there), but the kernel reports the real bit in fdinfo flags.
#[cfg(any(target_arch = "aarch64", target_arch = "arm"))]
pub(crate) const O_LARGEFILE: u32 = 0o400000;
#[cfg(any(target_arch = "powerpc64", target_arch = "powerpc"))]
pub(crate) const O_LARGEFILE: u32 = 0o200000;
#[cfg(not(any(
    target_arch = "aarch64",
    target_arch = "arm",
    target_arch = "powerpc64",
    target_arch = "powerpc"
)))]
pub(crate) const O_LARGEFILE: u32 = 0o100000;
const O_WRONLY: u32 = libc::O_WRONLY as u32;
/// Flags an `open()` must not see again on restore.
const OPEN_ONLY: u32 = (libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_NOCTTY) as u32;

/// What `start_restore` read, used by `open_file`.
#[derive(Debug, Default)]
struct Prepared {
    /// `pipes-data.img` by pipe id; taken out when written into the new pipe.
    pipe_data: HashMap<u32, PipeData>,
    /// `fifo-data.img` by pipe id; taken out when written.
    fifo_data: HashMap<u32, PipeData>,
    /// Path and flags of each REG entry, by file id (a FIFO entry names its REG entry).
    reg_files: HashMap<u32, (String, u32)>,
    /// `remap-fpath.img` by REG entry id: an unlinked FIFO's path is remapped to a ghost.
    remaps: HashMap<u32, RemapFilePathEntry>,
    /// File ids of the descriptions that get the pipe's original ends (one per pipe and
    /// direction, the first one not reopened at dump time); the others are reopened.
    masters: HashSet<u32>,
}

/// One restore's pipes and FIFOs: what the data images say and which descriptions get the
/// original pipe ends. The pipes themselves are kept in the context (inherited by tasks
/// forked later, like this restorer).
#[derive(Debug)]
pub(crate) struct PipesRestorer {
    prepared: Prepared,
}

fn restore_error(entry: &FileEntry, what: String, op: &'static str, e: Errno) -> PluginError {
    PluginError::Restore {
        id: entry.id,
        what,
        op,
        source: e.into(),
    }
}

impl PipesRestorer {
    pub(crate) fn start(
        ctx: &mut dyn RestoreContext,
        entries: &[FileEntry],
    ) -> Result<Self, PluginError> {
        let mut p = Prepared {
            pipe_data: read_data(ctx, ImageRef::PIPES_DATA)?,
            fifo_data: read_data(ctx, ImageRef::FIFO_DATA)?,
            remaps: read_messages::<RemapFilePathEntry>(ctx, ImageRef::REMAP_FPATH)?
                .into_iter()
                .map(|r| (r.orig_id, r))
                .collect(),
            ..Prepared::default()
        };
        let mut seen_ends = HashSet::new();
        for e in entries {
            if let Some(reg) = &e.reg {
                p.reg_files.insert(e.id, (reg.name.clone(), reg.flags));
            }
            if let Some(pipe) = e.pipe.as_ref().filter(|_| e.r#type == FdTypes::Pipe as i32) {
                let write = pipe.flags & O_WRONLY != 0;
                if pipe.flags & O_LARGEFILE == 0 && seen_ends.insert((pipe.pipe_id, write)) {
                    p.masters.insert(e.id);
                }
            }
        }
        tracing::debug!(
            pipes_with_data = p.pipe_data.len(),
            fifos_with_data = p.fifo_data.len(),
            "pipes prepared"
        );
        Ok(PipesRestorer { prepared: p })
    }
}

impl FileRestorer for PipesRestorer {
    fn open_file(
        &mut self,
        ctx: &mut dyn RestoreContext,
        entry: &FileEntry,
    ) -> Result<OwnedFd, PluginError> {
        let prepared = &mut self.prepared;
        match (entry.pipe.as_ref(), entry.fifo.as_ref()) {
            (Some(pipe), _) if entry.r#type == FdTypes::Pipe as i32 => {
                open_pipe(ctx, prepared, entry, pipe.pipe_id, pipe.flags)
            }
            (_, Some(fifo)) if entry.r#type == FdTypes::Fifo as i32 => {
                let reg_id = fifo.regf_id.ok_or_else(|| {
                    PluginError::bad_image("files.img", format!("FIFO {} has no regf_id", entry.id))
                })?;
                open_fifo(ctx, prepared, entry, fifo.pipe_id, reg_id)
            }
            _ => Err(PluginError::bad_image(
                "files.img",
                format!("file id {} is not a pipe or FIFO entry", entry.id),
            )),
        }
    }
}

/// Every entry of a pipe data image, by pipe id.
fn read_data(
    ctx: &mut dyn RestoreContext,
    image: ImageRef,
) -> Result<HashMap<u32, PipeData>, PluginError> {
    let mut out = HashMap::new();
    let Some(body) = ctx.read_image(image)? else {
        return Ok(out);
    };
    let mut cursor = ImageCursor::new(image, &body);
    while let Some(e) = cursor.next_entry::<PipeDataEntry>()? {
        let bytes = cursor.raw(e.bytes as usize)?.to_vec();
        let data = PipeData {
            size: e.size,
            bytes,
        };
        if out.insert(e.pipe_id, data).is_some() {
            return Err(PluginError::bad_image(
                image.to_string(),
                format!("two data entries for pipe {}", e.pipe_id),
            ));
        }
    }
    Ok(out)
}

fn open_pipe(
    ctx: &mut dyn RestoreContext,
    prepared: &mut Prepared,
    entry: &FileEntry,
    pipe_id: u32,
    flags: u32,
) -> Result<OwnedFd, PluginError> {
    let what = format!("pipe:[{pipe_id}]");
    let write = flags & O_WRONLY != 0;
    let key_r = format!("{NAME}:pipe:{pipe_id}:r");
    let key_w = format!("{NAME}:pipe:{pipe_id}:w");
    if ctx.kept_fd(&key_r).is_none() {
        // First description of this pipe in this lineage: create it and fill it.
        let (r, w) = pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
            .map_err(|e| restore_error(entry, what.clone(), "pipe2", e))?;
        if let Some(data) = prepared.pipe_data.remove(&pipe_id) {
            tracing::debug!(pipe_id, bytes = data.bytes.len(), "restoring pipe data");
            data::fill(w.as_fd(), &data)
                .map_err(|(op, e)| restore_error(entry, what.clone(), op, e))?;
        }
        ctx.keep_fd(&key_r, r)?;
        ctx.keep_fd(&key_w, w)?;
    }
    let key = if write { &key_w } else { &key_r };
    let kept = ctx.kept_fd(key).ok_or_else(|| {
        PluginError::bad_image(
            "files.img",
            format!("{what}: the restore context lost a kept end"),
        )
    })?;
    if prepared.masters.contains(&entry.id) {
        // The original end: same description as the kept one, flags set to the dumped ones.
        let fd = kept
            .try_clone_to_owned()
            .map_err(|e| PluginError::Restore {
                id: entry.id,
                what: what.clone(),
                op: "dup",
                source: e,
            })?;
        set_flags(fd.as_fd(), flags)
            .map_err(|e| restore_error(entry, what, "fcntl(F_SETFL)", e))?;
        Ok(fd)
    } else {
        reopen(kept, flags).map_err(|e| restore_error(entry, what, "open(/proc/self/fd)", e))
    }
}

fn open_fifo(
    ctx: &mut dyn RestoreContext,
    prepared: &mut Prepared,
    entry: &FileEntry,
    pipe_id: u32,
    reg_id: u32,
) -> Result<OwnedFd, PluginError> {
    let (path, flags) = prepared.reg_files.get(&reg_id).cloned().ok_or_else(|| {
        PluginError::bad_image(
            "files.img",
            format!(
                "FIFO {} names REG entry {reg_id}, which is missing",
                entry.id
            ),
        )
    })?;
    let key = format!("{NAME}:fifo:{pipe_id}");
    let ghost = match prepared.remaps.get(&reg_id) {
        None => None,
        Some(r) if r.remap_type == Some(RemapType::Ghost as i32) => Some(r.remap_id),
        Some(r) => {
            return Err(PluginError::Unsupported {
                resource: format!(
                    "FIFO {path} (file id {reg_id}, remap type {:?})",
                    r.remap_type
                ),
                pid: ctx.current_pid(),
                hint: "only unlinked FIFOs (ghost remaps) are supported, no --link-remap".into(),
            });
        }
    };
    if ctx.kept_fd(&key).is_none() {
        // Holding the FIFO open read-write keeps later opens of either end from blocking.
        let holder = match ghost {
            None => open(path.as_str(), HOLDER_FLAGS, Mode::empty())
                .map_err(|e| PluginError::path(&path, "open(O_RDWR) of FIFO", e))?,
            Some(ghost_id) => open_ghost(ctx, ghost_id, &path)?,
        };
        if let Some(data) = prepared.fifo_data.remove(&pipe_id) {
            tracing::debug!(
                pipe_id,
                bytes = data.bytes.len(),
                path,
                "restoring FIFO data"
            );
            data::fill(holder.as_fd(), &data)
                .map_err(|(op, e)| restore_error(entry, path.clone(), op, e))?;
        }
        ctx.keep_fd(&key, holder)?;
    }
    if ghost.is_some() {
        // No path any more: every description reopens the kept holder's inode.
        let kept = ctx.kept_fd(&key).ok_or_else(|| {
            PluginError::bad_image(
                "files.img",
                format!("FIFO {path}: the restore context lost its holder"),
            )
        })?;
        return reopen(kept, flags)
            .map_err(|e| restore_error(entry, path, "open(/proc/self/fd)", e));
    }
    let fd = open(path.as_str(), open_flags(flags), Mode::empty())
        .map_err(|e| PluginError::path(&path, "open of FIFO", e))?;
    if flags & libc::O_ASYNC as u32 != 0 {
        set_flags(fd.as_fd(), flags).map_err(|e| PluginError::path(&path, "fcntl(F_SETFL)", e))?;
    }
    Ok(fd)
}

const HOLDER_FLAGS: OFlag = OFlag::O_RDWR
    .union(OFlag::O_NONBLOCK)
    .union(OFlag::O_CLOEXEC);

/// The holder of unlinked FIFO `ghost_id`: the files plugin recreates it (a temporary FIFO
/// next to `path`, removed at once) and hands back an `O_PATH` fd, reopened read-write here.
fn open_ghost(
    ctx: &mut dyn RestoreContext,
    ghost_id: u32,
    path: &str,
) -> Result<OwnedFd, PluginError> {
    let node = criu_plugin_files::ghost_restore::restore(ctx, ghost_id, path)?;
    let st = fstat(node.as_fd()).map_err(|e| PluginError::path(path, "fstat of ghost", e))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFIFO {
        return Err(PluginError::bad_image(
            ImageRef::ghost_file(ghost_id).to_string(),
            format!("ghost of FIFO {path} is not a FIFO (mode {:o})", st.st_mode),
        ));
    }
    let proc_path = format!("/proc/self/fd/{}", node.as_raw_fd());
    open(proc_path.as_str(), HOLDER_FLAGS, Mode::empty())
        .map_err(|e| PluginError::path(path, "open(O_RDWR) of ghost FIFO", e))
}

/// The flags to open a description with: the dumped ones minus creation-time flags, plus
/// close-on-exec (the core sets the task's own fd flags when installing the fd).
fn open_flags(flags: u32) -> OFlag {
    OFlag::from_bits_retain((flags & !OPEN_ONLY) as i32) | OFlag::O_CLOEXEC
}

/// Sets the status flags (`O_NONBLOCK`, `O_ASYNC`, ...) of a description.
fn set_flags(fd: BorrowedFd<'_>, flags: u32) -> Result<(), Errno> {
    fcntl(fd, FcntlArg::F_SETFL(OFlag::from_bits_retain(flags as i32))).map(drop)
}

/// A new description of the pipe behind `kept`, opened with `flags`.
fn reopen(kept: BorrowedFd<'_>, flags: u32) -> Result<OwnedFd, Errno> {
    let path = format!("/proc/self/fd/{}", kept.as_raw_fd());
    let fd = open(path.as_str(), open_flags(flags), Mode::empty())?;
    // open() ignores O_ASYNC; F_SETFL applies it (and leaves the rest as opened).
    if flags & libc::O_ASYNC as u32 != 0 {
        set_flags(fd.as_fd(), flags)?;
    }
    Ok(fd)
}
