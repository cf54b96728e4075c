//! Built-in plugin for io_uring rings: the ring fds (`anon_inode:[io_uring]`) and the
//! mappings of their SQ ring, CQ ring and SQE array.
//!
//! Dump: the ring is read through criu's own copy of the file (`mmap` of the same ring; a
//! ring criu restored through the task's memory),
//! once the kernel has finished its requests (the tasks are frozen but the kernel completes
//! what they submitted; a ring still busy after [`dump::SETTLE`] is refused, naming what is
//! pending). Its sizes and counters come from fdinfo, the setup flags that show from
//! outside (SQPOLL and its CPU, CQSIZE, SINGLE_ISSUER, DEFER_TASKRUN) from the SQ thread and
//! from calls that change nothing.
//!
//! Restore: the ring is set up again inside the task that owned it (remote
//! `io_uring_setup`: an SQ thread, a single issuer belong to the creating task), installed
//! at every fd that held it, its memory at the dumped addresses (`IORING_SETUP_NO_MMAP` on
//! memfds mapped over the core's placeholders, found again by a later dump), its registered files and
//! buffers registered again, its kernel counters brought to the dumped values by replaying
//! NOP requests, and then its memory (heads, tails, pending CQEs, SQEs written but not
//! submitted) written back.
//!
//! Formats: CRIU has none for io_uring. The fd is CRIU's EXT `files.img` entry with our
//! field `ext_file_entry.criu_rs_plugin = "io_uring"`; rings and mappings are in
//! [`image::FILE`].

#![deny(unsafe_code)]
#![warn(missing_docs)]

mod checks;
pub mod dump;
pub mod fdinfo;
pub mod image;
mod registered;
mod remote;
mod replay;
pub mod restore;
mod ringmem;
mod shared;
mod uapi;

use std::os::fd::OwnedFd;

use criu_plugin_api::{
    API_VERSION, DumpContext, DumpStage, FdDesc, FdHandler, FileRestorer, Plugin, PluginError,
    PluginInfo, PluginRegistration, PluginState, RestoreContext, RunKind, StageHooks, TaskHandler,
    TaskIds, VmaDesc, VmaHandler,
};
use criu_proto::images::{FdTypes, FileEntry};

/// The plugin's name (also the value of `ext_file_entry.criu_rs_plugin`).
pub const NAME: &str = "io_uring";

/// The `/proc/PID/fd/N` link of a ring.
pub const LINK: &str = "anon_inode:[io_uring]";

/// The `/proc/PID/maps` name of a ring mapping.
pub const MAPS_NAME: &str = "anon_inode:[io_uring]";

/// io_uring rings.
#[derive(Debug, Default)]
pub struct IoUringPlugin;

/// The registered instance.
pub static PLUGIN: IoUringPlugin = IoUringPlugin;

inventory::submit! { PluginRegistration::new(&PLUGIN) }

impl Plugin for IoUringPlugin {
    fn info(&self) -> PluginInfo {
        PluginInfo {
            name: NAME,
            version: env!("CARGO_PKG_VERSION"),
            priority: 135,
            api_version: API_VERSION,
        }
    }

    fn fd_handler(&self) -> Option<&dyn FdHandler> {
        Some(self)
    }

    fn vma_handler(&self) -> Option<&dyn VmaHandler> {
        Some(self)
    }

    fn task_handler(&self) -> Option<&dyn TaskHandler> {
        Some(self)
    }

    fn stage_hooks(&self) -> Option<&dyn StageHooks> {
        Some(self)
    }

    fn new_state(&self, run: RunKind) -> Result<Option<PluginState>, PluginError> {
        Ok(Some(match run {
            RunKind::Dump => Box::new(dump::DumpState::default()),
            RunKind::Restore => Box::new(restore::RestoreState::default()),
        }))
    }
}

impl FdHandler for IoUringPlugin {
    fn fd_types(&self) -> &[FdTypes] {
        &[FdTypes::Ext]
    }

    fn claims(&self, fd: &FdDesc) -> bool {
        fd.link == LINK
    }

    fn restores(&self, entry: &FileEntry) -> bool {
        entry.r#type == FdTypes::Ext as i32
            && entry
                .ext
                .as_ref()
                .is_some_and(|e| e.criu_rs_plugin.as_deref() == Some(NAME))
    }

    fn dump_file(
        &self,
        ctx: &mut dyn DumpContext,
        fd: &FdDesc,
        id: u32,
    ) -> Result<FileEntry, PluginError> {
        dump::dump_file(ctx, fd, id)
    }

    fn start_restore(
        &self,
        _ctx: &mut dyn RestoreContext,
        _entries: &[FileEntry],
    ) -> Result<Box<dyn FileRestorer>, PluginError> {
        Ok(Box::new(Restorer))
    }
}

/// Opens the stand-ins the rings replace once their tasks exist.
struct Restorer;

impl FileRestorer for Restorer {
    fn open_file(
        &mut self,
        ctx: &mut dyn RestoreContext,
        entry: &FileEntry,
    ) -> Result<OwnedFd, PluginError> {
        restore::open_file(ctx, entry)
    }
}

impl VmaHandler for IoUringPlugin {
    fn vma_kinds(&self) -> &[&str] {
        &["io_uring rings"]
    }

    fn claims_vma(&self, vma: &VmaDesc) -> bool {
        vma.name == MAPS_NAME
    }

    fn dump_vma(&self, ctx: &mut dyn DumpContext, vma: &VmaDesc) -> Result<(), PluginError> {
        dump::dump_vma(ctx, vma)
    }

    fn restore_vma(&self, ctx: &mut dyn RestoreContext, vma: &VmaDesc) -> Result<(), PluginError> {
        restore::check_vma(ctx, vma)
    }
}

impl TaskHandler for IoUringPlugin {
    fn task_state(&self) -> &[&str] {
        &["io_uring rings it set up"]
    }

    fn dump_task(&self, _ctx: &mut dyn DumpContext, _task: &TaskIds) -> Result<(), PluginError> {
        // Rings are dumped with their fds and mappings.
        Ok(())
    }

    fn restore_task(
        &self,
        ctx: &mut dyn RestoreContext,
        task: &TaskIds,
    ) -> Result<(), PluginError> {
        restore::restore_task(ctx, task)
    }
}

impl StageHooks for IoUringPlugin {
    fn dump_stages(&self) -> &[DumpStage] {
        &[DumpStage::AfterDump]
    }

    fn dump_stage(&self, stage: DumpStage, ctx: &mut dyn DumpContext) -> Result<(), PluginError> {
        match stage {
            DumpStage::AfterDump => dump::check_placements(ctx),
            _ => Ok(()),
        }
    }
}
