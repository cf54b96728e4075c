//! Built-in plugin for epoll instances (`anon_inode:[eventpoll]`), CRIU 4.x format.
//!
//! Dump: a `files.img` EVENTPOLL entry (`file_entry.epfd`: id, flags, owner and one
//! `eventpoll_tfd_entry` per registration: target fd number, events, data, target pos/ino/dev)
//! per epoll description, from the epoll's fdinfo. Each registration is checked with
//! `kcmp(KCMP_EPOLL_TFD)` to be the file the task holds at that fd number, and its `id` is
//! that fd's file id. A registration whose file the task no longer holds at that number
//! (closed, or the number reused) is refused: the kernel keys a registration by
//! (file, fd number), so it could not be re-created.
//!
//! Restore: the epoll is created empty by [`FileRestorer::open_file`]; its registrations are
//! added once every task exists ([`RestoreStage::AfterTasksExist`]), by a remote
//! `epoll_ctl(EPOLL_CTL_ADD)` in a task holding the epoll and the target at the dumped fd
//! number, so that the task's own later `EPOLL_CTL_MOD`/`DEL` on that number finds it.

#![deny(unsafe_code)]
#![warn(missing_docs)]

mod dump;
mod fdinfo;
mod restore;

use criu_plugin_api::{
    API_VERSION, DumpContext, FdDesc, FdHandler, FileRestorer, Plugin, PluginError, PluginInfo,
    PluginRegistration, RestoreContext, RestoreStage, StageHooks,
};
use criu_proto::images::{FdTypes, FileEntry};

pub use fdinfo::{ParseError, Registration, parse_registrations};

/// The plugin's name.
pub const NAME: &str = "epoll";

/// The `/proc/PID/fd/N` link of an epoll fd.
pub const LINK: &str = "anon_inode:[eventpoll]";

/// Epoll instances (stateless: each restore gets its own restorer).
#[derive(Debug, Default)]
pub struct EpollPlugin;

/// The registered instance.
pub static PLUGIN: EpollPlugin = EpollPlugin;

inventory::submit! { PluginRegistration::new(&PLUGIN) }

impl Plugin for EpollPlugin {
    fn info(&self) -> PluginInfo {
        PluginInfo {
            name: NAME,
            version: env!("CARGO_PKG_VERSION"),
            priority: 120,
            api_version: API_VERSION,
        }
    }

    fn fd_handler(&self) -> Option<&dyn FdHandler> {
        Some(self)
    }

    fn stage_hooks(&self) -> Option<&dyn StageHooks> {
        Some(self)
    }
}

impl FdHandler for EpollPlugin {
    fn fd_types(&self) -> &[FdTypes] {
        &[FdTypes::Eventpoll]
    }

    fn claims(&self, fd: &FdDesc) -> bool {
        fd.link == LINK
    }

    fn dump_file(
        &self,
        ctx: &mut dyn DumpContext,
        fd: &FdDesc,
        id: u32,
    ) -> Result<FileEntry, PluginError> {
        dump::dump_epoll(ctx, fd, id)
    }

    fn start_restore(
        &self,
        _ctx: &mut dyn RestoreContext,
        _entries: &[FileEntry],
    ) -> Result<Box<dyn FileRestorer>, PluginError> {
        Ok(Box::new(restore::EpollRestorer))
    }
}

impl StageHooks for EpollPlugin {
    fn restore_stages(&self) -> &[RestoreStage] {
        &[RestoreStage::AfterTasksExist]
    }

    fn restore_stage(
        &self,
        stage: RestoreStage,
        ctx: &mut dyn RestoreContext,
    ) -> Result<(), PluginError> {
        match stage {
            RestoreStage::AfterTasksExist => restore::add_registrations(ctx),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests;
