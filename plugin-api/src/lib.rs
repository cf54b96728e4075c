//! The contract between the criu engine (the host) and its resource plugins.
//!
//! Every kind of resource a task can hold (regular files, pipes, sockets, timers...) is
//! handled by a plugin; the core knows no resource kind by name. For each fd of a dumped task
//! the core builds an [`FdDesc`], asks the plugins in priority order which one
//! [`claims`](FdHandler::claims) it ([`find_fd_handler`]), and calls its
//! [`dump_file`](FdHandler::dump_file) once per open file description. On restore it calls
//! each handler's [`start_restore`](FdHandler::start_restore) (a [`FileRestorer`] holding that
//! restore's state) and opens each `files.img` entry with the restorer of the first handler
//! that [`restores`](FdHandler::restores) it ([`FileRestore`]).
//! Plugins talk to the images and to the core only through [`DumpContext`] and
//! [`RestoreContext`].
//!
//! # Shape (for the later stable ABI)
//! This crate is the "interface" role of abi_stable's three roles; plugin crates are the
//! implementations, `criu-core` the host. The interface is kept convertible to abi_stable
//! mechanically: plain data types ([`FdDesc`], [`PluginInfo`], [`ImageRef`], prost messages
//! which cross as bytes when needed), object-safe traits without generic methods, owned or
//! borrowed simple types, an [`API_VERSION`] checked by [`check_api_version`], a growable
//! `#[non_exhaustive]` [`PluginError`], and optional capabilities that default to "nothing
//! to do" (a prefix-type module whose later fields are optional, in abi_stable terms).
//! Built-in plugins register with `inventory` ([`PluginRegistration`]) and come back from
//! [`builtin_plugins`] sorted by priority, then name.
//!
//! # What the host (criu-core) does around the hooks
//! Dump:
//! 1. Link the built-in plugin crates into the binary (`use criu_plugin_files as _;`) and
//!    take [`builtin_plugins`] (then dynamically loaded ones, [`sort_plugins`]).
//! 2. Per fd: duplicate it with `pidfd_getfd` (the same open file description), read the
//!    `/proc/PID/fd/N` link and `/proc/PID/fdinfo/N`, `fstat` it, fill [`FdDesc::owner`]
//!    from `F_GETOWN_EX`/`F_GETSIG`.
//! 3. Group fds by open file description (kcmp `KCMP_FILE`); per description: a fresh id,
//!    [`find_fd_handler`], [`FdHandler::dump_file`], the returned entry to `files.img`.
//!    Write each fd's `fdinfo_entry` (`FD_CLOEXEC` from [`FdInfo::cloexec`]).
//! 4. One [`DumpContext`] for the whole dump (its memo spans all tasks); record the names of
//!    the plugins used in the inventory.
//!
//! Restore:
//! 1. [`FileRestore::start`] once, with every `files.img` entry.
//! 2. [`FileRestore::open`] per description, in the process that will be (or will fork) the
//!    task; `dup2` it to each fd number of that id; set `FD_CLOEXEC` from
//!    `fdinfo_entry.flags`. Drop the [`FileRestore`] when the tree is restored.
//! 3. [`RestoreContext::keep_fd`] moves kept fds above every fd number a restored task uses.
//!    Kept fds are inherited by forked tasks: before a task resumes, close every fd it
//!    did not have (a kept pipe write end left open would hide EOF from the reader).
//!
//! # A complete minimal plugin
//! It dumps `/dev/null` fds as CRIU REG entries and reopens them on restore.
//!
//! ```
//! use std::os::fd::OwnedFd;
//! use criu_plugin_api::{
//!     DumpContext, FdDesc, FdHandler, FileRestorer, Plugin, PluginError, PluginInfo,
//!     PluginRegistration, RestoreContext, API_VERSION,
//! };
//! use criu_proto::images::{FdTypes, FileEntry, RegFileEntry};
//!
//! struct DevNull;
//!
//! impl Plugin for DevNull {
//!     fn info(&self) -> PluginInfo {
//!         PluginInfo { name: "devnull", version: "0.1.0", priority: 50, api_version: API_VERSION }
//!     }
//!     fn fd_handler(&self) -> Option<&dyn FdHandler> {
//!         Some(self)
//!     }
//! }
//!
//! impl FdHandler for DevNull {
//!     fn fd_types(&self) -> &[FdTypes] {
//!         &[FdTypes::Reg]
//!     }
//!     fn claims(&self, fd: &FdDesc) -> bool {
//!         fd.link == "/dev/null"
//!     }
//!     fn restores(&self, entry: &FileEntry) -> bool {
//!         entry.reg.as_ref().is_some_and(|r| r.name == "/dev/null")
//!     }
//!     fn dump_file(&self, _ctx: &mut dyn DumpContext, fd: &FdDesc, id: u32)
//!         -> Result<FileEntry, PluginError>
//!     {
//!         let reg = RegFileEntry {
//!             id,
//!             flags: fd.fdinfo.file_flags(),
//!             pos: 0,
//!             fown: fd.owner.to_entry(),
//!             name: "/dev/null".into(),
//!             mode: Some(fd.stat.mode),
//!             ..Default::default()
//!         };
//!         Ok(FileEntry { r#type: FdTypes::Reg as i32, id, reg: Some(reg), ..Default::default() })
//!     }
//!     fn start_restore(&self, _ctx: &mut dyn RestoreContext, _entries: &[FileEntry])
//!         -> Result<Box<dyn FileRestorer>, PluginError>
//!     {
//!         Ok(Box::new(DevNullRestorer)) // nothing to read ahead, no state
//!     }
//! }
//!
//! struct DevNullRestorer;
//!
//! impl FileRestorer for DevNullRestorer {
//!     fn open_file(&mut self, _ctx: &mut dyn RestoreContext, entry: &FileEntry)
//!         -> Result<OwnedFd, PluginError>
//!     {
//!         let write = entry.reg.as_ref().is_some_and(|r| r.flags & 3 != 0);
//!         std::fs::OpenOptions::new().read(!write).write(write).open("/dev/null")
//!             .map(OwnedFd::from)
//!             .map_err(|source| PluginError::Path { path: "/dev/null".into(), op: "open", source })
//!     }
//! }
//!
//! static PLUGIN: DevNull = DevNull;
//! inventory::submit! { PluginRegistration::new(&PLUGIN) }
//!
//! let all = criu_plugin_api::builtin_plugins();
//! assert!(all.iter().any(|p| p.info().name == "devnull"));
//! ```
//!
//! # Plugins to come, and what each will need from this API
//! - **pidfds**: run after all tasks exist (a stage hook "all tasks forked"), then reopen
//!   with `pidfd_open` by *restored* pid ([`RestoreContext::restored_pid`]).
//! - **memfd_secret**: its pages are readable only from inside the task: a VMA handler
//!   capability plus remote read/write syscalls (parasite) offered by the context.
//! - **io_uring**: the ring mappings are VMAs of the fd: VMA handler claiming mappings of a
//!   file it dumps, ring state from fdinfo ([`FdInfo::raw`]), restore ordered before memory.
//! - **unix sockets**: peers across tasks, queued data with `SCM_RIGHTS`/`SCM_CREDENTIALS`/
//!   `SCM_PIDFD`: file ids of in-flight fds (ask the core to dump an fd that is not in any
//!   table), and restore ordering between descriptions (open after the files they carry).
//! - **TCP (repair mode) + network lock**: per-socket repair calls, plus whole-dump stage
//!   hooks to lock/unlock the network around the dump.
//! - **POSIX mqueues**: reading queued messages without consuming them (needs the mqueue
//!   mount and the task's ipc namespace from the context).
//! - **arm64 GCS / x86 shadow stacks**: per-thread state (a task-state capability with
//!   per-thread hooks) and special VMAs (VMA handler).
//! - **eBPF network lock**: whole-dump stage hooks (before freeze, after dump, on failure).
//!
//! New capabilities are added as new optional [`Plugin`] methods defaulting to `None`, and
//! new context services as context methods, bumping [`API_VERSION`]'s minor number.

