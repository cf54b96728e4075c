//! Built-in plugin for signalfds (`anon_inode:[signalfd]`), CRIU 4.x format.
//!
//! Dump: a `files.img` SIGNALFD entry (`file_entry.sgfd`: id, file flags, owner, signal
//! mask) per open file description, the mask from fdinfo's `sigmask:` (hex), exactly as
//! CRIU writes it. The signals themselves are not the signalfd's: they are pending on the
//! task (thread or process queue), which the core dumps and restores; after the restore
//! they come out of the signalfd again.
//!
//! Restore: `signalfd4(-1, mask, SFD_CLOEXEC | SFD_NONBLOCK?)`; the core installs it at the
//! task's fd numbers and applies close-on-exec and the owner.

#![deny(unsafe_code)]
#![warn(missing_docs)]

mod sys;

use std::os::fd::OwnedFd;

use criu_plugin_api::{
    API_VERSION, DumpContext, FdDesc, FdHandler, FileRestorer, Plugin, PluginError, PluginInfo,
    PluginRegistration, RestoreContext,
};
use criu_proto::images::{FdTypes, FileEntry, SignalfdEntry};

pub use sys::signalfd;

/// The plugin's name.
pub const NAME: &str = "signalfd";

/// The `/proc/PID/fd/N` link of a signalfd.
pub const LINK: &str = "anon_inode:[signalfd]";

/// Signalfds (stateless).
#[derive(Debug, Default)]
pub struct SignalfdPlugin;

/// The registered instance.
pub static PLUGIN: SignalfdPlugin = SignalfdPlugin;

inventory::submit! { PluginRegistration::new(&PLUGIN) }

impl Plugin for SignalfdPlugin {
    fn info(&self) -> PluginInfo {
        PluginInfo {
            name: NAME,
            version: env!("CARGO_PKG_VERSION"),
            priority: 125,
            api_version: API_VERSION,
        }
    }

    fn fd_handler(&self) -> Option<&dyn FdHandler> {
        Some(self)
    }
}

/// The SIGNALFD entry of one signalfd description: its mask from fdinfo, its file flags.
pub fn entry_of(fd: &FdDesc, id: u32) -> Result<SignalfdEntry, PluginError> {
    let sigmask = fd
        .fdinfo
        .hex::<u64>("sigmask")
        .map_err(|why| PluginError::Unsupported {
            resource: fd.describe(),
            pid: fd.pid,
            hint: format!("unexpected signalfd fdinfo ({why})"),
        })?;
    Ok(SignalfdEntry {
        id,
        flags: fd.fdinfo.file_flags(),
        fown: fd.owner.to_entry(),
        sigmask,
    })
}

impl FdHandler for SignalfdPlugin {
    fn fd_types(&self) -> &[FdTypes] {
        &[FdTypes::Signalfd]
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
        let sgfd = entry_of(fd, id)?;
        tracing::debug!(
            pid = fd.pid,
            fd = fd.fd,
            id,
            sigmask = format_args!("{:#x}", sgfd.sigmask),
            "dumping signalfd"
        );
        Ok(FileEntry {
            r#type: FdTypes::Signalfd as i32,
            id,
            sgfd: Some(sgfd),
            ..Default::default()
        })
    }

    fn start_restore(
        &self,
        _ctx: &mut dyn RestoreContext,
        _entries: &[FileEntry],
    ) -> Result<Box<dyn FileRestorer>, PluginError> {
        Ok(Box::new(Restorer))
    }
}

/// One restore (nothing to keep between files).
struct Restorer;

impl FileRestorer for Restorer {
    fn open_file(
        &mut self,
        _ctx: &mut dyn RestoreContext,
        entry: &FileEntry,
    ) -> Result<OwnedFd, PluginError> {
        let sgfd = entry.sgfd.as_ref().ok_or_else(|| {
            PluginError::bad_image(
                "files.img",
                format!("SIGNALFD entry {} without sgfd", entry.id),
            )
        })?;
        let nonblock = sgfd.flags & libc::O_NONBLOCK as u32 != 0;
        signalfd(sgfd.sigmask, nonblock).map_err(|source| PluginError::Restore {
            id: entry.id,
            what: format!("{LINK} sigmask {:#x}", sgfd.sigmask),
            op: "signalfd4",
            source,
        })
    }
}

#[cfg(test)]
mod tests;
