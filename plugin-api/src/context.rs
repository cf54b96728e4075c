//! What the core offers a plugin while dumping ([`DumpContext`]) and restoring
//! ([`RestoreContext`]). The core implements both traits; plugins only call them.
//!
//! Images are named by [`ImageRef`] and exchanged as bytes: entries go out as encoded
//! protobuf messages (the core adds CRIU's framing and the image header), images come back as
//! their body (everything after the magic) which [`crate::ImageCursor`] walks. That keeps
//! this contract free of core types and of generics.

use std::os::fd::{BorrowedFd, OwnedFd};

use crate::{PluginError, PluginImageKind};

/// Default for [`DumpOptions::ghost_limit`]: CRIU's `--ghost-limit` default, 1 MiB.
pub const DEFAULT_GHOST_LIMIT: u64 = 1 << 20;

/// One image file: its kind and, for kinds with a number in the file name
/// (`ghost-file-%x.img`, `fdinfo-%u.img`), that number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ImageRef {
    /// The image kind (fixes the magic and the file name pattern).
    pub kind: PluginImageKind,
    /// The number in the file name, for kinds that have one.
    pub id: Option<u64>,
}

impl ImageRef {
    /// An image kind with a single file (`files.img`, `pipes-data.img`, ...).
    pub const fn single(kind: PluginImageKind) -> Self {
        ImageRef { kind, id: None }
    }

    /// A per-id image (`ghost-file-<id>.img`, ...).
    pub const fn numbered(kind: PluginImageKind, id: u64) -> Self {
        ImageRef { kind, id: Some(id) }
    }

    /// `files.img`.
    pub const FILES: ImageRef = ImageRef::single(PluginImageKind::Files);
    /// `pipes-data.img`.
    pub const PIPES_DATA: ImageRef = ImageRef::single(PluginImageKind::PipesData);
    /// `fifo-data.img`.
    pub const FIFO_DATA: ImageRef = ImageRef::single(PluginImageKind::FifoData);
    /// `remap-fpath.img`.
    pub const REMAP_FPATH: ImageRef = ImageRef::single(PluginImageKind::RemapFpath);

    /// `ghost-file-<id in hex>.img`.
    pub const fn ghost_file(id: u32) -> Self {
        ImageRef::numbered(PluginImageKind::GhostFile, id as u64)
    }
}

impl std::fmt::Display for ImageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The file name when it can be formed, else the kind name (a numbered kind without id).
        match self.kind.file_name(self.id) {
            Some(name) => f.write_str(&name),
            None => f.write_str(self.kind.criu_name()),
        }
    }
}

/// Dump-time options a plugin may consult. `#[non_exhaustive]`: build with `default()`
/// and set fields.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DumpOptions {
    /// Largest unlinked ("ghost") file carried in the images, in bytes (`--ghost-limit`).
    pub ghost_limit: u64,
    /// `--shell-job`: the tree may share its session and terminal with the shell it ran in
    /// (a terminal of a session outside the tree is dumped as such, not refused).
    pub shell_job: bool,
}

impl Default for DumpOptions {
    fn default() -> Self {
        DumpOptions {
            ghost_limit: DEFAULT_GHOST_LIMIT,
            shell_job: false,
        }
    }
}

/// Restore-time options a plugin may consult. `#[non_exhaustive]`: build with `default()`
/// and set fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RestoreOptions {
    /// Skip the "file changed since the dump" checks (size, mode). Off by default.
    pub skip_file_checks: bool,
    /// `--shell-job`: the tree joins the restorer's session; a terminal of the session the
    /// tree was dumped in becomes the restorer's own terminal.
    pub shell_job: bool,
}

/// Services of the core during a dump.
///
/// The core hands one context to every hook of one dump; it lives as long as the dump, so
/// [`DumpContext::memo`] state spans all tasks and fds.
pub trait DumpContext {
    /// Appends one entry to an image: `entry` is the encoded protobuf message, `extra` raw
    /// bytes written right after it (pipe data, ghost file contents; may be empty). The
    /// image is created (mode 0600, with its header) on first use.
    fn write_entry(
        &mut self,
        image: ImageRef,
        entry: &[u8],
        extra: &[u8],
    ) -> Result<(), PluginError>;

    /// Writes a whole file owned by a plugin (its own format), `name` relative to the images
    /// directory, no `/` in it. Replaces an existing file of that name.
    fn write_plugin_file(&mut self, name: &str, data: &[u8]) -> Result<(), PluginError>;

    /// A fresh file id for an extra `files.img` entry the plugin writes itself (CRIU's FIFO
    /// writes a REG entry for its path under such an id), unique within the dump.
    fn new_file_id(&mut self) -> u32;

    /// A value remembered for this dump under `key` (set with [`DumpContext::set_memo`]).
    /// Keys start with the plugin name (`"pipes:data:1234"`). Use it instead of plugin
    /// globals for "done once per dump" state.
    fn memo(&self, key: &str) -> Option<u64>;

    /// Remembers `value` under `key` for the rest of this dump.
    fn set_memo(&mut self, key: &str, value: u64);

    /// The dump options.
    fn options(&self) -> &DumpOptions;
}

/// Services of the core during a restore.
///
/// Hooks run in the restorer, in the process that will become a restored task (or in an
/// ancestor that opens files its children inherit). The context's memory, kept fds
/// included, is inherited by children forked afterwards.
pub trait RestoreContext {
    /// The body of an image (everything after its magic numbers), `None` when the file does
    /// not exist. Walk it with [`crate::ImageCursor`].
    fn read_image(&mut self, image: ImageRef) -> Result<Option<Vec<u8>>, PluginError>;

    /// A whole plugin-owned file written by [`DumpContext::write_plugin_file`], `None` when
    /// absent.
    fn read_plugin_file(&mut self, name: &str) -> Result<Option<Vec<u8>>, PluginError>;

    /// The pid of the task whose files are being opened (its pid in the images).
    fn current_pid(&self) -> i32;

    /// The pid a dumped task got on restore (`None` when not part of the restored tree).
    /// With `clone3(set_tid)` it usually equals `old`.
    fn restored_pid(&self, old: i32) -> Option<i32>;

    /// Keeps `fd` under `key` for later calls (and for children forked later): e.g. the
    /// other end of a pipe. The core moves it to an fd number out of the way of the numbers
    /// it installs restored fds at, and closes it when the task's fd table is final.
    fn keep_fd(&mut self, key: &str, fd: OwnedFd) -> Result<(), PluginError>;

    /// An fd kept with [`RestoreContext::keep_fd`].
    fn kept_fd(&self, key: &str) -> Option<BorrowedFd<'_>>;

    /// The restore options.
    fn options(&self) -> &RestoreOptions;
}
