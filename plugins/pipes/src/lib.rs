//! Built-in plugin for pipes (`pipe:[ino]`) and FIFOs (named pipes), CRIU 4.x format.
//!
//! Dump: a pipe description becomes a `files.img` PIPE entry (`pipe_id` = the pipe's inode,
//! flags); a FIFO a FIFO entry plus a REG entry holding its path (as CRIU writes it). The
//! buffered data of each pipe is written once per `pipe_id` (`pipes-data.img` /
//! `fifo-data.img`), copied with `tee()` so the task keeps it. An unlinked FIFO's REG entry
//! is remapped, as in CRIU, to a ghost image (mode `S_IFIFO`, no contents) written with the
//! files plugin's ghost code.
//!
//! Restore: one `pipe2()` per `pipe_id` (a FIFO: one `O_RDWR` open of its path), pipe size
//! and data restored once, both ends kept in the restore context; each description is then
//! a fresh open of `/proc/self/fd/<kept end>` with its own flags, so every description is
//! distinct, as it was in the dumped tree. An unlinked FIFO is recreated by the files
//! plugin's ghost code at a temporary name and removed at once; its descriptions reopen the
//! kept holder.

#![deny(unsafe_code)]
#![warn(missing_docs)]

mod data;
mod dump;
mod restore;

use criu_plugin_api::{
    API_VERSION, DumpContext, FdDesc, FdHandler, FileRestorer, Plugin, PluginError, PluginInfo,
    PluginRegistration, PluginState, RestoreContext, RunKind,
};
use criu_proto::images::{FdTypes, FileEntry};

/// The plugin's name, also the prefix of its memo and kept-fd keys.
pub const NAME: &str = "pipes";

/// Pipes and FIFOs (stateless: each restore gets its own restorer).
#[derive(Debug, Default)]
pub struct PipesPlugin;

/// The registered instance.
pub static PLUGIN: PipesPlugin = PipesPlugin;

inventory::submit! { PluginRegistration::new(&PLUGIN) }

impl Plugin for PipesPlugin {
    fn info(&self) -> PluginInfo {
        PluginInfo {
            name: NAME,
            version: env!("CARGO_PKG_VERSION"),
            priority: 100,
            api_version: API_VERSION,
        }
    }

    fn fd_handler(&self) -> Option<&dyn FdHandler> {
        Some(self)
    }

    fn new_state(&self, run: RunKind) -> Result<Option<PluginState>, PluginError> {
        // Only the dump has state of its own (the restore's is in the restorer).
        Ok((run == RunKind::Dump).then(|| Box::new(dump::DumpState::default()) as PluginState))
    }
}

/// What kind of pipe an fd is.
enum Kind {
    Pipe,
    Fifo,
}

fn kind_of(fd: &FdDesc) -> Option<Kind> {
    if !fd.stat.is_fifo() {
        return None;
    }
    if fd.anon_inode_of("pipe").is_some() {
        Some(Kind::Pipe)
    } else if fd.link.starts_with('/') {
        Some(Kind::Fifo)
    } else {
        None
    }
}

impl FdHandler for PipesPlugin {
    fn fd_types(&self) -> &[FdTypes] {
        &[FdTypes::Pipe, FdTypes::Fifo]
    }

    fn claims(&self, fd: &FdDesc) -> bool {
        kind_of(fd).is_some()
    }

    fn dump_file(
        &self,
        ctx: &mut dyn DumpContext,
        fd: &FdDesc,
        id: u32,
    ) -> Result<FileEntry, PluginError> {
        match kind_of(fd) {
            Some(Kind::Pipe) => dump::dump_pipe(ctx, fd, id),
            Some(Kind::Fifo) => dump::dump_fifo(ctx, fd, id),
            None => Err(PluginError::Unsupported {
                resource: fd.describe(),
                pid: fd.pid,
                hint: "the pipes plugin was asked to dump something that is not a pipe".into(),
            }),
        }
    }

    fn start_restore(
        &self,
        ctx: &mut dyn RestoreContext,
        entries: &[FileEntry],
    ) -> Result<Box<dyn FileRestorer>, PluginError> {
        Ok(Box::new(restore::PipesRestorer::start(ctx, entries)?))
    }
}

#[cfg(test)]
mod tests;
