//! Built-in plugin for POSIX message queues (`mq_open`), which CRIU cannot dump.
//!
//! An mqueue fd is a file of the kernel's internal mqueue mount of the task's IPC namespace
//! (the host's here): `/proc/PID/fd/N` shows `/<name>` (`/<name> (deleted)` once
//! `mq_unlink`ed) and `fstatfs` says `MQUEUE_MAGIC`.
//!
//! Dump, once per queue while the tree is frozen: criu opens a read-write nonblocking
//! description of its own on the queue (`/proc/self/fd/N` of the fd `pidfd_getfd` gave it),
//! reads the attributes and the status line (`QSIZE NOTIFY SIGNO NOTIFY_PID`), receives
//! every message (the kernel has no peek), records them and sends them back in the same
//! order with the same priorities, whatever the recording did ([`queue::snapshot`]). An
//! `mq_notify` registration is learnt and kept as [`notify`] explains; `SIGEV_THREAD`
//! (glibc's netlink socket and helper thread) is refused. Each description gets a
//! `files.img` EXT entry marked `criu_rs_plugin = "mqueue"` (our field 1001 of
//! `ext_file_entry`), and the queues and descriptions go into [`image::FILE`].
//!
//! Restore: the first description of a queue creates it (`mq_open(O_CREAT | O_EXCL)` with
//! the dumped `maxmsg`/`msgsize`; a queue of that name still there is replaced: it is the
//! dumped one, left behind when the tree was killed, or a newer one of the same name);
//! mode and owner are set, the messages sent in order; an unlinked queue is created under
//! a temporary name and unlinked. Every description is a reopening of the queue with its
//! own access mode and `O_NONBLOCK`. Registrations are made again from inside the restored
//! owner in [`FileRestorer::finish`], once every message is in (so nothing fires).
//! A restore that fails unlinks the named queues it created (`restore-failed` stage).

#![deny(unsafe_code)]
#![warn(missing_docs)]

mod dump;
pub mod image;
pub mod notify;
pub mod queue;
mod restore;
mod sys;

use criu_plugin_api::{
    API_VERSION, DumpContext, FdDesc, FdHandler, FileRestorer, Plugin, PluginError, PluginInfo,
    PluginRegistration, PluginState, RestoreContext, RestoreStage, RunKind, StageHooks,
};
use criu_proto::images::{FdTypes, FileEntry};

/// The plugin's name, also the value of `ext_file_entry.criu_rs_plugin` in its entries.
pub const NAME: &str = "mqueue";

/// POSIX message queues.
#[derive(Debug, Default)]
pub struct MqueuePlugin;

/// The registered instance.
pub static PLUGIN: MqueuePlugin = MqueuePlugin;

inventory::submit! { PluginRegistration::new(&PLUGIN) }

impl Plugin for MqueuePlugin {
    fn info(&self) -> PluginInfo {
        PluginInfo {
            name: NAME,
            version: env!("CARGO_PKG_VERSION"),
            // Before `files` (200): queues are S_IFREG files with a path-like link.
            priority: 145,
            api_version: API_VERSION,
        }
    }

    fn fd_handler(&self) -> Option<&dyn FdHandler> {
        Some(self)
    }

    fn new_state(&self, run: RunKind) -> Result<Option<PluginState>, PluginError> {
        Ok(Some(match run {
            RunKind::Dump => Box::new(dump::DumpState::default()) as PluginState,
            RunKind::Restore => Box::new(restore::RestoreState::default()) as PluginState,
        }))
    }

    fn stage_hooks(&self) -> Option<&dyn StageHooks> {
        Some(self)
    }
}

impl StageHooks for MqueuePlugin {
    fn restore_stages(&self) -> &[RestoreStage] {
        &[RestoreStage::Failed]
    }

    fn restore_stage(
        &self,
        stage: RestoreStage,
        ctx: &mut dyn RestoreContext,
    ) -> Result<(), PluginError> {
        match stage {
            RestoreStage::Failed => restore::remove_created(ctx),
            _ => Ok(()),
        }
    }
}

/// Whether `entry` is one of ours: an EXT entry marked with our name.
pub fn is_ours(entry: &FileEntry) -> bool {
    entry.r#type == FdTypes::Ext as i32
        && entry.ext.as_ref().and_then(|e| e.criu_rs_plugin.as_deref()) == Some(NAME)
}

impl FdHandler for MqueuePlugin {
    fn fd_types(&self) -> &[FdTypes] {
        &[FdTypes::Ext]
    }

    fn claims(&self, fd: &FdDesc) -> bool {
        fd.link.starts_with('/') && fd.stat.is_reg() && queue::is_mqueue(fd.file())
    }

    fn dump_file(
        &self,
        ctx: &mut dyn DumpContext,
        fd: &FdDesc,
        id: u32,
    ) -> Result<FileEntry, PluginError> {
        dump::dump_file(ctx, fd, id)
    }

    fn restores(&self, entry: &FileEntry) -> bool {
        is_ours(entry)
    }

    fn start_restore(
        &self,
        ctx: &mut dyn RestoreContext,
        entries: &[FileEntry],
    ) -> Result<Box<dyn FileRestorer>, PluginError> {
        restore::start(ctx, entries)
    }
}

#[cfg(test)]
mod tests;
