//! What a `mnt_entry` says, as CRIU writes it: file system codes (`fstype` enum of
//! mnt.proto), per-mount flags (`flags`: `MS_*` of the mount options), superblock flags
//! (`sb_flags`, taken out of the super options, the rest kept in `options`) and the
//! propagation of `/proc/PID/mountinfo`'s optional fields.

use nix::mount::MsFlags;

/// The file systems this engine dumps by kind, with CRIU's codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsKind {
    /// A new procfs instance (of the restored pid namespace's mounter).
    Proc,
    /// A new sysfs instance.
    Sysfs,
    /// devtmpfs: one superblock per kernel, so always a bind of criu's own.
    Devtmpfs,
    /// A new tmpfs whose contents travel in `tmpfs-dev-<dev>.tar.gz.img`.
    Tmpfs,
    /// A new devpts instance (`newinstance`, its `ptmxmode` kept).
    Devpts,
    /// A new mqueue instance (of criu's restoring IPC namespace).
    Mqueue,
    /// A new cgroup2 mount.
    Cgroup2,
    /// ramfs: contents dumped as a tmpfs's (CRIU has no code; written as AUTO "ramfs").
    Ramfs,
}

/// CRIU's `FSTYPE__UNSUPPORTED` and `FSTYPE__AUTO` (then `fsname` names it).
pub const FSTYPE_UNSUPPORTED: u32 = 0;
pub const FSTYPE_AUTO: u32 = 16;

impl FsKind {
    /// The kind of a mountinfo fs type this engine makes new instances of.
    pub fn from_name(name: &str) -> Option<FsKind> {
        Some(match name {
            "proc" => FsKind::Proc,
            "sysfs" => FsKind::Sysfs,
            "devtmpfs" => FsKind::Devtmpfs,
            "tmpfs" => FsKind::Tmpfs,
            "devpts" => FsKind::Devpts,
            "mqueue" => FsKind::Mqueue,
            "cgroup2" => FsKind::Cgroup2,
            "ramfs" => FsKind::Ramfs,
            _ => return None,
        })
    }

    /// The name `mount(2)` takes.
    pub fn name(self) -> &'static str {
        match self {
            FsKind::Proc => "proc",
            FsKind::Sysfs => "sysfs",
            FsKind::Devtmpfs => "devtmpfs",
            FsKind::Tmpfs => "tmpfs",
            FsKind::Devpts => "devpts",
            FsKind::Mqueue => "mqueue",
            FsKind::Cgroup2 => "cgroup2",
            FsKind::Ramfs => "ramfs",
        }
    }

    /// CRIU's code (mnt.proto `fstype`).
    pub fn code(self) -> u32 {
        match self {
            FsKind::Proc => 1,
            FsKind::Sysfs => 2,
            FsKind::Devtmpfs => 3,
            FsKind::Tmpfs => 5,
            FsKind::Devpts => 6,
            FsKind::Mqueue => 14,
            FsKind::Cgroup2 => 23,
            FsKind::Ramfs => FSTYPE_AUTO,
        }
    }

    /// The kind of an image's `fstype` (with `fsname` for AUTO).
    pub fn from_code(code: u32, fsname: Option<&str>) -> Option<FsKind> {
        [
            FsKind::Proc,
            FsKind::Sysfs,
            FsKind::Devtmpfs,
            FsKind::Tmpfs,
            FsKind::Devpts,
            FsKind::Mqueue,
            FsKind::Cgroup2,
        ]
        .into_iter()
        .find(|k| k.code() == code)
        .or_else(|| (code == FSTYPE_AUTO && fsname == Some("ramfs")).then_some(FsKind::Ramfs))
    }

    /// Whether its contents are dumped (a tar image).
    pub fn has_contents(self) -> bool {
        matches!(self, FsKind::Tmpfs | FsKind::Ramfs)
    }
}

/// CRIU's code for a file system met as a bind of one of criu's own mounts (written for
/// `crit`; such a mount is restored by its host path, our `criu_rs_host_path`).
pub fn code_of_name(name: &str) -> u32 {
    match FsKind::from_name(name) {
        Some(k) => k.code(),
        None => match name {
            "binfmt_misc" => 4,
            "securityfs" => 9,
            "fusectl" => 10,
            "debugfs" => 11,
            "cgroup" => 12,
            "fuse" => 15,
            "overlay" => 17,
            "autofs" => 18,
            "tracefs" => 19,
            _ => FSTYPE_UNSUPPORTED,
        },
    }
}

/// The kernel's internal device number (`MKDEV`: 12 bits major, 20 bits minor), as CRIU's
/// `root_dev` and the tmpfs image names hold it.
pub fn kdev(major: u32, minor: u32) -> u32 {
    (major << 20) | (minor & 0xf_ffff)
}

/// Per-mount flags of mountinfo's mount options (`rw,nosuid,relatime`). Unknown words are
/// not flags of the mount (the kernel shows no others).
pub fn mount_flags(opts: &str) -> u32 {
    let mut f = MsFlags::empty();
    for o in opts.split(',') {
        f |= match o {
            "ro" => MsFlags::MS_RDONLY,
            "nosuid" => MsFlags::MS_NOSUID,
            "nodev" => MsFlags::MS_NODEV,
            "noexec" => MsFlags::MS_NOEXEC,
            "noatime" => MsFlags::MS_NOATIME,
            "nodiratime" => MsFlags::MS_NODIRATIME,
            "relatime" => MsFlags::MS_RELATIME,
            _ => MsFlags::empty(),
        };
    }
    f.bits() as u32
}

/// Superblock flags taken out of the super options, and the options left (`size=..,mode=..`).
pub fn super_flags(opts: &str) -> (u32, String) {
    let mut f = MsFlags::empty();
    let mut rest = Vec::new();
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "rw" => {}
            "ro" => f |= MsFlags::MS_RDONLY,
            "sync" => f |= MsFlags::MS_SYNCHRONOUS,
            "dirsync" => f |= MsFlags::MS_DIRSYNC,
            "mand" => f |= MsFlags::MS_MANDLOCK,
            "lazytime" => f |= MsFlags::MS_LAZYTIME,
            o => rest.push(o),
        }
    }
    (f.bits() as u32, rest.join(","))
}

/// A mount's propagation from mountinfo's optional fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Propagation {
    /// `shared:N`: its peer group (0: not shared).
    pub shared: u32,
    /// `master:N`: the peer group it receives from (0: not a slave).
    pub master: u32,
    pub unbindable: bool,
}

impl Propagation {
    /// Parses the optional fields (`shared:N`, `master:N`, `propagate_from:N`,
    /// `unbindable`); unknown ones are skipped as proc(5) asks.
    pub fn parse(optional: &[String]) -> Propagation {
        let mut p = Propagation::default();
        for o in optional {
            let num = |s: &str| s.parse::<u32>().unwrap_or(0);
            if let Some(n) = o.strip_prefix("shared:") {
                p.shared = num(n);
            } else if let Some(n) = o.strip_prefix("master:") {
                p.master = num(n);
            } else if o == "unbindable" {
                p.unbindable = true;
            }
        }
        p
    }
}