#![deny(unsafe_code)]
#![warn(missing_docs)]

mod context;
mod cursor;
mod dispatch;
mod error;
mod fd;
pub mod ffi;
mod handler;
mod image_kind;
mod plugin;
pub mod testing;

/// The protobuf image types, re-exported so that a plugin can depend on this crate alone.
pub use criu_proto as proto;

pub use context::{
    DEFAULT_GHOST_LIMIT, DumpContext, DumpOptions, ImageRef, RestoreContext, RestoreOptions,
};
pub use cursor::{ImageCursor, frame_entries};
pub use dispatch::{FdHandlerRef, FileRestore, fd_handlers, find_fd_handler, find_restore_handler};
pub use error::PluginError;
pub use fd::{FdDesc, FdInfo, FileOwner, FileStat, O_CLOEXEC, Timespec, require_no_owner};
pub use handler::{FdHandler, FileRestorer, fd_type_name};
pub use image_kind::PluginImageKind;
pub use plugin::{
    API_VERSION, ApiVersion, Plugin, PluginInfo, PluginRegistration, builtin_plugins,
    check_api_version, sort_plugins,
};

/// Appends a prost message (encoded here) with trailing raw bytes to `image`: the typed
/// convenience over [`DumpContext::write_entry`].
pub fn write_message<M: prost::Message>(
    ctx: &mut dyn DumpContext,
    image: ImageRef,
    message: &M,
    extra: &[u8],
) -> Result<(), PluginError> {
    ctx.write_entry(image, &message.encode_to_vec(), extra)
}

/// Every entry of a single-entry-per-record image (`remap-fpath.img`, ...) decoded, `[]`
/// when the image is absent.
pub fn read_messages<M: prost::Message + Default>(
    ctx: &mut dyn RestoreContext,
    image: ImageRef,
) -> Result<Vec<M>, PluginError> {
    let Some(body) = ctx.read_image(image)? else {
        return Ok(Vec::new());
    };
    let mut cursor = ImageCursor::new(image, &body);
    let mut out = Vec::new();
    while let Some(m) = cursor.next_entry()? {
        out.push(m);
    }
    Ok(out)
}
