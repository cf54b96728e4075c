//! Built-in plugin for eventfds (`anon_inode:[eventfd]`), CRIU 4.x format.
//!
//! Dump: a `files.img` EVENTFD entry (`file_entry.efd`: id, file flags, owner, counter) per
//! open file description, the counter from fdinfo's `eventfd-count:` (hex). CRIU's entry has
//! no field for `EFD_SEMAPHORE`: an eventfd in semaphore mode gets our optional field
//! `criu_rs_semaphore` (number 1001, in the range criu-rs keeps for its own fields of CRIU's
//! messages; crit and CRIU skip it, and upstream CRIU would restore such an eventfd in
//! counter mode). Other eventfds are written exactly as CRIU writes them.
//!
//! Restore: `eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK? | EFD_SEMAPHORE?)` then one `write` of the
//! counter (the initial value of `eventfd(2)` is only 32 bits wide). Images of earlier
//! criu-rs builds listed semaphore eventfds in a side file ([`SEMAPHORE_FILE`]); it is still
//! read.

#![deny(unsafe_code)]
#![warn(missing_docs)]

mod fdinfo;

use std::collections::BTreeSet;
use std::os::fd::OwnedFd;

use criu_plugin_api::{
    API_VERSION, DumpContext, FdDesc, FdHandler, FileRestorer, Plugin, PluginError, PluginInfo,
    PluginRegistration, RestoreContext,
};
use criu_proto::images::{EventfdFileEntry, FdTypes, FileEntry};
use nix::sys::eventfd::{EfdFlags, EventFd};

pub use fdinfo::{EventfdState, parse_eventfd};

/// The plugin's name, also the prefix of its memo keys.
pub const NAME: &str = "eventfd";

/// The plugin-owned file in which earlier criu-rs builds listed the file ids of eventfds in
/// semaphore mode, one decimal id per line; read at restore, no longer written.
pub const SEMAPHORE_FILE: &str = "criu-rs-eventfd-semaphore.txt";

/// The `/proc/PID/fd/N` link of an eventfd.
pub const LINK: &str = "anon_inode:[eventfd]";

/// Eventfds (stateless: each restore gets its own restorer).
#[derive(Debug, Default)]
pub struct EventfdPlugin;

/// The registered instance.
pub static PLUGIN: EventfdPlugin = EventfdPlugin;

inventory::submit! { PluginRegistration::new(&PLUGIN) }

impl Plugin for EventfdPlugin {
    fn info(&self) -> PluginInfo {
        PluginInfo {
            name: NAME,
            version: env!("CARGO_PKG_VERSION"),
            priority: 110,
            api_version: API_VERSION,
        }
    }

    fn fd_handler(&self) -> Option<&dyn FdHandler> {
        Some(self)
    }
}

/// The ids of [`SEMAPHORE_FILE`]; a bad line is a [`PluginError::BadImage`].
pub fn parse_semaphore_file(text: &str) -> Result<BTreeSet<u32>, PluginError> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            l.trim().parse::<u32>().map_err(|_| {
                PluginError::bad_image(SEMAPHORE_FILE, format!("not a file id: {l:?}"))
            })
        })
        .collect()
}

impl FdHandler for EventfdPlugin {
    fn fd_types(&self) -> &[FdTypes] {
        &[FdTypes::Eventfd]
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
        let state = parse_eventfd(&fd.fdinfo.raw).map_err(|why| PluginError::Unsupported {
            resource: fd.describe(),
            pid: fd.pid,
            hint: format!("unexpected eventfd fdinfo ({why})"),
        })?;
        tracing::debug!(
            pid = fd.pid,
            fd = fd.fd,
            id,
            counter = state.counter,
            semaphore = state.semaphore,
            "dumping eventfd"
        );
        Ok(FileEntry {
            r#type: FdTypes::Eventfd as i32,
            id,
            efd: Some(EventfdFileEntry {
                id,
                flags: fd.fdinfo.file_flags(),
                fown: fd.owner.to_entry(),
                counter: state.counter,
                criu_rs_semaphore: state.semaphore.then_some(true),
            }),
            ..Default::default()
        })
    }

    fn start_restore(
        &self,
        ctx: &mut dyn RestoreContext,
        entries: &[FileEntry],
    ) -> Result<Box<dyn FileRestorer>, PluginError> {
        let semaphores = if entries.iter().any(|e| e.r#type == FdTypes::Eventfd as i32) {
            match ctx.read_plugin_file(SEMAPHORE_FILE)? {
                Some(text) => parse_semaphore_file(&String::from_utf8_lossy(&text))?,
                None => BTreeSet::new(),
            }
        } else {
            BTreeSet::new()
        };
        Ok(Box::new(Restorer { semaphores }))
    }
}

/// One restore: the ids an earlier build's side file lists as semaphores.
struct Restorer {
    semaphores: BTreeSet<u32>,
}

impl FileRestorer for Restorer {
    fn open_file(
        &mut self,
        _ctx: &mut dyn RestoreContext,
        entry: &FileEntry,
    ) -> Result<OwnedFd, PluginError> {
        let efd = entry.efd.as_ref().ok_or_else(|| {
            PluginError::bad_image(
                "files.img",
                format!("EVENTFD entry {} without efd", entry.id),
            )
        })?;
        let fail = |op: &'static str, e: nix::errno::Errno| PluginError::Restore {
            id: entry.id,
            what: LINK.into(),
            op,
            source: e.into(),
        };
        let mut flags = EfdFlags::EFD_CLOEXEC;
        if efd.flags & libc::O_NONBLOCK as u32 != 0 {
            flags |= EfdFlags::EFD_NONBLOCK;
        }
        if efd.criu_rs_semaphore == Some(true) || self.semaphores.contains(&entry.id) {
            flags |= EfdFlags::EFD_SEMAPHORE;
        }
        let fd = EventFd::from_value_and_flags(0, flags).map_err(|e| fail("eventfd", e))?;
        if efd.counter != 0 {
            fd.write(efd.counter).map_err(|e| fail("write", e))?;
        }
        Ok(fd.into())
    }
}

#[cfg(test)]
mod tests;
