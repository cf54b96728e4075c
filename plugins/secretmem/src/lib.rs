//! Built-in plugin for `memfd_secret(2)` memory: the fds (`/secretmem (deleted)`) and the
//! mappings of secret memory objects.
//!
//! The pages of secret memory are mapped only in the tasks that map them: criu cannot read
//! them with `process_vm_readv`, `/proc/PID/mem` or GUP, and the mapping has no
//! `/proc/PID/map_files` link. So the frozen task writes its own pages into a pipe (remote
//! `pipe2` + `write`), criu reads them one chunk of at most 1 MiB at a time, seals the chunk
//! ([`seal`]: in clear, or XChaCha20-Poly1305 with `--secret-key FILE`), writes it and wipes
//! the buffer. At restore criu creates one `memfd_secret` per dumped object (its fd is
//! restored from it), each task maps it over the placeholder the core left at the dumped
//! address (the task fetches criu's fd with `pidfd_getfd`), and reads the pages back from a
//! pipe criu fills one decrypted chunk at a time. A mapping shared by several tasks (one
//! object, mapped before a fork) is one object again, its contents written once.
//!
//! Formats: CRIU has none for secret memory. The fd is CRIU's EXT `files.img` entry (a file
//! a plugin restores) with our field `ext_file_entry.criu_rs_plugin = "secretmem"`; the
//! objects, mappings and contents are files of ours ([`index`]), not named `*.img`.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod dump;
pub mod index;
mod remote;
pub mod restore;
pub mod seal;
mod sys;

use std::os::fd::OwnedFd;

use criu_plugin_api::{
    API_VERSION, DumpContext, FdDesc, FdHandler, FileRestorer, Plugin, PluginError, PluginInfo,
    PluginRegistration, PluginState, RestoreContext, RunKind, VmaDesc, VmaHandler,
};
use criu_proto::images::{FdTypes, FileEntry};

/// The plugin's name (also the value of `ext_file_entry.criu_rs_plugin`).
pub const NAME: &str = "secretmem";

/// The `/proc/PID/fd/N` link and `/proc/PID/maps` name of secret memory.
pub const LINK: &str = "/secretmem (deleted)";

/// memfd_secret fds and mappings.
#[derive(Debug, Default)]
pub struct SecretmemPlugin;

/// The registered instance.
pub static PLUGIN: SecretmemPlugin = SecretmemPlugin;

inventory::submit! { PluginRegistration::new(&PLUGIN) }

/// A [`seal::SealError`] as the plugin contract's error: a bad or foreign file is a bad
/// image named by its file, anything else (no key, a bad key file) is refused with the way out.
pub(crate) fn seal_err(pid: i32, e: seal::SealError) -> PluginError {
    let who = if pid > 0 {
        format!(" (secret memory of pid {pid})")
    } else {
        String::new()
    };
    match e {
        seal::SealError::Format { file } => PluginError::bad_image(
            file,
            format!("not a criu-rs secretmem file (bad magic or mode){who}"),
        ),
        seal::SealError::Tampered { file } => PluginError::bad_image(
            file,
            format!("authentication failed{who}: wrong --secret-key, or the image was changed"),
        ),
        // No key, a bad key file, a clear image under a key: the message says what to do.
        other => PluginError::Plugin {
            plugin: NAME.into(),
            message: format!("{other}{who}"),
        },
    }
}

impl Plugin for SecretmemPlugin {
    fn info(&self) -> PluginInfo {
        PluginInfo {
            name: NAME,
            version: env!("CARGO_PKG_VERSION"),
            priority: 130,
            api_version: API_VERSION,
        }
    }

    fn fd_handler(&self) -> Option<&dyn FdHandler> {
        Some(self)
    }

    fn vma_handler(&self) -> Option<&dyn VmaHandler> {
        Some(self)
    }

    fn new_state(&self, run: RunKind) -> Result<Option<PluginState>, PluginError> {
        Ok(Some(match run {
            RunKind::Dump => Box::new(dump::DumpState::default()),
            RunKind::Restore => Box::new(restore::RestoreState::default()),
        }))
    }
}

impl FdHandler for SecretmemPlugin {
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

/// Opens secretmem fds from the restore state (shared with the VMA handler).
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

impl VmaHandler for SecretmemPlugin {
    fn vma_kinds(&self) -> &[&str] {
        &["secretmem"]
    }

    fn claims_vma(&self, vma: &VmaDesc) -> bool {
        vma.name == LINK
    }

    fn dump_vma(&self, ctx: &mut dyn DumpContext, vma: &VmaDesc) -> Result<(), PluginError> {
        dump::dump_vma(ctx, vma)
    }

    fn restore_vma(&self, ctx: &mut dyn RestoreContext, vma: &VmaDesc) -> Result<(), PluginError> {
        restore::restore_vma(ctx, vma)
    }
}
