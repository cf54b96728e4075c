//! An example criu plugin kept outside the criu workspace: it depends on
//! `criu-plugin-api` alone and is loaded from a `--plugin-dir` as `libcriu_example_eventfd.so`.
//!
//! It handles eventfds (as the built-in `eventfd` plugin does; declaring a lower priority
//! number, it takes them over when loaded): dump stores the counter and the file
//! flags in a CRIU `EVENTFD` entry of `files.img` (`file_entry.efd`, as CRIU writes it);
//! restore creates a new eventfd with that counter and those flags. Semaphore-mode eventfds
//! are refused: CRIU's `eventfd_file_entry` has no field for the mode.
//!
//! It also shows plugin API 0.5: a state object of its own for each dump (it numbers the
//! eventfds it dumps), `tracing` events that reach criu's `-o` log with the plugin's name as
//! target, a typed fdinfo field (`eventfd-count`, hexadecimal), and the restorer's last
//! step before the tree resumes ([`FileRestorer::finish`]), which checks that each eventfd it
//! opened is the one installed in the task and logs where it went.

#![deny(unsafe_code)]

use std::os::fd::OwnedFd;

use criu_plugin_api::proto::images::{EventfdFileEntry, FdTypes, FileEntry};
use criu_plugin_api::tracing;
use criu_plugin_api::{
    API_VERSION, ApiVersion, DumpContext, FdDesc, FdHandler, FdInfo, FileRestorer, InstalledFd, Plugin,
    PluginError, PluginInfo, PluginState, RestoreContext, RunKind, require_no_owner,
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

    fn new_state(&self, run: RunKind) -> Result<Option<PluginState>, PluginError> {
        // The restore keeps its state in the restorer.
        Ok((run == RunKind::Dump).then(|| Box::new(DumpState::default()) as PluginState))
    }
}

/// What this plugin remembers during one dump.
#[derive(Debug, Default)]
struct DumpState {
    /// Eventfds dumped so far.
    dumped: u32,
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
        ctx: &mut dyn DumpContext,
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
        let counter = fd
            .fdinfo
            .hex::<u64>("eventfd-count")
            .map_err(|e| bad(&e.to_string()))?;
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
        let state = ctx.state::<DumpState>()?;
        state.dumped += 1;
        tracing::info!(
            pid = fd.pid,
            fd = fd.fd,
            id,
            counter,
            "dumped eventfd #{} of this dump",
            state.dumped
        );
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
        Ok(Box::new(Restorer::default()))
    }
}

/// One restore: the eventfds opened, by file id, with their counters (checked in
/// [`FileRestorer::finish`] against what the task got).
#[derive(Default)]
struct Restorer {
    opened: Vec<(u32, u64)>,
}

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
        self.opened.push((efd.id, efd.counter));
        Ok(fd.into())
    }

    /// Every task exists and is stopped: check that each installed fd is an eventfd with the
    /// counter this restorer gave the description of that id (an eventfd has no time-based
    /// state to re-arm; a timerfd plugin would `timerfd_settime` a duplicate of its fd here).
    fn finish(
        &mut self,
        ctx: &mut dyn RestoreContext,
        installed: &[InstalledFd],
    ) -> Result<(), PluginError> {
        for i in installed {
            let wrong = |what: String| PluginError::Plugin {
                plugin: NAME.into(),
                message: format!("fd {} of pid {} (file id {}): {what}", i.fd, i.pid, i.id),
            };
            let Some(&(_, counter)) = self.opened.iter().find(|(id, _)| *id == i.id) else {
                return Err(wrong("listed, but this restorer never opened it".into()));
            };
            let path = format!("/proc/{}/fdinfo/{}", i.pid, i.fd);
            let raw = std::fs::read_to_string(&path).map_err(|source| PluginError::Path {
                path: path.into(),
                op: "read",
                source,
            })?;
            let info = FdInfo {
                raw,
                ..FdInfo::default()
            };
            let now = info.hex::<u64>("eventfd-count")?;
            if now != counter {
                return Err(wrong(format!("counter {now}, restored {counter}")));
            }
            // A remote call works only while the task is stopped under the restorer.
            let pid = ctx.remote_syscall(i.pid, nix::libc::SYS_getpid, [0; 6])?;
            tracing::info!(
                "restore finished: pid {} fd {} id {} (task stopped, remote getpid {pid})",
                i.pid,
                i.fd,
                i.id
            );
        }
        Ok(())
    }
}

