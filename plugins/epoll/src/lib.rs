//! Built-in plugin for epoll instances (`anon_inode:[eventpoll]`), CRIU 4.x format.
//!
//! Dump: a `files.img` EVENTPOLL entry (`file_entry.epfd`: id, flags, owner and one
//! `eventpoll_tfd_entry` per registration: target fd number, events, data, target pos/ino/dev)
//! per epoll description, from the epoll's fdinfo. Each registration's target is found with
//! `kcmp(KCMP_EPOLL_TFD)`: the fd at the registered number when it still is the target, else
//! any fd of the tree that is (the number was closed or reused while another fd or task keeps
//! the file); its `id` is that description's file id. A target no task holds as an fd (only
//! in flight, or outside the tree) is refused: the kernel offers no way to reach it.
//!
//! Restore: the epoll is created empty by [`FileRestorer::open_file`]; its registrations are
//! added in the restorer's `finish`, by a remote `epoll_ctl(EPOLL_CTL_ADD)` in a task holding
//! the epoll, under the dumped number, so that the task's own later `EPOLL_CTL_MOD`/`DEL` on
//! that number finds it; a target the task holds elsewhere or not at all is put at that number
//! for the call only. An epoll in flight is lent to a task for its registrations.

#![deny(unsafe_code)]
#![warn(missing_docs)]

mod dump;
mod fdinfo;
mod locate;
mod remote;
mod restore;
mod sys;

use criu_plugin_api::{
    API_VERSION, DumpContext, FdDesc, FdHandler, FileRestorer, Plugin, PluginError, PluginInfo,
    PluginRegistration, RestoreContext,
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
        Ok(Box::<restore::EpollRestorer>::default())
    }
}

#[cfg(test)]
mod tests;
