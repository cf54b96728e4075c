//! Built-in plugins for inotify (`anon_inode:inotify`) and fanotify (`anon_inode:[fanotify]`)
//! fds, in CRIU 4.x's formats (`file_entry.ify`, `file_entry.ffy`). Two plugins sharing one
//! crate, each its own `.so` (`libcriu_inotify.so`, `libcriu_fanotify.so`), because both
//! find watched files the same way ([`handle`]).
//!
//! Watched files are found as CRIU finds them ([`handle`]): by path, checked against the
//! inode; by file handle when the path is gone; on the tree's own (ghost) file when the tree
//! holds the unlinked file open ([`deferred`]).
//!
//! Events queued on an inotify or fanotify fd at dump are not carried (the kernel has no
//! way to read them without taking them from the task), as in CRIU: the dump logs how many
//! bytes of events are dropped and goes on. Pending fanotify permission events are dropped
//! the same way (the kernel answers them with its default when the listener goes away).
//! The restored queues start empty: events the restore itself caused are read away before
//! the tree resumes.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod deferred;
pub mod fanotify;
mod fanotify_restore;
pub mod fdinfo;
pub mod handle;
pub mod inotify;
pub mod sys;

use criu_plugin_api::{API_VERSION, FdDesc, FdHandler, Plugin, PluginInfo, PluginRegistration};

pub use fanotify::FanotifyHandler;
pub use inotify::InotifyHandler;

/// The `/proc/PID/fd/N` link of an inotify fd.
pub const INOTIFY_LINK: &str = "anon_inode:inotify";
/// The `/proc/PID/fd/N` link of a fanotify fd.
pub const FANOTIFY_LINK: &str = "anon_inode:[fanotify]";

/// The inotify plugin.
#[derive(Debug, Default)]
pub struct InotifyPlugin;

/// The fanotify plugin.
#[derive(Debug, Default)]
pub struct FanotifyPlugin;

/// The registered inotify plugin.
pub static INOTIFY: InotifyPlugin = InotifyPlugin;
/// The registered fanotify plugin.
pub static FANOTIFY: FanotifyPlugin = FanotifyPlugin;

static INOTIFY_HANDLER: InotifyHandler = InotifyHandler;
static FANOTIFY_HANDLER: FanotifyHandler = FanotifyHandler;

inventory::submit! { PluginRegistration::new(&INOTIFY) }
inventory::submit! { PluginRegistration::new(&FANOTIFY) }

impl Plugin for InotifyPlugin {
    fn info(&self) -> PluginInfo {
        PluginInfo {
            name: "inotify",
            version: env!("CARGO_PKG_VERSION"),
            priority: 120,
            api_version: API_VERSION,
        }
    }

    fn fd_handler(&self) -> Option<&dyn FdHandler> {
        Some(&INOTIFY_HANDLER)
    }
}

impl Plugin for FanotifyPlugin {
    fn info(&self) -> PluginInfo {
        PluginInfo {
            name: "fanotify",
            version: env!("CARGO_PKG_VERSION"),
            priority: 120,
            api_version: API_VERSION,
        }
    }

    fn fd_handler(&self) -> Option<&dyn FdHandler> {
        Some(&FANOTIFY_HANDLER)
    }
}

/// Logs the events queued on `fd` that the dump drops (CRIU does the same).
fn warn_queued(fd: &FdDesc, kind: &str) {
    match sys::queued_bytes(fd.file()) {
        Ok(0) => {}
        Ok(n) => tracing::warn!(
            pid = fd.pid,
            fd = fd.fd,
            bytes = n,
            "{kind} events queued at dump are dropped (as CRIU does): the restored fd starts with an empty queue"
        ),
        Err(e) => tracing::debug!(pid = fd.pid, fd = fd.fd, %e, "FIONREAD on {kind} fd"),
    }
}

#[cfg(test)]
mod tests;
