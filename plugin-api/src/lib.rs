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
//! A plugin may also have [`StageHooks`] ([`Plugin::stage_hooks`]): calls at fixed points of
//! the whole dump ([`DumpStage`]: before freeze, after freeze, after dump, on failure) and
//! restore ([`RestoreStage`]: before restore, after every task exists, before resume, after
//! resume, on failure); a [`VmaHandler`] ([`Plugin::vma_handler`]) for memory areas whose
//! contents it carries itself (the core asks it about each VMA before its own page dump);
//! a [`TaskHandler`] ([`Plugin::task_handler`]) for per-task and per-thread state.
//! Plugins talk to the images, to the core and to the tasks only through [`DumpContext`] and
//! [`RestoreContext`]: images and plugin-owned files, the tree ([`DumpContext::tasks`]),
//! task memory ([`DumpContext::read_task_memory`], [`RestoreContext::write_task_memory`]),
//! remote system calls in a stopped task ([`DumpContext::remote_syscall`]), fds taken from a
//! task ([`DumpContext::dup_task_fd`]) or put into a restored one
//! ([`RestoreContext::install_fd`]), the restored pids ([`RestoreContext::restored_pid`]).
//! A service used where it cannot work (task memory before the freeze or once the tasks
//! run, a pid outside the tree) fails with [`PluginError::Unavailable`].
//!
//! # State for one dump or one restore
//! A plugin is a `Sync` static; what it learns during one run lives in a typed object of its
//! own: [`Plugin::new_state`] creates it when a dump or a restore starts ([`RunKind`]), every
//! call of that plugin in the run gets it back through the context (`ctx.state::<T>()`:
//! fd calls, stage hooks, VMA and task handlers, the restorer), and it is dropped when the
//! run ends, failed or not. No other plugin sees it; across the stable ABI it stays inside
//! the plugin's `.so`. (The string-keyed [`DumpContext::memo`] of API 0.3/0.4 still works,
//! deprecated.)
//!
//! ```
//! use criu_plugin_api::{DumpContext, PluginError, PluginState, RunKind};
//! use std::collections::HashSet;
//!
//! #[derive(Default)]
//! struct Seen(HashSet<u64>); // e.g. the pipes whose data this dump wrote
//!
//! // The body of `Plugin::new_state`:
//! fn new_state(run: RunKind) -> Result<Option<PluginState>, PluginError> {
//!     Ok((run == RunKind::Dump).then(|| Box::new(Seen::default()) as PluginState))
//! }
//!
//! // In a hook: true the first time this dump meets `ino`.
//! fn first_time(ctx: &mut dyn DumpContext, ino: u64) -> Result<bool, PluginError> {
//!     Ok(ctx.state::<Seen>()?.0.insert(ino))
//! }
//! ```
//!
//! # Files in flight (API 0.6)
//! A file can live in no task's fd table and still be part of the tree's state: an fd sent
//! with `SCM_RIGHTS` and not yet received sits in the receiving socket's queue. The plugin
//! of the carrying resource takes such a file into criu (e.g. `recvmsg(MSG_PEEK)` on
//! [`FdDesc::file`], which installs the fds in criu, not in the task) and hands each to
//! [`DumpContext::dump_file_in_flight`]: the core gives it a `files.img` id (the same id as
//! any task fd or other file in flight with the same open file description, found with
//! `kcmp`), and has the plugin claiming it dump it like a task's fd, with
//! [`FdDesc::fd`] = [`FdDesc::IN_FLIGHT`] (so a pipe keeps its data, a regular file its
//! offset). The carrying plugin stores only the id. At restore, its restorer gets the very
//! description back with [`RestoreContext::open_file_by_id`] (opened once per restore,
//! shared with any task holding it) and sends it again. Entries no task holds are fine in
//! `files.img`: the restore opens them only when asked.
//!
//! ```
//! use std::os::fd::{BorrowedFd, OwnedFd};
//! use criu_plugin_api::{DumpContext, PluginError, RestoreContext};
//!
//! // Dump: `peeked` came out of a queued message of a socket of task `pid`.
//! fn carried_id(ctx: &mut dyn DumpContext, pid: i32, peeked: BorrowedFd<'_>) -> Result<u32, PluginError> {
//!     ctx.dump_file_in_flight(pid, peeked)
//! }
//!
//! // Restore, in the restorer's open_file or finish: the description to send again.
//! fn to_send(ctx: &mut dyn RestoreContext, id: u32) -> Result<OwnedFd, PluginError> {
//!     ctx.open_file_by_id(id)
//! }
//! ```
//!
//! # Logging
//! Plugins log with `tracing` ([`tracing`], re-exported). A built-in plugin's events go to
//! criu's subscriber as they are; a loaded `.so` has its own copy of `tracing`, so
//! [`export_plugin!`] gives it a forwarder at load time (API 0.5): each event is formatted in
//! the plugin (message, then `field=value`) and written to criu's log (`-o`, `-v`) at its
//! level with the plugin's name as target. Spans of a loaded plugin are not forwarded.
//!
//! # Priorities
//! Plugins are asked in [`PluginInfo::priority`] order, lower first; the first whose handler
//! claims an fd (or a VMA, or restores a `files.img` entry) gets it. Ranges:
//! - **1-99**: a plugin meant to take a resource over from a built-in one (the example
//!   eventfd plugin declares 90, below the built-in eventfd plugin's 110).
//! - **100-299**: the built-in plugins: specific kinds first (`pipes` 100, `eventfd` 110,
//!   `epoll` 120, `memfd` 140, `tty` 150), `files` (anything with a path) last at 200.
//! - **300-999**: a plugin adding a kind no built-in handles (sockets, timerfds, pidfds...):
//!   asked after the built-ins, so it never steals their fds; its `claims` must still be
//!   precise, since a later plugin may handle more.
//! - 1000 and above: catch-all or diagnostic plugins, asked last.
//!
//! Ties are broken by name.
//!
//! # Built-in and loadable plugins
//! This crate is the "interface" role of abi_stable's three roles; plugin crates are the
//! implementations, `criu-core` the host. Every plugin is written against the Rust traits
//! below. A built-in plugin registers with `inventory` ([`PluginRegistration`]) and comes
//! back from [`builtin_plugins`] sorted by priority, then name. A loadable plugin is the same
//! code built as a `cdylib` with [`export_plugin!`]: the [`ffi`] module turns it into an
//! abi_stable root module (plain `#[repr(C)]` data, prost-encoded entries as bytes,
//! `#[sabi_trait]` contexts, panics caught and returned as errors), and the host turns a
//! loaded root module back into a `&'static dyn Plugin` ([`ffi::load_plugin`]), so the core
//! sees one trait for both. The compatibility rules are in [`ffi`]; [`API_VERSION`] is
//! checked by [`check_api_version`] and at load time.
//!
//! # What the host (criu-core) does around the hooks
//! Dump:
//! 1. Link the built-in plugin crates into the binary (`use criu_plugin_files as _;`) and
//!    take [`builtin_plugins`] (then dynamically loaded ones, [`sort_plugins`]).
//! 2. Per fd: duplicate it with `pidfd_getfd` (the same open file description), read the
//!    `/proc/PID/fd/N` link and `/proc/PID/fdinfo/N`, `fstat` it, fill [`FdDesc::owner`]
//!    from `F_GETOWN_EX`/`F_GETSIG`.
//! 3. Group fds by open file description (kcmp `KCMP_FILE`) and give every fd of the task
//!    its id first ([`DumpContext::file_id_of`] answers from then on); then per new
//!    description: [`find_fd_handler`], [`FdHandler::dump_file`], the entry to `files.img`.
//!    Write each fd's `fdinfo_entry` (`FD_CLOEXEC` from [`FdInfo::cloexec`]).
//! 4. One [`DumpContext`] for the whole dump, and each plugin's state ([`PluginStates`],
//!    created before [`DumpStage::BeforeFreeze`], lent to each call of its plugin, dropped
//!    when the dump ends); record the names of the plugins used in the inventory.
//! 5. Per task, the files behind its mappings (exe, mapped files, memfd mappings whose fd
//!    may be closed) as [`FdDesc`]s (`fd` -1, flags 0, opened through
//!    `/proc/PID/map_files`), dumped once per inode by the fd handler claiming them; a VMA
//!    whose file came back as a MEMFD entry is marked `VMA_AREA_MEMFD`, as CRIU. Shared
//!    memory contents a plugin owns go through [`DumpContext::dump_shmem`] (CRIU's
//!    `pagemap-shmem-<shmid>.img`) and come back with [`RestoreContext::restore_shmem`].
//!    Then, before its pages: each VMA offered to the VMA handlers
//!    ([`find_vma_handler`]); a claimed one stays in `mm.img` but its pages are the plugin's
//!    ([`VmaHandler::dump_vma`]); each claimed VMA's `vma_entry` in `mm.img` names the plugin and the mapping (criu-rs's
//!    fields `criu_rs_plugin`, `criu_rs_name`). After the task:
//!    every [`TaskHandler::dump_task`].
//! 6. Stage hooks ([`run_dump_stage`]) with that same context: [`DumpStage::BeforeFreeze`],
//!    then the freeze, [`DumpStage::AfterFreeze`] (task services on), the dump above,
//!    [`DumpStage::AfterDump`] (tasks still frozen), release. Any failure, a hook's
//!    included: [`DumpStage::Failed`], the tasks are resumed and the images removed.
//!
//! Restore:
//! 1. [`FileRestore::start`] once, with every `files.img` entry (it creates every plugin's
//!    restore state first).
//! 2. [`FileRestore::open`] per description, in the process that will be (or will fork) the
//!    task; `dup2` it to each fd number of that id; set `FD_CLOEXEC` from
//!    `fdinfo_entry.flags`. The fd is in the task from then on, but the task runs only once
//!    the whole tree resumes (see [`FileRestorer`], "When a restored fd is live").
//! 3. [`RestoreContext::keep_fd`] moves kept fds above every fd number a restored task uses.
//!    Kept fds are inherited by forked tasks: before a task resumes, close every fd it
//!    did not have (a kept pipe write end left open would hide EOF from the reader).
//! 4. Stage hooks ([`run_restore_stage`]): [`RestoreStage::BeforeRestore`] once the plugins'
//!    restores started (a VMA claimed by a plugin that is not loaded is refused before),
//!    [`RestoreStage::AfterTasksExist`] once every task and thread exists (memory and files
//!    restored, credentials not yet applied; first every claimed VMA's
//!    [`VmaHandler::restore_vma`], then the stage's hooks, then every task's
//!    [`TaskHandler::restore_task`], which finds the fds the hooks put in place),
//!    [`RestoreStage::BeforeResume`] when the tree is complete but stopped, then
//!    [`FileRestore::finish`]: every restorer's [`FileRestorer::finish`] with the (pid, fd,
//!    id) it installed, the last call before the tasks are detached;
//!    [`RestoreStage::AfterResume`] once detached. Task services work from after-tasks-exist
//!    to finish. Any failure, a hook's included: [`RestoreStage::Failed`], then every
//!    created task is killed.
//! 5. After the after-resume (or failure) hooks, drop the [`FileRestore`]: the restorers and
//!    the plugins' states go, then the kept fds, before criu waits for the root (a kept pipe
//!    end would hide EOF from the tree).
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
//! # A loadable plugin
//! The same plugin, shipped as `libcriu_devnull.so` for `criu --plugin-dir DIR`: a crate with
//! `crate-type = ["cdylib"]` depending on `criu-plugin-api` alone (the protobuf types come
//! re-exported as [`proto`]), whose `lib.rs` ends with
//!
//! ```text
//! pub static PLUGIN: DevNull = DevNull;
//! criu_plugin_api::export_plugin!(PLUGIN);
//! ```
//! `plugins/examples/eventfd` in the criu-rs tree is a complete one (eventfds, with a
//! workload and the end-to-end test that loads it).
//!
//! # Plugins to come, and how each uses this API
//! Capabilities today: the fd handler ([`Plugin::fd_handler`]), stage hooks
//! ([`Plugin::stage_hooks`]), the VMA handler ([`Plugin::vma_handler`]) and the task handler
//! ([`Plugin::task_handler`]); the contexts give the tree's task ids, the images (CRIU-format
//! entries through [`DumpContext::write_entry`] / [`RestoreContext::read_image`],
//! plugin-owned files through [`DumpContext::write_plugin_file`] /
//! [`RestoreContext::read_plugin_file`]), task memory, remote syscalls, fd duplication and
//! installation, the restored pid map, a state object per run ([`Plugin::new_state`]), the
//! restorers' last step before resume ([`FileRestorer::finish`]) and logging through
//! `tracing` (loaded plugins' events forwarded, see "Logging").
//! Each further addition is a new optional capability (a [`Plugin`] method defaulting to
//! "none", a capability token and an optional root-module field in [`ffi::PluginMod`]) or a
//! new context method after the last prefix field of the `#[sabi_trait]` contexts, with a
//! minor [`API_VERSION`] bump: older plugins keep loading, and a newer plugin on an older
//! criu is refused by version with a message naming both.
//! - **pidfds**: an fd handler for `anon_inode:[pidfd]` that dumps the target's pid from
//!   fdinfo (`Pid:`); the target may be restored after the holder, so the open waits for
//!   [`RestoreStage::AfterTasksExist`]: `pidfd_open` by [`RestoreContext::restored_pid`]
//!   in the restorer, then [`RestoreContext::install_fd`] at the dumped number.
//! - **memfd_secret** (built: `plugins/secretmem`): its pages are readable only from inside
//!   the task (not through `process_vm_readv`): a [`VmaHandler`] claiming `secretmem` VMAs
//!   (the core classifies them as plugin-only placeholders, having no map_files link, and
//!   refuses a dump where no handler claims one); [`VmaHandler::dump_vma`] creates a pipe in
//!   the frozen task (remote `pipe2` into a scratch page) and has it `write` its pages there
//!   ([`DumpContext::remote_syscall`], the read end fetched with
//!   [`DumpContext::dup_task_fd`]); [`VmaHandler::restore_vma`] has the task fetch criu's
//!   `memfd_secret` fd (remote `pidfd_open` + `pidfd_getfd`), `mmap(MAP_FIXED)` it over the
//!   placeholder and `read` the pages from a pipe fetched the same way. Its images are
//!   encrypted with [`DumpOptions::secret_key`] when given.
//! - **io_uring**: an fd handler for `anon_inode:[io_uring]` (ring parameters from fdinfo,
//!   [`FdInfo::raw`]) plus a [`VmaHandler`] claiming the ring mappings (VMAs of that fd):
//!   ring memory read with [`DumpContext::read_task_memory`], and on restore re-mapped by a
//!   remote `mmap` of the restored ring fd at the dumped address in
//!   [`VmaHandler::restore_vma`].
//! - **unix sockets** with queued `SCM_RIGHTS`/`SCM_CREDENTIALS`/`SCM_PIDFD`: the fds inside
//!   queued messages are in no fd table. `recvmsg(MSG_PEEK)` (with `SO_PEEK_OFF`) on
//!   [`FdDesc::file`] installs them in criu without consuming the queue; each goes to
//!   [`DumpContext::dump_file_in_flight`] from the fd handler (see "Files in flight"), which
//!   returns its file id for the queue entry. Peers in other tasks are found through
//!   [`DumpContext::tasks`], and the socket graph is kept in the plugin's dump state
//!   ([`Plugin::new_state`]) across every task. On restore the restorer sends the messages
//!   again with [`RestoreContext::open_file_by_id`] for each fd (in
//!   [`FileRestorer::finish`], once every file exists, or in `open_file`); sockets of its
//!   own it opens itself; `SCM_PIDFD` is reopened by restored pid.
//! - **TCP** (repair mode): [`DumpStage::BeforeFreeze`] locks the network,
//!   [`DumpStage::AfterFreeze`] puts each socket in repair mode with remote `setsockopt`
//!   ([`DumpContext::remote_syscall`]) and reads queues and sequence numbers;
//!   [`RestoreStage::BeforeResume`] leaves repair mode, [`RestoreStage::AfterResume`]
//!   unlocks, and both `Failed` stages unlock too.
//! - **timerfds, POSIX timers**: the fd handler reads the timer with `timerfd_gettime` on
//!   [`FdDesc::file`] (read-only) and the clock from fdinfo ([`FdInfo::parse`]); its
//!   restorer creates the timer disarmed in `open_file`, keeps a duplicate, and arms it in
//!   [`FileRestorer::finish`], just before the tree resumes, with the time elapsed since the
//!   dump accounted for.
//! - **POSIX message queues** (built: `plugins/mqueue`): an fd handler claiming files of
//!   the mqueue filesystem; the messages are taken out through a description of criu's own
//!   (reopened from [`FdDesc::file`]) while the tree is frozen and sent back in order before
//!   `dump_file` returns; an `mq_notify` registration is learnt and made again inside its
//!   owner with [`DumpContext::remote_syscall`], and at restore in
//!   [`FileRestorer::finish`]. A plugin-owned file, EXT entries in `files.img`.
//! - **arm64 GCS / x86 shadow stacks**: a [`TaskHandler`] (per-thread state: remote
//!   `prctl` / `arch_prctl` per tid of [`TaskIds::tids`] in [`TaskHandler::dump_task`],
//!   re-enabled per restored tid in [`TaskHandler::restore_task`]) and a [`VmaHandler`]
//!   claiming the shadow-stack VMAs (contents read with [`DumpContext::read_task_memory`],
//!   re-created with a remote `map_shadow_stack` at the dumped address and filled).
//! - **eBPF network lock**: only whole-dump stage hooks ([`DumpStage::BeforeFreeze`] loads
//!   the filter, [`DumpStage::AfterDump`] and [`DumpStage::Failed`] unload it;
//!   [`RestoreStage::BeforeRestore`] loads, [`RestoreStage::AfterResume`] and
//!   [`RestoreStage::Failed`] unload), no resource of its own.
//!
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod context;
mod cursor;
mod dispatch;
mod error;
mod fd;
pub mod ffi;
mod file_restore;
mod handler;
mod hooks;
mod image_kind;
mod plugin;
mod state;
pub mod testing;
mod vma;

