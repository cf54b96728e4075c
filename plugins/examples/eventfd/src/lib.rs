//! An example criu plugin kept outside the criu workspace: it depends on
//! `criu-plugin-api` alone and is loaded from a `--plugin-dir` as `libcriu_example_eventfd.so`.
//!
//! It handles eventfds (as the built-in `eventfd` plugin does; declaring a lower priority
//! number, it takes them over when loaded): dump stores the counter and the file
//! flags in a CRIU `EVENTFD` entry of `files.img` (`file_entry.efd`, as CRIU writes it);
//! restore creates a new eventfd with that counter and those flags. Semaphore-mode eventfds
//! are refused: CRIU's `eventfd_file_entry` has no field for the mode.

#![deny(unsafe_code)]

use std::os::fd::OwnedFd;

use criu_plugin_api::proto::images::{EventfdFileEntry, FdTypes, FileEntry};
use criu_plugin_api::{
    API_VERSION, ApiVersion, DumpContext, FdDesc, FdHandler, FileRestorer, Plugin, PluginError,
    PluginInfo, RestoreContext, require_no_owner,
};
use nix::fcntl::OFlag;
use nix::sys::eventfd::{EfdFlags, EventFd};

/// The plugin.
#[derive(Debug)]
pub struct EventfdPlugin;

/// The instance the `.so` exports.
pub static PLUGIN: EventfdPlugin = EventfdPlugin;

criu_plugin_api::export_plugin!(PLUGIN);

/// The plugin's name.
pub const NAME: &str = "example-eventfd";

const LINK: &str = "anon_inode:[eventfd]";

impl Plugin for EventfdPlugin {
    fn info(&self) -> PluginInfo {
        let api_version = if cfg!(feature = "future-api") {
            ApiVersion {
                major: API_VERSION.major + 1,
                minor: 0,
            }
        } else {
            API_VERSION
        };
        PluginInfo {
            name: NAME,
            version: env!("CARGO_PKG_VERSION"),
            // Below the built-in eventfd plugin (110): loaded, it takes eventfds over.
            priority: 90,
            api_version,
        }
    }

    fn fd_handler(&self) -> Option<&dyn FdHandler> {
        Some(self)
    }
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
        if cfg!(feature = "panic-in-dump") {
            panic!("eventfd plugin test panic on {}", fd.describe());
        }
        let bad = |what: &str| PluginError::Unsupported {
            resource: fd.describe(),
            pid: fd.pid,
            hint: format!("unexpected fdinfo ({what}); this plugin knows kernels 5.2 to 6.x"),
        };
        let count = fd
            .fdinfo
            .field("eventfd-count")
            .ok_or_else(|| bad("no eventfd-count"))?;
        let counter = u64::from_str_radix(count, 16).map_err(|_| bad("eventfd-count"))?;
        if fd.fdinfo.field("eventfd-semaphore") == Some("1") {
            return Err(PluginError::Unsupported {
                resource: format!("{} in semaphore mode", fd.describe()),
                pid: fd.pid,
                hint: "CRIU's eventfd image cannot record EFD_SEMAPHORE".into(),
            });
        }
        let efd = EventfdFileEntry {
            id,
            flags: fd.fdinfo.file_flags(),
            fown: fd.owner.to_entry(),
            counter,
            criu_rs_semaphore: None, // semaphore mode is refused above
        };
        Ok(FileEntry {
            r#type: FdTypes::Eventfd as i32,
            id,
            efd: Some(efd),
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

/// Eventfds need no per-restore state.
struct Restorer;

impl FileRestorer for Restorer {
    fn open_file(
        &mut self,
        ctx: &mut dyn RestoreContext,
        entry: &FileEntry,
    ) -> Result<OwnedFd, PluginError> {
        let efd = entry.efd.as_ref().ok_or_else(|| {
            PluginError::bad_image(
                "files.img",
                format!("EVENTFD entry {} without efd", entry.id),
            )
        })?;
        require_no_owner(&efd.fown, "eventfd", ctx.current_pid())?;
        let fail = |op: &'static str, e: nix::errno::Errno| PluginError::Restore {
            id: efd.id,
            what: LINK.into(),
            op,
            source: e.into(),
        };
        let mut flags = EfdFlags::EFD_CLOEXEC;
        if efd.flags & OFlag::O_NONBLOCK.bits() as u32 != 0 {
            flags |= EfdFlags::EFD_NONBLOCK;
        }
        // The initial value is 32 bits wide; the counter is 64: start at 0 and add it.
        let fd = EventFd::from_value_and_flags(0, flags).map_err(|e| fail("eventfd", e))?;
        if efd.counter != 0 {
            fd.write(efd.counter).map_err(|e| fail("write", e))?;
        }
        Ok(fd.into())
    }
}
