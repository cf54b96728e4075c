//! The file descriptor capability: dump one open file description, restore it.

use std::os::fd::OwnedFd;

use criu_proto::images::{FdTypes, FileEntry};

use crate::{DumpContext, FdDesc, PluginError, RestoreContext};

/// Dumps and restores one family of open files (regular files, pipes, sockets, ...).
///
/// Dump: the core enumerates a task's fds, asks handlers in priority order whether they
/// [`claims`](FdHandler::claims) each one, groups fds sharing one open file description
/// (kcmp `KCMP_FILE`), assigns the description an id and calls
/// [`dump_file`](FdHandler::dump_file) once per description. It writes the returned entry
/// to `files.img` and the fd's `fdinfo_entry` itself.
///
/// Restore: the core reads `files.img` and calls [`start_restore`](FdHandler::start_restore)
/// once per restore with every entry; the returned [`FileRestorer`] holds this restore's
/// state (side images read, pipes created) and opens each description a task needs
/// ([`FileRestorer::open_file`]). The core dup2s the returned fd to every fd number of that
/// id and applies `FD_CLOEXEC` from `fdinfo_entry.flags`. Handlers themselves stay
/// stateless, so restores running side by side in one process cannot mix.
pub trait FdHandler: Sync {
    /// The `files.img` entry types this handler restores ([`FdHandler::restores`] checks
    /// an entry against them).
    fn fd_types(&self) -> &[FdTypes];

    /// Whether this handler dumps `fd`. "Not mine" lets the next handler be asked. Cheap and
    /// side-effect free: look at [`FdDesc::link`], [`FdDesc::stat`], [`FdDesc::fdinfo`].
    fn claims(&self, fd: &FdDesc) -> bool;

    /// Dumps the open file description behind `fd` under file id `id`: returns its
    /// `files.img` entry (`type`, `id` and the matching member, e.g. `reg` or `pipe`) and
    /// writes side images (pipe data, ghost files) through `ctx`. Must leave the task's
    /// state as it was (read pipe data with `tee`, not `read`).
    fn dump_file(
        &self,
        ctx: &mut dyn DumpContext,
        fd: &FdDesc,
        id: u32,
    ) -> Result<FileEntry, PluginError>;

    /// Whether this handler restores `entry`: by default, whether its type is one of
    /// [`FdHandler::fd_types`].
    fn restores(&self, entry: &FileEntry) -> bool {
        self.fd_types().iter().any(|&t| t as i32 == entry.r#type)
    }

    /// Starts this handler's part of one restore, before any file is opened: `entries` is
    /// every entry of `files.img` (not only this handler's: a FIFO needs the REG entry holding
    /// its path). Read side images here and keep what they say in the returned restorer.
    fn start_restore(
        &self,
        ctx: &mut dyn RestoreContext,
        entries: &[FileEntry],
    ) -> Result<Box<dyn FileRestorer>, PluginError>;
}

/// One restore's worth of a handler's state; dropped when the restore is over.
///
/// The core may open a description in an ancestor of the task that uses it (to be inherited
/// across fork): do not assume the caller is its owner. Restorers live in the restorer's
/// memory, which tasks forked later inherit together with the context's kept fds.
pub trait FileRestorer: Send {
    /// Opens the file description `entry` describes in the current process and returns it,
    /// with its file flags (`O_NONBLOCK`, `O_APPEND`...) and offset restored. The core
    /// installs it at the task's fd numbers.
    fn open_file(
        &mut self,
        ctx: &mut dyn RestoreContext,
        entry: &FileEntry,
    ) -> Result<OwnedFd, PluginError>;
}

/// The CRIU name of an `fd_types` value (`"REG"`, `"PIPE"`), or its number when unknown.
pub fn fd_type_name(value: i32) -> String {
    match FdTypes::try_from(value) {
        Ok(t) => t.as_str_name().to_string(),
        Err(_) => value.to_string(),
    }
}
