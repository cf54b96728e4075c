//! Dumping pipe and FIFO descriptions.

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, OwnedFd};

use criu_plugin_api::{DumpContext, FdDesc, ImageRef, PluginError, write_message};
use criu_proto::images::{
    FdTypes, FifoEntry, FileEntry, PipeDataEntry, PipeEntry, RegFileEntry, RemapFilePathEntry,
    RemapType,
};
use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;

use crate::data::{self, PipeData};

/// What one dump remembers across fds and tasks.
#[derive(Debug, Default)]
pub(crate) struct DumpState {
    /// The pipes whose buffered data is written, by image and pipe id (both ends, several
    /// descriptions and several tasks share one pipe).
    data_written: HashSet<(ImageRef, u32)>,
    /// Ghost ids of the unlinked FIFOs dumped so far, by pipe id.
    ghosts: HashMap<u32, u32>,
}

/// Ghost ids of FIFOs: the REG entry's file id with this bit set, a range the files
/// plugin's ghost count (from 1) never reaches, so the two plugins' ids cannot meet.
const FIFO_GHOST_BIT: u32 = 1 << 31;

/// `O_DIRECT` on a pipe means packet mode, which we cannot restore faithfully.
const O_DIRECT: u32 = libc::O_DIRECT as u32;
const O_ACCMODE: u32 = libc::O_ACCMODE as u32;

/// CRIU's `pipe_id`: the pipe (or FIFO) inode number, which CRIU keeps as 32 bits.
fn pipe_id(fd: &FdDesc) -> u32 {
    fd.stat.ino as u32
}

fn fd_error(fd: &FdDesc, (op, e): data::StepError) -> PluginError {
    PluginError::Fd {
        pid: fd.pid,
        fd: fd.fd,
        link: fd.link.clone(),
        op,
        source: e.into(),
    }
}

/// A PIPE entry for `fd`; the pipe's data goes to `pipes-data.img` once per pipe.
pub(crate) fn dump_pipe(
    ctx: &mut dyn DumpContext,
    fd: &FdDesc,
    id: u32,
) -> Result<FileEntry, PluginError> {
    let flags = fd.fdinfo.file_flags();
    if flags & O_DIRECT != 0 {
        return Err(PluginError::Unsupported {
            resource: fd.describe(),
            pid: fd.pid,
            hint: "pipes in packet mode (O_DIRECT) are not supported".into(),
        });
    }
    let pipe_id = pipe_id(fd);
    tracing::debug!(pid = fd.pid, fd = fd.fd, id, pipe_id, flags, "dumping pipe");
    dump_data_once(ctx, fd, pipe_id, ImageRef::PIPES_DATA)?;
    Ok(FileEntry {
        r#type: FdTypes::Pipe as i32,
        id,
        pipe: Some(PipeEntry {
            id,
            pipe_id,
            flags,
            fown: fd.owner.to_entry(),
        }),
        ..Default::default()
    })
}

