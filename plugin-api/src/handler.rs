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

/// One restore's worth of a handler's state; dropped when the restore is over (after the
/// last stage hook, [`crate::RestoreStage::AfterResume`] or [`crate::RestoreStage::Failed`]).
///
/// The core may open a description in an ancestor of the task that uses it (to be inherited
/// across fork): do not assume the caller is its owner. Restorers live in the restorer's
/// memory, which tasks forked later inherit together with the context's kept fds.
///
/// # When a restored fd is live
/// The description [`open_file`](FileRestorer::open_file) returns is installed at the
/// task's fd numbers before the task runs a single instruction of its own; tasks stay
/// stopped under the restorer until every task exists and every stage up to
/// [`crate::RestoreStage::BeforeResume`] ran. The kernel object is live from `open_file` on,
/// though: a timer armed there already counts, TCP timers and keepalives already run. So
/// state that depends on time is finished in [`finish`](FileRestorer::finish), the last
/// plugin call before the tree resumes: keep a duplicate of what `open_file` returned (same
/// open file description) and re-arm it there.
pub trait FileRestorer: Send {
    /// Opens the file description `entry` describes in the current process and returns it,
    /// with its file flags (`O_NONBLOCK`, `O_APPEND`...) and offset restored. The core
    /// installs it at the task's fd numbers.
    fn open_file(
        &mut self,
        ctx: &mut dyn RestoreContext,
        entry: &FileEntry,
    ) -> Result<OwnedFd, PluginError>;

    /// The last step before the tree resumes (API 0.5): every task exists and is complete
    /// (memory, files, credentials, registers), still stopped under the restorer, after every
    /// [`crate::RestoreStage::BeforeResume`] hook. `installed` lists every fd a task got from
    /// this restorer's [`open_file`](FileRestorer::open_file) calls: (restored pid, fd
    /// number, `files.img` id), by pid then fd. The task services work (remote syscalls,
    /// memory, [`RestoreContext::dup_task_fd`]). An error fails the restore (every task is
    /// killed). Called once per restore, also when `installed` is empty; the default does
    /// nothing.
    fn finish(
        &mut self,
        ctx: &mut dyn RestoreContext,
        installed: &[InstalledFd],
    ) -> Result<(), PluginError> {
        let _ = (ctx, installed);
        Ok(())
    }
}

/// An fd a restored task got from a [`FileRestorer`], for [`FileRestorer::finish`].
/// (API 0.5)
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InstalledFd {
    /// The restored task's pid.
    pub pid: i32,
    /// The fd number in that task.
    pub fd: i32,
    /// The `files.img` id of the description behind it.
    pub id: u32,
}

/// The CRIU name of an `fd_types` value (`"REG"`, `"PIPE"`), or its number when unknown.
pub fn fd_type_name(value: i32) -> String {
    match FdTypes::try_from(value) {
        Ok(t) => t.as_str_name().to_string(),
        Err(_) => value.to_string(),
    }
}
