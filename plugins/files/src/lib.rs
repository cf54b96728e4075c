//! Built-in plugin for files reached by a path: regular files, directories, character and
//! block devices (`/dev/null` is a CRIU REG entry like any file), symlinks held with `O_PATH`,
//! and files that were unlinked while open ("ghost" files, carried in the images).
//!
//! Dump: one `files.img` REG entry per description (path, flags with `O_APPEND` & co, offset,
//! mode, and size for regular files as CRIU does). An unlinked regular file also gets a
//! `ghost-file-<id>.img` with its contents (bounded by `--ghost-limit`) and a
//! `remap-fpath.img` entry tying the file id to the ghost id; a removed directory or device
//! node gets a ghost image without contents (mode, owner, times, device number), and so
//! does an unlinked FIFO, dumped by the pipes plugin with [`ghost::dump`], and a removed
//! symlink held with `O_PATH` (its target). A file whose open name was removed while other
//! names remain gets a link remap with `--link-remap` (module `link_remap`). An fd of a namespace
//! file is an NS_FILE entry (module `nsfile`).
//!
//! Restore: the path is opened with the saved flags (never creating or truncating), checked
//! to be the dumped file where CRIU checks it (mode; size of regular files), and positioned
//! at the saved offset. A ghost is recreated once as a temporary file (directory, device node)
//! next to its old path, removed at once, and every description of it reopens that inode.
//! A file under `/proc/PID/` of a task of the tree is opened once the tasks exist
//! (stand-ins replaced at the `after-tasks-exist` stage).

#![deny(unsafe_code)]
#![warn(missing_docs)]

mod dump;
mod flags;
pub mod ghost;
pub mod ghost_restore;
mod link_remap;
mod nsfile;
mod proc_files;
mod restore;

use criu_plugin_api::{
    API_VERSION, DumpContext, DumpStage, FdDesc, FdHandler, FileRestorer, Plugin, PluginError,
    PluginInfo, PluginRegistration, PluginState, RestoreContext, RestoreStage, RunKind, StageHooks,
};
use criu_proto::images::{FdTypes, FileEntry};

/// The plugin's name, also the prefix of its memo and kept-fd keys.
pub const NAME: &str = "files";

/// Files by path (stateless: each restore gets its own restorer).
#[derive(Debug, Default)]
pub struct FilesPlugin;

/// The registered instance.
pub static PLUGIN: FilesPlugin = FilesPlugin;

inventory::submit! { PluginRegistration::new(&PLUGIN) }

impl Plugin for FilesPlugin {
    fn info(&self) -> PluginInfo {
        PluginInfo {
            name: NAME,
            version: env!("CARGO_PKG_VERSION"),
            // Generic "anything with a path" handler: asked after more specific plugins.
            priority: 200,
            api_version: API_VERSION,
        }
    }

    fn fd_handler(&self) -> Option<&dyn FdHandler> {
        Some(self)
    }

    fn new_state(&self, run: RunKind) -> Result<Option<PluginState>, PluginError> {
        Ok(Some(match run {
            RunKind::Dump => Box::new(dump::DumpState::default()) as PluginState,
            RunKind::Restore => Box::new(proc_files::RestoreState::default()) as PluginState,
        }))
    }

    fn stage_hooks(&self) -> Option<&dyn StageHooks> {
        Some(self)
    }
}

impl StageHooks for FilesPlugin {
    fn dump_stages(&self) -> &[DumpStage] {
        &[DumpStage::AfterDump, DumpStage::Failed]
    }

    fn dump_stage(&self, stage: DumpStage, ctx: &mut dyn DumpContext) -> Result<(), PluginError> {
        match stage {
            DumpStage::Failed => link_remap::remove_dumped(ctx),
            // A tree that runs on keeps its own names; the links were for its restore only.
            DumpStage::AfterDump if ctx.options().leave_running => link_remap::remove_dumped(ctx),
            _ => Ok(()),
        }
    }

    fn restore_stages(&self) -> &[RestoreStage] {
        &[RestoreStage::AfterTasksExist, RestoreStage::BeforeResume]
    }

    fn restore_stage(
        &self,
        stage: RestoreStage,
        ctx: &mut dyn RestoreContext,
    ) -> Result<(), PluginError> {
        match stage {
            RestoreStage::AfterTasksExist => proc_files::install(ctx),
            RestoreStage::BeforeResume => link_remap::remove_restored(ctx),
            _ => Ok(()),
        }
    }
}

/// Links of files with a path that belong to other kinds of resources (future plugins).
const NOT_OURS: &[&str] = &["/memfd:", "/secretmem", "/SYSV"];

impl FdHandler for FilesPlugin {
    fn fd_types(&self) -> &[FdTypes] {
        &[FdTypes::Reg, FdTypes::Ns]
    }

    fn claims(&self, fd: &FdDesc) -> bool {
        let st = &fd.stat;
        if nsfile::claims(fd) {
            return true;
        }
        fd.link.starts_with('/')
            && !NOT_OURS.iter().any(|p| fd.link.starts_with(p))
            && matches!(
                st.file_type(),
                // Symlinks: `O_PATH | O_NOFOLLOW` fds of the link itself.
                libc::S_IFREG | libc::S_IFDIR | libc::S_IFCHR | libc::S_IFBLK | libc::S_IFLNK
            )
    }

    fn dump_file(
        &self,
        ctx: &mut dyn DumpContext,
        fd: &FdDesc,
        id: u32,
    ) -> Result<FileEntry, PluginError> {
        if !fd.link.starts_with('/') && nsfile::claims(fd) {
            return nsfile::dump(fd, id);
        }
        dump::dump_file(ctx, fd, id)
    }

    fn start_restore(
        &self,
        ctx: &mut dyn RestoreContext,
        entries: &[FileEntry],
    ) -> Result<Box<dyn FileRestorer>, PluginError> {
        Ok(Box::new(restore::FilesRestorer::start(ctx, entries)?))
    }
}

#[cfg(test)]
mod tests;
