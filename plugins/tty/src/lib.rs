//! Built-in plugin for terminals: pty slaves (`/dev/pts/N`), `/dev/tty`, the console and
//! virtual terminals, in CRIU's image format, and CRIU's `--shell-job` for them.
//!
//! Dump: one `files.img` TTY entry per description (flags, owner, the id of its terminal's
//! `tty-info.img` entry and of a REG entry holding its path), one `tty-info.img` entry per
//! terminal (type, session and foreground group when it is the task's controlling terminal,
//! device, termios, locked termios, window size, pty index, exclusive/packet/locked modes).
//! A terminal of a session whose leader is not dumped is the shell's: it is refused unless
//! `--shell-job`, as CRIU does; a pty slave whose master is not dumped needs `--shell-job`.
//!
//! Pty pairs inside the tree (the master in the tree): both ends' entries, CRIU's way; the
//! data queued between the ends in `tty-data.img` (see `queued`). Restore opens `/dev/ptmx`
//! until the kernel hands out the dumped index (it gives the lowest free one), so the slave
//! is `/dev/pts/N` again; an index in use is an error naming it. Packet mode, the slave lock,
//! exclusive mode, termios and window size come back, and a session leader gets its pty
//! slave back as controlling terminal (a remote `TIOCSCTTY`, see `pty`).
//!
//! Restore with `--shell-job`: that terminal becomes criu's own (the one on its stdin),
//! settings left as they are there; `/dev/tty` is reopened in criu's session, which the tree
//! joins; a job that was the terminal's foreground group gets it back before it runs. Console, VTs and serial lines are reopened by path with their settings.
//!
//! `/dev/tty` of a session whose terminal is such a pair is reopened in that session (see
//! `ctty`).
//!
//! A slave hung up because its master was closed comes back hung up (criu opens the index's
//! master for it and closes it again).
//!
//! Not yet: locked termios (`TIOCSLCKTRMIOS`) on restore.

#![deny(unsafe_code)]
#![warn(missing_docs)]

mod ctty;
mod dump;
mod entries;
mod foreground;
mod ioctl;
mod kind;
mod pairs;
mod pty;
mod queued;
mod restore;
mod session;

use criu_plugin_api::{
    API_VERSION, DumpContext, DumpStage, FdDesc, FdHandler, FileRestorer, ImageRef, Plugin,
    PluginError, PluginImageKind, PluginInfo, PluginRegistration, PluginState, RestoreContext,
    RestoreStage, RunKind, StageHooks,
};
use criu_proto::images::{FdTypes, FileEntry};

pub use restore::NO_TERMINAL_HINT;

/// The plugin's name, also the prefix of its memo keys.
pub const NAME: &str = "tty";

/// `tty-info.img`.
const TTY_INFO: ImageRef = ImageRef::single(PluginImageKind::TtyInfo);

/// `tty-data.img`.
const TTY_DATA: ImageRef = ImageRef::single(PluginImageKind::TtyData);

/// Terminals (stateless: each restore gets its own restorer).
#[derive(Debug, Default)]
pub struct TtyPlugin;

/// The registered instance.
pub static PLUGIN: TtyPlugin = TtyPlugin;

inventory::submit! { PluginRegistration::new(&PLUGIN) }

impl Plugin for TtyPlugin {
    fn info(&self) -> PluginInfo {
        PluginInfo {
            name: NAME,
            version: env!("CARGO_PKG_VERSION"),
            // Before `files` (200), which would otherwise see terminals as character devices.
            priority: 150,
            api_version: API_VERSION,
        }
    }

    fn fd_handler(&self) -> Option<&dyn FdHandler> {
        Some(self)
    }

    fn stage_hooks(&self) -> Option<&dyn StageHooks> {
        Some(self)
    }

    fn new_state(&self, run: RunKind) -> Result<Option<PluginState>, PluginError> {
        // Only the dump has state of its own (the restore's is in the restorer).
        Ok((run == RunKind::Dump).then(|| Box::new(dump::DumpState::default()) as PluginState))
    }
}

/// `--shell-job`: the job gets its terminal's foreground back (see `foreground`); pty pairs'
/// queued data is taken once every fd is dumped (see `pairs`).
impl StageHooks for TtyPlugin {
    fn dump_stages(&self) -> &[DumpStage] {
        &[DumpStage::AfterDump]
    }

    fn dump_stage(&self, stage: DumpStage, ctx: &mut dyn DumpContext) -> Result<(), PluginError> {
        match stage {
            DumpStage::AfterDump => pairs::dump_queued(ctx),
            _ => Ok(()),
        }
    }

    fn restore_stages(&self) -> &[RestoreStage] {
        &foreground::STAGES
    }

    fn restore_stage(
        &self,
        stage: RestoreStage,
        ctx: &mut dyn RestoreContext,
    ) -> Result<(), PluginError> {
        foreground::run(stage, ctx)
    }
}

impl FdHandler for TtyPlugin {
    fn fd_types(&self) -> &[FdTypes] {
        &[FdTypes::Tty]
    }

    fn claims(&self, fd: &FdDesc) -> bool {
        fd.stat.is_chr() && kind::Driver::of(fd.stat.rdev).is_some()
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
        ctx: &mut dyn RestoreContext,
        entries: &[FileEntry],
    ) -> Result<Box<dyn FileRestorer>, PluginError> {
        Ok(Box::new(restore::TtyRestorer::start(ctx, entries)?))
    }
}

#[cfg(test)]
mod tests;
