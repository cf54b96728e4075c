//! Cgroups, as CRIU keeps them in `cgroup.img` (`criu/cgroup.c`).
//!
//! Dump ([`dump`]): every thread's `/proc/PID/task/TID/cgroup` becomes a cgroup set
//! (`cg_set_entry`, deduplicated; criu's own set is number 1 and `inventory.root_cg_set`),
//! referenced by `thread_core_entry.cg_set`. For each set other than criu's the directories
//! at and below the task's cgroup are walked in every hierarchy, with the properties of
//! [`props`] (`cg_controller_entry.dirs`). Nothing is written when every task is in criu's
//! own cgroups, as CRIU.
//!
//! Restore ([`restore`]): the directories are created or reused per [`Mode`], with
//! `--cgroup-root` remapping; each task is moved into its set right after it is forked, before
//! it runs anything of its own, so that the children it forks later inherit it. The other
//! properties are written once every task is in place; a failed restore removes the
//! directories it created.
//!
//! The hierarchies are reached through detached mounts ([`fs`]: `fsopen`/`fsmount`, nothing
//! visible in any mount table) or through the directories of `--cgroup-yard`.

pub mod dump;
pub mod fs;
pub mod props;
pub mod restore;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

/// `--manage-cgroups` modes (CRIU's `CG_MODE_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Cgroups are not looked at: no directory walked at dump, none touched at restore.
    Ignore,
    /// Directories must exist; no property is written.
    None,
    /// Directories must exist; every property is written.
    Props,
    /// Missing directories are created; properties are written only in those (default).
    #[default]
    Soft,
    /// Missing directories are created; every property is written.
    Full,
    /// Directories are created; one that exists with a property differing from the dumped
    /// value fails the restore, naming the file.
    Strict,
}

impl Mode {
    /// The mode named `name` (`--manage-cgroups=NAME`).
    pub fn from_name(name: &str) -> Option<Mode> {
        Some(match name {
            "ignore" => Mode::Ignore,
            "none" => Mode::None,
            "props" => Mode::Props,
            "soft" => Mode::Soft,
            "full" => Mode::Full,
            "strict" => Mode::Strict,
            _ => return Option::None,
        })
    }
}

/// The cgroup options of a dump or a restore.
#[derive(Debug, Clone, Default)]
pub struct CgroupOptions {
    /// `--manage-cgroups[=MODE]`.
    pub mode: Mode,
    /// `--cgroup-root [CTL:]PATH`: `(None, path)` is the root of every controller not named.
    pub roots: Vec<(Option<String>, String)>,
    /// `--cgroup-yard PATH`: a directory holding one mounted hierarchy per controller.
    pub yard: Option<PathBuf>,
    /// `--cgroup-dump-controller NAME`: only these hierarchies are dumped (all when empty).
    pub dump_controllers: Vec<String>,
}

impl CgroupOptions {
    /// Parses one `--cgroup-root` value: `CTL:/PATH` or `/PATH`.
    pub fn add_root(&mut self, value: &str) -> Result<(), CgroupError> {
        let (ctl, path) = match value.rfind(':') {
            Some(i) => (Some(value[..i].to_string()), &value[i + 1..]),
            Option::None => (Option::None, value),
        };
        if !path.starts_with('/') || has_dotdot(path) {
            return Err(CgroupError::Option {
                option: "--cgroup-root",
                reason: format!("{value:?}: expected [CONTROLLER:]/PATH without '..'"),
            });
        }
        self.roots.push((ctl, path.to_string()));
        Ok(())
    }

    /// The new root for hierarchy `cnames` (a controller named, else the global one).
    pub(crate) fn root_for(&self, cnames: &[String]) -> Option<&str> {
        let named = self.roots.iter().find_map(|(c, p)| {
            let c = c.as_deref()?;
            cnames
                .iter()
                .any(|n| c.split(',').any(|x| x == n))
                .then_some(p.as_str())
        });
        named.or_else(|| {
            self.roots
                .iter()
                .find_map(|(c, p)| c.is_none().then_some(p.as_str()))
        })
    }
}

/// A path component `..` (refused in images and options: it would leave the hierarchy).
pub(crate) fn has_dotdot(path: &str) -> bool {
    path.split('/').any(|c| c == "..")
}

/// Cgroup errors, with the path or image entry involved.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cgroup {path}: {what}")]
    Io {
        path: String,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot mount the cgroup hierarchy {hierarchy} ({step})")]
    Mount {
        hierarchy: String,
        step: &'static str,
        #[source]
        source: nix::errno::Errno,
    },
    #[error("pid {pid}: /proc/{pid}/task/{tid}/cgroup: {reason}")]
    Proc { pid: i32, tid: i32, reason: String },
    #[error("image cgroup.img{}: {reason}", entry.as_ref().map(|e| format!(", {e}")).unwrap_or_default())]
    BadImage {
        entry: Option<String>,
        reason: String,
    },
    #[error(
        "cgroup directory {path} does not exist (--manage-cgroups={mode} requires it; use soft or full to create it)"
    )]
    Missing { path: String, mode: &'static str },
    #[error(
        "--manage-cgroups=strict: {file} holds {have:?}, the image {want:?} (remove the cgroup or use soft/full)"
    )]
    Differs {
        file: String,
        want: String,
        have: String,
    },
    #[error("{option}: {reason}")]
    Option {
        option: &'static str,
        reason: String,
    },
}

impl Mode {
    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Ignore => "ignore",
            Mode::None => "none",
            Mode::Props => "props",
            Mode::Soft => "soft",
            Mode::Full => "full",
            Mode::Strict => "strict",
        }
    }
}
