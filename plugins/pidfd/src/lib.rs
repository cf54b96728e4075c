//! Built-in plugin for pidfds (`anon_inode:[pidfd]`), CRIU 4.x format: a `files.img` PIDFD
//! entry (`file_entry.pidfd`: id, pidfs inode, flags, `nspid`, owner) per open file
//! description.
//!
//! Dump: the target comes from fdinfo (`Pid:`, `NSpid:`). A pidfd of a process of the tree,
//! of one of its threads (`PIDFD_THREAD`, which CRIU refuses) or of a zombie of the tree is
//! written with the target's pid; a pidfd of a reaped process with `nspid` -1, as CRIU, and
//! its wait status (`PIDFD_GET_INFO`, Linux 6.15+) in our field `criu_rs_exit_status`
//! (1001). A pidfd of any other process is refused naming the fd, the holder and the target
//! (CRIU refuses them too; it has no `--external` form for pidfds).
//!
//! Restore: see [`restore`]. Flags (`PIDFD_NONBLOCK`, `PIDFD_THREAD`) are kept. A reaped
//! target comes back as a helper process that ended with the dumped status (killed by
//! `SIGKILL` for CRIU's images, as CRIU does): the pidfd polls readable,
//! `pidfd_send_signal` fails with `ESRCH`, `PIDFD_GET_INFO` gives the same exit status (not
//! the same cgroup id, nor the core dump flag).

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod dump;
pub mod restore;
mod sys;

use criu_plugin_api::{
    API_VERSION, DumpContext, FdDesc, FdHandler, FileRestorer, Plugin, PluginError, PluginInfo,
    PluginRegistration, RestoreContext, RestoreStage, StageHooks,
};
use criu_proto::images::{FdTypes, FileEntry};

pub use sys::{PIDFD_NONBLOCK, PIDFD_THREAD};

/// The plugin's name.
pub const NAME: &str = "pidfd";

/// The `/proc/PID/fd/N` link of a pidfd (also on pidfs, Linux 6.9+).
pub const LINK: &str = "anon_inode:[pidfd]";

/// Pidfds (stateless: each restore gets its own restorer).
#[derive(Debug, Default)]
pub struct PidfdPlugin;

/// The registered instance.
pub static PLUGIN: PidfdPlugin = PidfdPlugin;

inventory::submit! { PluginRegistration::new(&PLUGIN) }

impl Plugin for PidfdPlugin {
    fn info(&self) -> PluginInfo {
        PluginInfo {
            name: NAME,
            version: env!("CARGO_PKG_VERSION"),
            // Among the built-ins, before epoll (120): its after-tasks-exist hook must find
            // the real pidfds, not the stand-ins, when it re-registers epoll targets.
            priority: 112,
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

impl FdHandler for PidfdPlugin {
    fn fd_types(&self) -> &[FdTypes] {
        &[FdTypes::Pidfd]
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
        let entry = dump::dump_pidfd(ctx, fd, id)?;
        Ok(FileEntry {
            r#type: FdTypes::Pidfd as i32,
            id,
            pidfd: Some(entry),
            ..Default::default()
        })
    }

    fn start_restore(
        &self,
        ctx: &mut dyn RestoreContext,
        entries: &[FileEntry],
    ) -> Result<Box<dyn FileRestorer>, PluginError> {
        Ok(Box::new(restore::Restorer::start(ctx, entries)?))
    }
}

impl StageHooks for PidfdPlugin {
    fn restore_stages(&self) -> &[RestoreStage] {
        &[RestoreStage::AfterTasksExist]
    }

    fn restore_stage(
        &self,
        stage: RestoreStage,
        ctx: &mut dyn RestoreContext,
    ) -> Result<(), PluginError> {
        match stage {
            RestoreStage::AfterTasksExist => restore::install_live(ctx),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests;