/// The protobuf image types, re-exported so that a plugin can depend on this crate alone.
pub use criu_proto as proto;
/// The `tracing` crate plugins log with (API 0.5): events of a built-in plugin go to criu's
/// subscriber directly, those of a loaded `.so` through the forwarder [`export_plugin!`]
/// installs (target: the plugin's name). Re-exported so that a plugin logs through the very
/// copy the forwarder listens to.
pub use tracing;

pub use context::{
    DEFAULT_GHOST_LIMIT, DumpContext, DumpOptions, ImageRef, MAX_IN_FLIGHT_DEPTH, NetworkLock,
    RestoreContext, RestoreOptions, TaskFd, TaskIds,
};
pub use cursor::{ImageCursor, frame_entries};
pub use dispatch::{FdHandlerRef, fd_handlers, find_fd_handler, find_restore_handler};
pub use error::PluginError;
pub use fd::{FdDesc, FdInfo, FileOwner, FileStat, O_CLOEXEC, Timespec, require_no_owner};
pub use file_restore::FileRestore;
pub use handler::{FdHandler, FileRestorer, InstalledFd, fd_type_name};
pub use hooks::{
    DumpStage, HookFailure, RestoreStage, StageHooks, catch_hook_panic, has_dump_hook,
    has_restore_hook, run_dump_stage, run_restore_stage,
};
pub use image_kind::PluginImageKind;
pub use plugin::{
    API_VERSION, ApiVersion, Plugin, PluginInfo, PluginRegistration, builtin_plugins,
    check_api_version, sort_plugins,
};
pub use state::{PluginState, PluginStates, RunKind};
pub use vma::{TaskHandler, VmaDesc, VmaHandler, find_vma_handler};

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
