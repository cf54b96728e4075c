//! The restore error type: every variant names the task, the step and, where it applies, the
//! image file and entry.

use std::path::PathBuf;

use nix::errno::Errno;

use crate::sys::ptrace::PtraceError;

/// Why a restore failed. Tasks created before the failure have been killed and reaped; the
/// images are untouched.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("cannot read image {path}")]
    ImageIo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{source}")]
    Cgroup {
        #[source]
        source: crate::cgroup::CgroupError,
    },
    #[error("reading images")]
    Image {
        #[source]
        source: crate::image::ImageError,
    },
    /// The pages files do not match `criu-rs-pages-digest.bin`: restoring would run the tree
    /// with damaged memory, so it was killed before it ran.
    #[error(
        "pid {pid}: --verify-pages: the pages images cannot be verified or do not match their digest; the tree was not resumed (restore from an undamaged copy; `criu check-images -D DIR` checks a directory)"
    )]
    PagesDigest {
        pid: i32,
        #[source]
        source: crate::image::digest::DigestError,
    },
    #[error("image {image}, entry {entry}: cannot decode")]
    Decode {
        image: String,
        entry: usize,
        #[source]
        source: prost::DecodeError,
    },
    #[error("image {image}{}: {reason}", entry.map(|e| format!(", entry {e}")).unwrap_or_default())]
    BadImage {
        image: String,
        entry: Option<usize>,
        reason: String,
    },
    #[error("pid {pid}: {what} is not supported by this restore ({hint})")]
    Unsupported {
        pid: i32,
        what: String,
        hint: &'static str,
    },
    #[error(
        "the images need plugin(s) {} (recorded in inventory.img at dump), not loaded; {searched}; load them with --plugin-dir/-L",
        names.join(", ")
    )]
    MissingPlugins {
        names: Vec<String>,
        searched: String,
    },
    /// The dump recorded an option in `inventory.img` that the restore must be given too.
    #[error(
        "the images were dumped with --{option} (recorded in inventory.img): restore with --{option} as well (as CRIU requires)"
    )]
    OptionNeeded { option: &'static str },
    #[error(
        "pid {pid}: {} is file id {id} of type {fd_type}, which no loaded plugin restores; {}; {searched}; load the plugin with --plugin-dir/-L",
        fd.map(|fd| format!("fd {fd}")).unwrap_or_else(|| "a file".into()),
        dumped_by(recorded)
    )]
    NoRestorer {
        pid: i32,
        fd: Option<i32>,
        id: u32,
        fd_type: String,
        recorded: Vec<String>,
        searched: String,
    },
    #[error(
        "pid {pid} is taken by {holder}; restore needs it free (a killed task lingers as a zombie until its parent or init reaps it)"
    )]
    PidTaken { pid: i32, holder: String },
    #[error("pid {pid}: creating the task with clone3(set_tid) failed")]
    Clone {
        pid: i32,
        #[source]
        source: Errno,
    },
    #[error("pid {pid}: opening file id {id} ({what}) for fd {fd} failed: {reason}")]
    OpenFile {
        pid: i32,
        id: u32,
        fd: i32,
        what: String,
        reason: String,
    },
    #[error("pid {pid}, tid {tid}: ptrace during {step}")]
    Ptrace {
        pid: i32,
        tid: i32,
        step: String,
        #[source]
        source: PtraceError,
    },
    #[error("pid {pid}, tid {tid}: remote {syscall} during {step} failed")]
    Remote {
        pid: i32,
        tid: i32,
        step: String,
        syscall: &'static str,
        #[source]
        source: Errno,
    },
    /// A shadow stack in the images that this host cannot restore, or recorded wrongly.
    #[error(transparent)]
    ShadowStack(#[from] crate::shstk::ShstkRefusal),
    #[error("pid {pid}, tid {tid}: {step}: {reason}")]
    Task {
        pid: i32,
        tid: i32,
        step: String,
        reason: String,
    },
    #[error("pid {pid}: {step}")]
    Local {
        pid: i32,
        step: String,
        #[source]
        source: Errno,
    },
    #[error("pid {pid}: plugin {plugin} failed at stage {stage}")]
    Hook {
        pid: i32,
        plugin: &'static str,
        stage: &'static str,
        #[source]
        source: criu_plugin_api::PluginError,
    },
    #[error("cannot write the pidfile {path}; the restored tree of pid {pid} was killed")]
    Pidfile {
        pid: i32,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = RestoreError> = std::result::Result<T, E>;

/// Which plugins dumped the images, from `inventory.img`, for a "no plugin restores" error.
fn dumped_by(recorded: &[String]) -> String {
    if recorded.is_empty() {
        "inventory.img records no plugin loaded at dump (the images come from criu's \
         built-in plugins or from CRIU)"
            .into()
    } else {
        format!(
            "inventory.img records the images as dumped with plugin(s) {}",
            recorded.join(", ")
        )
    }
}

/// Shorthand for a [`RestoreError::BadImage`].
pub(crate) fn bad(image: &str, entry: Option<usize>, reason: impl Into<String>) -> RestoreError {
    RestoreError::BadImage {
        image: image.to_string(),
        entry,
        reason: reason.into(),
    }
}
