//! Built-in plugin for file locks and leases (`--file-locks`), CRIU 4.x format:
//! `filelocks.img`, one `file_lock_entry` per lock.
//!
//! Without `--file-locks` the core refuses a dump whose tree holds a lock, as CRIU does, and
//! this plugin does nothing. With it, the core lets such fds through and this plugin, once
//! every fd has its `files.img` id ([`DumpStage::AfterDump`], tasks still frozen), reads the
//! `lock:` lines of every fd of every task and writes one entry per lock: POSIX locks (owned
//! by the fd table of the task that took them), OFD locks and flocks (owned by the open file
//! description, whichever tasks share it), read and write, byte ranges, and leases,
//! including a lease whose break has started (CRIU's LEASE_BREAKING). Waiters blocked on a
//! lock are not state: their call is restarted when the tree runs again. A lock no task can
//! take again (an NFS delegation, a POSIX lock of a process outside the tree seen through a
//! shared fd table) fails the dump, naming it; the tree runs on.
//!
//! Restore, only with `--file-locks` (images with locks are refused without it): the image
//! is checked before any task exists; every lock is taken again by the task the entry names,
//! on its fd, with a remote system call, once every task exists and before any runs
//! ([`RestoreStage::AfterTasksExist`]). See [`restore`].
//!
//! A separate plugin rather than a part of `files`: a lock sits on an open file description
//! of any kind (flock works on pipes and sockets too), is found per task rather than per
//! description, and is taken again by tasks rather than opened by criu.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod dump;
pub mod entry;
pub mod lockline;
pub mod remote;
pub mod restore;

use criu_plugin_api::{
    API_VERSION, DumpContext, DumpStage, Plugin, PluginError, PluginInfo, PluginRegistration,
    PluginState, RestoreContext, RestoreStage, RunKind, StageHooks,
};

/// The plugin's name (also the `.so`'s: `libcriu_filelocks.so`).
pub const NAME: &str = "filelocks";

/// File locks and leases.
#[derive(Debug, Default)]
pub struct FileLocksPlugin;

/// The registered instance.
pub static PLUGIN: FileLocksPlugin = FileLocksPlugin;

inventory::submit! { PluginRegistration::new(&PLUGIN) }

impl Plugin for FileLocksPlugin {
    fn info(&self) -> PluginInfo {
        PluginInfo {
            name: NAME,
            version: env!("CARGO_PKG_VERSION"),
            // A resource no other built-in handles.
            priority: 300,
            api_version: API_VERSION,
        }
    }

    fn stage_hooks(&self) -> Option<&dyn StageHooks> {
        Some(self)
    }

    fn new_state(&self, run: RunKind) -> Result<Option<PluginState>, PluginError> {
        Ok(match run {
            RunKind::Restore => Some(Box::new(restore::Plan::default())),
            RunKind::Dump => None,
        })
    }
}

impl StageHooks for FileLocksPlugin {
    fn dump_stages(&self) -> &[DumpStage] {
        &[DumpStage::AfterDump]
    }

    fn restore_stages(&self) -> &[RestoreStage] {
        &[RestoreStage::BeforeRestore, RestoreStage::AfterTasksExist]
    }

    fn dump_stage(&self, stage: DumpStage, ctx: &mut dyn DumpContext) -> Result<(), PluginError> {
        match stage {
            DumpStage::AfterDump if ctx.options().file_locks => dump::dump(ctx),
            _ => Ok(()),
        }
    }

    fn restore_stage(
        &self,
        stage: RestoreStage,
        ctx: &mut dyn RestoreContext,
    ) -> Result<(), PluginError> {
        match stage {
            RestoreStage::BeforeRestore => {
                let plan = restore::load(ctx)?;
                *ctx.state::<restore::Plan>()? = plan;
                Ok(())
            }
            RestoreStage::AfterTasksExist => {
                let plan = std::mem::take(ctx.state::<restore::Plan>()?);
                restore::apply(ctx, &plan)
            }
            _ => Ok(()),
        }
    }
}