/// A FIFO entry for `fd`, plus (under a fresh id) the REG entry holding its path, as CRIU
/// writes them; the FIFO's data goes to `fifo-data.img` once per FIFO. An unlinked FIFO
/// also gets, as in CRIU, a ghost image (once per FIFO) and a remap entry for its REG entry.
pub(crate) fn dump_fifo(
    ctx: &mut dyn DumpContext,
    fd: &FdDesc,
    id: u32,
) -> Result<FileEntry, PluginError> {
    let (path, deleted) = fd.path_and_deleted();
    let flags = fd.fdinfo.file_flags();
    let pipe_id = pipe_id(fd);
    let regf_id = ctx.new_file_id();
    if fd.stat.nlink == 0 {
        let ghost_id = ghost_once(ctx, fd, pipe_id, regf_id)?;
        let remap = RemapFilePathEntry {
            orig_id: regf_id,
            remap_id: ghost_id,
            remap_type: Some(RemapType::Ghost as i32),
        };
        write_message(ctx, ImageRef::REMAP_FPATH, &remap, &[])?;
    } else if deleted {
        return Err(PluginError::Unsupported {
            resource: fd.describe(),
            pid: fd.pid,
            hint: "the FIFO was unlinked but has other hard links; link remaps (--link-remap) are not supported yet".into(),
        });
    }
    tracing::debug!(
        pid = fd.pid,
        fd = fd.fd,
        id,
        pipe_id,
        regf_id,
        path,
        "dumping fifo"
    );
    let reg = RegFileEntry {
        id: regf_id,
        flags,
        pos: 0,
        fown: fd.owner.to_entry(),
        name: path.to_string(),
        mode: Some(fd.stat.mode),
        ..Default::default()
    };
    let reg_entry = FileEntry {
        r#type: FdTypes::Reg as i32,
        id: regf_id,
        reg: Some(reg),
        ..Default::default()
    };
    write_message(ctx, ImageRef::FILES, &reg_entry, &[])?;
    dump_data_once(ctx, fd, pipe_id, ImageRef::FIFO_DATA)?;
    Ok(FileEntry {
        r#type: FdTypes::Fifo as i32,
        id,
        fifo: Some(FifoEntry {
            id,
            pipe_id,
            regf_id: Some(regf_id),
        }),
        ..Default::default()
    })
}

/// The ghost id of the unlinked FIFO behind `fd`, writing its image (metadata only: the
/// data travels in `fifo-data.img`) the first time this dump meets the FIFO.
fn ghost_once(
    ctx: &mut dyn DumpContext,
    fd: &FdDesc,
    pipe_id: u32,
    regf_id: u32,
) -> Result<u32, PluginError> {
    if let Some(&id) = ctx.state::<DumpState>()?.ghosts.get(&pipe_id) {
        return Ok(id);
    }
    let id = regf_id | FIFO_GHOST_BIT;
    criu_plugin_files::ghost::dump(ctx, fd, id)?;
    ctx.state::<DumpState>()?.ghosts.insert(pipe_id, id);
    Ok(id)
}

/// Writes the data buffered in the pipe of `fd` to `image`, unless this dump already did for
/// this pipe (both ends, several descriptions and several tasks share one pipe).
fn dump_data_once(
    ctx: &mut dyn DumpContext,
    fd: &FdDesc,
    pipe_id: u32,
    image: ImageRef,
) -> Result<(), PluginError> {
    if ctx
        .state::<DumpState>()?
        .data_written
        .contains(&(image, pipe_id))
    {
        return Ok(());
    }
    let data = read_buffered(fd)?;
    tracing::debug!(pipe_id, bytes = data.bytes.len(), size = ?data.size, "pipe data");
    let entry = PipeDataEntry {
        pipe_id,
        bytes: u32::try_from(data.bytes.len()).map_err(|_| PluginError::Unsupported {
            resource: fd.describe(),
            pid: fd.pid,
            hint: "more than 4 GiB buffered in a pipe".into(),
        })?,
        size: data.size,
    };
    write_message(ctx, image, &entry, &data.bytes)?;
    ctx.state::<DumpState>()?
        .data_written
        .insert((image, pipe_id));
    Ok(())
}

/// The pipe's buffered data. `tee` needs a read end: a write end is reopened read-only
/// through `/proc/self/fd` (a new description of the same pipe, closed right after).
fn read_buffered(fd: &FdDesc) -> Result<PipeData, PluginError> {
    if fd.fdinfo.file_flags() & O_ACCMODE == libc::O_RDONLY as u32 {
        return data::capture(fd.file()).map_err(|e| fd_error(fd, e));
    }
    let path = fd.reopen_path();
    let reader: OwnedFd = open(
        path.as_str(),
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| fd_error(fd, ("open(/proc/self/fd, O_RDONLY)", e)))?;
    data::capture(reader.as_fd()).map_err(|e| fd_error(fd, e))
}
