//! Built-in plugin for timerfds (`anon_inode:[timerfd]`), CRIU's format: a `files.img`
//! TIMERFD entry (`file_entry.tfd`: id, file flags, owner, clock, unread ticks, settime
//! flags, remaining time, period) per open file description.
//!
//! Dump: fdinfo of criu's duplicate of the fd, read between two readings of the timer's
//! clock; the clock's time goes into our fields `criu_rs_clock_sec`/`criu_rs_clock_nsec`
//! (1001, 1002) so that the restore knows when the remaining time was taken.
//!
//! Restore: `timerfd_create(clock, TFD_NONBLOCK?)` when the description is opened, armed in
//! `finish` with the same settime flags (`TFD_TIMER_ABSTIME`, `TFD_TIMER_CANCEL_ON_SET`),
//! period and phase, and the unread ticks plus those missed between dump and restore set
//! with `TFD_IOC_SET_TICKS` (see [`rearm`] for the choice and CRIU's way).

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod dump;
pub mod rearm;
pub mod restore;
mod sys;

use criu_plugin_api::{
    API_VERSION, DumpContext, FdDesc, FdHandler, FileRestorer, Plugin, PluginError, PluginInfo,
    PluginRegistration, RestoreContext,
};
use criu_proto::images::{FdTypes, FileEntry, TimerfdEntry};

/// The plugin's name.
pub const NAME: &str = "timerfd";

/// The `/proc/PID/fd/N` link of a timerfd.
pub const LINK: &str = "anon_inode:[timerfd]";

/// Timerfds (stateless: each restore gets its own restorer).
#[derive(Debug, Default)]
pub struct TimerfdPlugin;

/// The registered instance.
pub static PLUGIN: TimerfdPlugin = TimerfdPlugin;

inventory::submit! { PluginRegistration::new(&PLUGIN) }

impl Plugin for TimerfdPlugin {
    fn info(&self) -> PluginInfo {
        PluginInfo {
            name: NAME,
            version: env!("CARGO_PKG_VERSION"),
            priority: 114,
            api_version: API_VERSION,
        }
    }

    fn fd_handler(&self) -> Option<&dyn FdHandler> {
        Some(self)
    }
}

impl FdHandler for TimerfdPlugin {
    fn fd_types(&self) -> &[FdTypes] {
        &[FdTypes::Timerfd]
    }

    fn claims(&self, fd: &FdDesc) -> bool {
        fd.link == LINK
    }

    fn dump_file(
        &self,
        _ctx: &mut dyn DumpContext,
        fd: &FdDesc,
        id: u32,
    ) -> Result<FileEntry, PluginError> {
        let snap = dump::snapshot(fd, fd.file())?;
        let tfd = TimerfdEntry {
            id,
            flags: fd.fdinfo.file_flags(),
            fown: fd.owner.to_entry(),
            ..snap
        };
        tracing::debug!(pid = fd.pid, fd = fd.fd, id, ?tfd, "dumping timerfd");
        Ok(FileEntry {
            r#type: FdTypes::Timerfd as i32,
            id,
            tfd: Some(tfd),
            ..Default::default()
        })
    }

    fn start_restore(
        &self,
        _ctx: &mut dyn RestoreContext,
        _entries: &[FileEntry],
    ) -> Result<Box<dyn FileRestorer>, PluginError> {
        Ok(Box::<restore::Restorer>::default())
    }
}

#[cfg(test)]
mod tests;
