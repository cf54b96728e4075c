//! Reaching one cgroup hierarchy: a detached mount of it (`fsopen` + `fsconfig` +
//! `fsmount`: visible in no mount table, gone with its fd) or its directory in
//! `--cgroup-yard`. Paths inside are relative to the hierarchy's root.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use super::CgroupError;

const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_FLAG: libc::c_uint = 0;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;

/// One mounted hierarchy.
#[derive(Debug)]
pub struct Hierarchy {
    /// The mount's root (an fd of a detached mount, or of the yard's directory).
    root: OwnedFd,
    /// `cpu,cpuacct`, `name=zdtmtst`, or `unified` for cgroup v2: for messages.
    label: String,
}

/// The yard directory name of a hierarchy (CRIU's `ctrl_dir_and_opt`): `name=` dropped,
/// cgroup v2 as `unified`, controllers joined by commas.
pub fn yard_name(cnames: &[String]) -> String {
    let parts: Vec<&str> = cnames
        .iter()
        .map(|n| {
            let n = n.strip_prefix("name=").unwrap_or(n);
            if n.is_empty() { "unified" } else { n }
        })
        .collect();
    parts.join(",")
}

/// Is this the cgroup v2 hierarchy (its only "controller" is the empty name)?
pub fn is_v2(cnames: &[String]) -> bool {
    cnames.len() == 1 && cnames[0].is_empty()
}

fn sys(r: libc::c_long) -> Result<libc::c_long, Errno> {
    if r < 0 { Err(Errno::last()) } else { Ok(r) }
}

fn cstr(s: &str) -> CString {
    // Controller names come from /proc or images: no NUL inside (refused earlier).
    CString::new(s.replace('\0', "")).unwrap_or_default()
}

impl Hierarchy {
    /// Opens the hierarchy of `cnames`: from `yard` when given, else a fresh detached mount.
    pub fn open(cnames: &[String], yard: Option<&Path>) -> Result<Hierarchy, CgroupError> {
        let label = yard_name(cnames);
        if let Some(y) = yard {
            let p = y.join(&label);
            let f = std::fs::File::open(&p).map_err(|source| CgroupError::Io {
                path: p.display().to_string(),
                what: "opening the --cgroup-yard directory of this hierarchy",
                source,
            })?;
            return Ok(Hierarchy {
                root: f.into(),
                label,
            });
        }
        let mount = |step, source| CgroupError::Mount {
            hierarchy: label.clone(),
            step,
            source,
        };
        let fstype = if is_v2(cnames) { "cgroup2" } else { "cgroup" };
        let fstype = cstr(fstype);
        // SAFETY: fsopen with a valid C string; the fd is owned right after.
        let fsfd = sys(unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), FSOPEN_CLOEXEC) })
            .map_err(|e| mount("fsopen", e))?;
        // SAFETY: a fresh fd returned by fsopen, owned by nothing else.
        let fsfd = unsafe { OwnedFd::from_raw_fd(fsfd as i32) };
        let config = |cmd: libc::c_uint, key: Option<&str>, val: Option<&str>| {
            let key = key.map(cstr);
            let val = val.map(cstr);
            let kp = key.as_ref().map_or(std::ptr::null(), |k| k.as_ptr());
            let vp = val.as_ref().map_or(std::ptr::null(), |v| v.as_ptr());
            // SAFETY: fsconfig on our fs context fd with valid or null C strings.
            sys(unsafe { libc::syscall(libc::SYS_fsconfig, fsfd.as_raw_fd(), cmd, kp, vp, 0) })
        };
        if !is_v2(cnames) {
            let real = cnames.iter().any(|n| !n.starts_with("name="));
            if !real {
                config(FSCONFIG_SET_FLAG, Some("none"), None).map_err(|e| mount("none", e))?;
            }
            for n in cnames {
                match n.strip_prefix("name=") {
                    Some(v) => config(FSCONFIG_SET_STRING, Some("name"), Some(v)),
                    None => config(FSCONFIG_SET_FLAG, Some(n), None),
                }
                .map_err(|e| mount("fsconfig", e))?;
            }
        }
        config(FSCONFIG_CMD_CREATE, None, None).map_err(|e| mount("create", e))?;
        // SAFETY: fsmount on our configured context; the mount fd is owned right after.
        let mfd =
            sys(unsafe { libc::syscall(libc::SYS_fsmount, fsfd.as_raw_fd(), FSMOUNT_CLOEXEC, 0) })
                .map_err(|e| mount("fsmount", e))?;
        Ok(Hierarchy {
            // SAFETY: a fresh fd returned by fsmount.
            root: unsafe { OwnedFd::from_raw_fd(mfd as i32) },
            label,
        })
    }

    /// Its label (`cpu`, `name=...` without `name=`, `unified`).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The path of `rel` (relative to the hierarchy's root, with or without a leading `/`).
    pub fn path(&self, rel: &str) -> PathBuf {
        let mut p = PathBuf::from(format!("/proc/self/fd/{}", self.root.as_raw_fd()));
        let rel = rel.trim_start_matches('/');
        if !rel.is_empty() {
            p.push(rel);
        }
        p
    }

    /// `LABEL:/rel`, for messages.
    pub fn show(&self, rel: &str) -> String {
        format!("{}:/{}", self.label, rel.trim_start_matches('/'))
    }

    /// An I/O error on `rel` named for messages.
    pub fn err(&self, rel: &str, what: &'static str) -> impl FnOnce(std::io::Error) -> CgroupError {
        let path = self.show(rel);
        move |source| CgroupError::Io { path, what, source }
    }

    /// Writes `value` into the file `rel` in one write (the kernel parses one value per write).
    pub fn write(&self, rel: &str, value: &str) -> Result<(), CgroupError> {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(self.path(rel))
            .map_err(self.err(rel, "opening for writing"))?;
        f.write_all(value.as_bytes())
            .map_err(self.err(rel, "writing"))
    }

    /// The contents of the file `rel`.
    pub fn read(&self, rel: &str) -> Result<String, CgroupError> {
        std::fs::read_to_string(self.path(rel)).map_err(self.err(rel, "reading"))
    }
}
