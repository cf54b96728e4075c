//! The one error type every plugin hook returns.

use std::io;
use std::path::PathBuf;

/// What a plugin hook (or a context method the core implements for it) reports on failure.
///
/// Every variant names the thing it failed on (pid, fd, path, image, file id) so the message
/// is useful without the log. The enum is `#[non_exhaustive]`: new variants are added without
/// breaking plugins (the later stable ABI keeps that property).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    /// A system call on one fd of a dumped task failed.
    #[error("{op} failed on fd {fd} of pid {pid} ({link})")]
    Fd {
        /// Pid of the dumped task.
        pid: i32,
        /// The fd number in that task.
        fd: i32,
        /// The `/proc/PID/fd/N` link text.
        link: String,
        /// What was attempted (usually the syscall name).
        op: &'static str,
        /// The underlying failure.
        #[source]
        source: io::Error,
    },
    /// A system call on a path failed (dump or restore).
    #[error("{op} failed on {path}")]
    Path {
        /// The path operated on.
        path: PathBuf,
        /// What was attempted (usually the syscall name).
        op: &'static str,
        /// The underlying failure.
        #[source]
        source: io::Error,
    },
    /// A system call while restoring one file description failed.
    #[error("{op} failed while restoring file id {id} ({what})")]
    Restore {
        /// The file id from `files.img`.
        id: u32,
        /// A short description of the file (`pipe:[123]`, a path...).
        what: String,
        /// What was attempted (usually the syscall name).
        op: &'static str,
        /// The underlying failure.
        #[source]
        source: io::Error,
    },
    /// The plugin knows this kind of resource but cannot handle this case.
    #[error("{resource} of pid {pid} is not supported: {hint}")]
    Unsupported {
        /// What the resource is (`fd 3: pipe:[123] in packet mode`).
        resource: String,
        /// The task it belongs to (0 when not tied to one task).
        pid: i32,
        /// What the user can do about it.
        hint: String,
    },
    /// No plugin claimed an fd at dump time.
    #[error("no plugin handles fd {fd} of pid {pid} ({link}); load one with --plugin-dir")]
    NoHandler {
        /// Pid of the dumped task.
        pid: i32,
        /// The fd number.
        fd: i32,
        /// The `/proc/PID/fd/N` link text.
        link: String,
    },
    /// No loaded plugin restores a `files.img` entry of this type.
    #[error(
        "no loaded plugin restores files of type {fd_type} (file id {id}); load one with --plugin-dir"
    )]
    NoRestorer {
        /// The `fd_types` name (`UNIXSK`, `TIMERFD`, ...) or number when unknown.
        fd_type: String,
        /// The file id.
        id: u32,
    },
    /// A file on disk is not the one that was dumped.
    #[error("{path} changed since the dump: {what}")]
    FileChanged {
        /// The file.
        path: PathBuf,
        /// What differs (`size 5, expected 7`).
        what: String,
    },
    /// An unlinked file is too large to be carried in the images.
    #[error(
        "unlinked file {path} (fd {fd} of pid {pid}) holds {size} bytes, over the ghost limit of {limit}; raise it with --ghost-limit"
    )]
    GhostTooBig {
        /// The path it had before being unlinked.
        path: PathBuf,
        /// Pid of the task holding it.
        pid: i32,
        /// The fd number.
        fd: i32,
        /// Its size.
        size: u64,
        /// The configured limit.
        limit: u64,
    },
    /// An image (or an entry in it) is malformed or inconsistent.
    #[error("image {image}: {reason}")]
    BadImage {
        /// The image file name.
        image: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading or writing an image failed (reported by the core's context).
    #[error("image {image}")]
    Image {
        /// The image file name.
        image: String,
        /// The underlying failure.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A loaded plugin failed with an error this criu has no variant for (a newer plugin):
    /// its own message.
    #[error("plugin {plugin}: {message}")]
    Plugin {
        /// The plugin's name.
        plugin: String,
        /// The plugin's message.
        message: String,
    },
    /// A context service is not available at this point of the flow (task memory before the
    /// freeze, remote syscalls once the tasks run, a pid outside the tree). (API 0.3)
    #[error("{service} is not available here: {why}")]
    Unavailable {
        /// The service (`"remote_syscall"`, `"read_task_memory"`...).
        service: &'static str,
        /// Why, and at which stage.
        why: String,
    },
    /// A context service failed on a task (memory access, remote syscall, fd transfer).
    /// (API 0.3)
    #[error("{op} in task {pid} failed")]
    Task {
        /// The pid (or tid) operated on.
        pid: i32,
        /// What was attempted (`"process_vm_readv at 0x7f00"`, `"remote syscall 39"`).
        op: String,
        /// The underlying failure.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A `/proc/PID/fdinfo/N` field is missing or not in the expected form
    /// ([`crate::FdInfo::parse`] and siblings). (API 0.5)
    #[error("fdinfo field {field}: {reason}")]
    BadFdInfo {
        /// The field name (`clockid`).
        field: String,
        /// What is wrong (`no such line`, `"x" is not u64`).
        reason: String,
    },
    /// A plugin panicked inside a hook. The panic was caught at the plugin boundary (it
    /// never unwinds into the core); the plugin is not called again in this run.
    #[error("plugin {plugin} panicked: {message}")]
    Panicked {
        /// The plugin's name.
        plugin: String,
        /// The panic message.
        message: String,
    },
}

impl PluginError {
    /// Shorthand for [`PluginError::BadImage`].
    pub fn bad_image(image: impl Into<String>, reason: impl Into<String>) -> Self {
        PluginError::BadImage {
            image: image.into(),
            reason: reason.into(),
        }
    }

    /// Shorthand for [`PluginError::Path`] from a nix call.
    pub fn path(path: impl Into<PathBuf>, op: &'static str, errno: nix::errno::Errno) -> Self {
        PluginError::Path {
            path: path.into(),
            op,
            source: errno.into(),
        }
    }
}
