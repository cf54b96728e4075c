//! Plain `#[repr(C)]` data crossing the plugin boundary, and its conversion to and from the
//! Rust-level types of this crate.

use std::io;

use abi_stable::StableAbi;
use abi_stable::std_types::{ROption, RString, RVec};

use crate::{
    ApiVersion, FdDesc, FdInfo, FileOwner, FileStat, ImageRef, PluginError, PluginImageKind,
    TaskFd, TaskIds, Timespec, VmaDesc,
};

/// [`VmaDesc`] across the boundary. (API 0.3)
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct FfiVmaDesc {
    /// [`VmaDesc::pid`].
    pub pid: i32,
    /// [`VmaDesc::start`].
    pub start: u64,
    /// [`VmaDesc::end`].
    pub end: u64,
    /// [`VmaDesc::prot`].
    pub prot: u32,
    /// [`VmaDesc::flags`].
    pub flags: u32,
    /// [`VmaDesc::pgoff`].
    pub pgoff: u64,
    /// [`VmaDesc::name`].
    pub name: RString,
}

impl From<&VmaDesc> for FfiVmaDesc {
    fn from(v: &VmaDesc) -> Self {
        FfiVmaDesc {
            pid: v.pid,
            start: v.start,
            end: v.end,
            prot: v.prot,
            flags: v.flags,
            pgoff: v.pgoff,
            name: v.name.as_str().into(),
        }
    }
}

impl From<&FfiVmaDesc> for VmaDesc {
    fn from(v: &FfiVmaDesc) -> Self {
        VmaDesc {
            pid: v.pid,
            start: v.start,
            end: v.end,
            prot: v.prot,
            flags: v.flags,
            pgoff: v.pgoff,
            name: v.name.to_string(),
        }
    }
}

/// The six arguments of a remote system call, wrapped (a bare array is not FFI-safe by
/// value). (API 0.3)
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct FfiSyscallArgs {
    /// rdi, rsi, rdx, r10, r8, r9 on x86_64.
    pub args: [u64; 6],
}

/// [`crate::InstalledFd`] across the boundary. (API 0.5)
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct FfiInstalledFd {
    /// [`crate::InstalledFd::pid`].
    pub pid: i32,
    /// [`crate::InstalledFd::fd`].
    pub fd: i32,
    /// [`crate::InstalledFd::id`].
    pub id: u32,
}

impl From<&crate::InstalledFd> for FfiInstalledFd {
    fn from(i: &crate::InstalledFd) -> Self {
        FfiInstalledFd {
            pid: i.pid,
            fd: i.fd,
            id: i.id,
        }
    }
}

impl From<&FfiInstalledFd> for crate::InstalledFd {
    fn from(i: &FfiInstalledFd) -> Self {
        crate::InstalledFd {
            pid: i.pid,
            fd: i.fd,
            id: i.id,
        }
    }
}

/// [`TaskIds`] across the boundary. (API 0.3)
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct FfiTaskIds {
    /// [`TaskIds::pid`].
    pub pid: i32,
    /// [`TaskIds::tids`].
    pub tids: RVec<i32>,
}

impl From<&TaskIds> for FfiTaskIds {
    fn from(t: &TaskIds) -> Self {
        FfiTaskIds {
            pid: t.pid,
            tids: t.tids.iter().copied().collect(),
        }
    }
}

impl From<&FfiTaskIds> for TaskIds {
    fn from(t: &FfiTaskIds) -> Self {
        TaskIds {
            pid: t.pid,
            tids: t.tids.to_vec(),
        }
    }
}

/// [`TaskFd`] across the boundary. (API 0.4)
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct FfiTaskFd {
    /// [`TaskFd::fd`].
    pub fd: i32,
    /// [`TaskFd::id`].
    pub id: u32,
    /// [`TaskFd::fd_type`].
    pub fd_type: i32,
    /// [`TaskFd::cloexec`].
    pub cloexec: bool,
}

impl From<&TaskFd> for FfiTaskFd {
    fn from(t: &TaskFd) -> Self {
        FfiTaskFd {
            fd: t.fd,
            id: t.id,
            fd_type: t.fd_type,
            cloexec: t.cloexec,
        }
    }
}

impl From<&FfiTaskFd> for TaskFd {
    fn from(t: &FfiTaskFd) -> Self {
        TaskFd {
            fd: t.fd,
            id: t.id,
            fd_type: t.fd_type,
            cloexec: t.cloexec,
        }
    }
}

/// Who a loaded plugin is and what it handles, as its `.so` reports it.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct FfiPluginInfo {
    /// [`crate::PluginInfo::name`].
    pub name: RString,
    /// [`crate::PluginInfo::version`].
    pub version: RString,
    /// [`crate::PluginInfo::priority`].
    pub priority: i32,
    /// Major part of the contract version the plugin was built against.
    pub api_major: u16,
    /// Minor part of that version.
    pub api_minor: u16,
    /// Whether the plugin has an fd handler.
    pub has_fd_handler: bool,
    /// Its `fd_types` values (empty without an fd handler).
    pub fd_types: RVec<i32>,
}

impl FfiPluginInfo {
    /// The contract version the plugin declares.
    pub fn api_version(&self) -> ApiVersion {
        ApiVersion {
            major: self.api_major,
            minor: self.api_minor,
        }
    }
}

/// An image reference: the CRIU kind name (`"FILES"`) and the optional number.
/// By name so that a kind added later is refused by an older host, not misread.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct FfiImageRef {
    /// [`PluginImageKind::criu_name`].
    pub kind: RString,
    /// [`ImageRef::id`].
    pub id: ROption<u64>,
}

impl From<ImageRef> for FfiImageRef {
    fn from(r: ImageRef) -> Self {
        FfiImageRef {
            kind: r.kind.criu_name().into(),
            id: r.id.into(),
        }
    }
}

impl FfiImageRef {
    /// Back to an [`ImageRef`]; an unknown kind name is a [`PluginError::BadImage`].
    pub fn to_image_ref(&self) -> Result<ImageRef, PluginError> {
        let kind = PluginImageKind::ALL
            .iter()
            .copied()
            .find(|k| k.criu_name() == self.kind.as_str())
            .ok_or_else(|| {
                PluginError::bad_image(
                    self.kind.as_str(),
                    "image kind unknown to this criu (plugin built for a newer API?)",
                )
            })?;
        Ok(ImageRef {
            kind,
            id: self.id.into_option(),
        })
    }
}

/// [`FileStat`] flattened (same fields, times split into seconds and nanoseconds).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct FfiStat {
    /// [`FileStat::mode`].
    pub mode: u32,
    /// [`FileStat::dev`].
    pub dev: u64,
    /// [`FileStat::ino`].
    pub ino: u64,
    /// [`FileStat::rdev`].
    pub rdev: u64,
    /// [`FileStat::size`].
    pub size: i64,
    /// [`FileStat::nlink`].
    pub nlink: u64,
    /// [`FileStat::uid`].
    pub uid: u32,
    /// [`FileStat::gid`].
    pub gid: u32,
    /// Seconds of [`FileStat::atime`].
    pub atime_sec: i64,
    /// Nanoseconds of [`FileStat::atime`].
    pub atime_nsec: i64,
    /// Seconds of [`FileStat::mtime`].
    pub mtime_sec: i64,
    /// Nanoseconds of [`FileStat::mtime`].
    pub mtime_nsec: i64,
}

/// [`FdDesc`] flattened; `file` is the core's duplicate of the task's fd, valid for the call.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct FfiFdDesc {
    /// [`FdDesc::pid`].
    pub pid: i32,
    /// [`FdDesc::fd`].
    pub fd: i32,
    /// [`FdDesc::link`].
    pub link: RString,
    /// [`FdInfo::pos`].
    pub pos: u64,
    /// [`FdInfo::flags`].
    pub flags: u32,
    /// [`FdInfo::mnt_id`].
    pub mnt_id: i32,
    /// [`FdInfo::ino`].
    pub ino: u64,
    /// [`FdInfo::raw`].
    pub fdinfo_raw: RString,
    /// [`FdDesc::stat`].
    pub stat: FfiStat,
    /// `uid, euid, signum, pid_type, pid` of [`FileOwner`].
    pub owner: [u32; 5],
    /// Raw fd number in the (shared) process, borrowed for the duration of the call.
    pub file: i32,
}

impl From<&FdDesc> for FfiFdDesc {
    fn from(d: &FdDesc) -> Self {
        use std::os::fd::AsRawFd;
        let s = &d.stat;
        let o = &d.owner;
        FfiFdDesc {
            pid: d.pid,
            fd: d.fd,
            link: d.link.as_str().into(),
            pos: d.fdinfo.pos,
            flags: d.fdinfo.flags,
            mnt_id: d.fdinfo.mnt_id,
            ino: d.fdinfo.ino,
            fdinfo_raw: d.fdinfo.raw.as_str().into(),
            stat: FfiStat {
                mode: s.mode,
                dev: s.dev,
                ino: s.ino,
                rdev: s.rdev,
                size: s.size,
                nlink: s.nlink,
                uid: s.uid,
                gid: s.gid,
                atime_sec: s.atime.sec,
                atime_nsec: s.atime.nsec,
                mtime_sec: s.mtime.sec,
                mtime_nsec: s.mtime.nsec,
            },
            owner: [o.uid, o.euid, o.signum, o.pid_type, o.pid],
            file: d.file.as_raw_fd(),
        }
    }
}

impl FfiFdDesc {
    /// Rebuilds an [`FdDesc`] around `file` (the plugin's own duplicate of [`FfiFdDesc::file`]).
    pub fn to_desc(&self, file: std::os::fd::OwnedFd) -> FdDesc {
        let s = &self.stat;
        let [uid, euid, signum, pid_type, pid] = self.owner;
        FdDesc {
            pid: self.pid,
            fd: self.fd,
            link: self.link.to_string(),
            fdinfo: FdInfo {
                pos: self.pos,
                flags: self.flags,
                mnt_id: self.mnt_id,
                ino: self.ino,
                raw: self.fdinfo_raw.to_string(),
            },
            stat: FileStat {
                mode: s.mode,
                dev: s.dev,
                ino: s.ino,
                rdev: s.rdev,
                size: s.size,
                nlink: s.nlink,
                uid: s.uid,
                gid: s.gid,
                atime: Timespec {
                    sec: s.atime_sec,
                    nsec: s.atime_nsec,
                },
                mtime: Timespec {
                    sec: s.mtime_sec,
                    nsec: s.mtime_nsec,
                },
            },
            owner: FileOwner {
                uid,
                euid,
                signum,
                pid_type,
                pid,
            },
            file,
        }
    }
}

/// [`PluginError`] across the boundary. `kind` is one of the `FfiError::*` codes; a host
/// that does not know a code (a newer plugin) still has [`FfiError::message`], so new kinds
/// can be added without breaking anyone.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Default)]
pub struct FfiError {
    /// What went wrong, one of the `FfiError::*` constants.
    pub kind: u32,
    /// Pid involved (0 when none).
    pub pid: i32,
    /// Fd number involved (-1 when none).
    pub fd: i32,
    /// File id, size, or another number of the kind.
    pub num: u64,
    /// Second number of the kind (a limit).
    pub num2: u64,
    /// `errno` of a failed system call (0 when none).
    pub errno: i32,
    /// The main subject: link, path, resource, image name, fd type name.
    pub what: RString,
    /// The operation (syscall name), hint or reason.
    pub detail: RString,
    /// The full message, as the plugin formatted it.
    pub message: RString,
}

impl FfiError {
    /// Any other failure: only [`FfiError::message`] is meaningful.
    pub const OTHER: u32 = 0;
    /// [`PluginError::Fd`].
    pub const FD: u32 = 1;
    /// [`PluginError::Path`].
    pub const PATH: u32 = 2;
    /// [`PluginError::Restore`].
    pub const RESTORE: u32 = 3;
    /// [`PluginError::Unsupported`].
    pub const UNSUPPORTED: u32 = 4;
    /// [`PluginError::NoHandler`].
    pub const NO_HANDLER: u32 = 5;
    /// [`PluginError::NoRestorer`].
    pub const NO_RESTORER: u32 = 6;
    /// [`PluginError::FileChanged`].
    pub const FILE_CHANGED: u32 = 7;
    /// [`PluginError::GhostTooBig`].
    pub const GHOST_TOO_BIG: u32 = 8;
    /// [`PluginError::BadImage`].
    pub const BAD_IMAGE: u32 = 9;
    /// The plugin panicked; `what` is the plugin name.
    pub const PANICKED: u32 = 10;
    /// [`PluginError::Unavailable`] (API 0.3): `what` is the service, `detail` why.
    pub const UNAVAILABLE: u32 = 11;
    /// [`PluginError::Task`] (API 0.3): `pid`, `what` the operation, `detail` the cause.
    pub const TASK: u32 = 12;
    /// [`PluginError::BadFdInfo`] (API 0.5): `what` the field, `detail` the reason.
    pub const BAD_FDINFO: u32 = 13;

    /// A panic of `plugin` with its payload text.
    pub fn panicked(plugin: &str, payload: &(dyn std::any::Any + Send)) -> Self {
        let text = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".into());
        FfiError {
            kind: Self::PANICKED,
            what: plugin.into(),
            message: text.into(),
            ..Default::default()
        }
    }

    /// Back to a [`PluginError`]; `plugin` names the plugin for kinds that carry no detail.
    pub fn into_plugin_error(self, plugin: &str) -> PluginError {
        let io = |errno: i32| io::Error::from_raw_os_error(errno);
        let what = self.what.into_string();
        let detail = self.detail.into_string();
        match self.kind {
            Self::FD => PluginError::Fd {
                pid: self.pid,
                fd: self.fd,
                link: what,
                op: intern(detail),
                source: io(self.errno),
            },
            Self::PATH => PluginError::Path {
                path: what.into(),
                op: intern(detail),
                source: io(self.errno),
            },
            Self::RESTORE => PluginError::Restore {
                id: self.num as u32,
                what,
                op: intern(detail),
                source: io(self.errno),
            },
            Self::UNSUPPORTED => PluginError::Unsupported {
                resource: what,
                pid: self.pid,
                hint: detail,
            },
            Self::NO_HANDLER => PluginError::NoHandler {
                pid: self.pid,
                fd: self.fd,
                link: what,
            },
            Self::NO_RESTORER => PluginError::NoRestorer {
                fd_type: what,
                id: self.num as u32,
            },
            Self::FILE_CHANGED => PluginError::FileChanged {
                path: what.into(),
                what: detail,
            },
            Self::GHOST_TOO_BIG => PluginError::GhostTooBig {
                path: what.into(),
                pid: self.pid,
                fd: self.fd,
                size: self.num,
                limit: self.num2,
            },
            Self::BAD_IMAGE => PluginError::BadImage {
                image: what,
                reason: detail,
            },
            Self::UNAVAILABLE => PluginError::Unavailable {
                service: intern(what),
                why: detail,
            },
            Self::TASK => PluginError::Task {
                pid: self.pid,
                op: what,
                source: detail.into(),
            },
            Self::BAD_FDINFO => PluginError::BadFdInfo {
                field: what,
                reason: detail,
            },
            Self::PANICKED => PluginError::Panicked {
                plugin: what,
                message: self.message.into_string(),
            },
            _ => PluginError::Plugin {
                plugin: plugin.to_string(),
                message: self.message.into_string(),
            },
        }
    }
}

impl From<&PluginError> for FfiError {
    fn from(e: &PluginError) -> Self {
        let errno = |s: &io::Error| s.raw_os_error().unwrap_or(0);
        let mut out = FfiError {
            fd: -1,
            message: e.to_string().into(),
            ..Default::default()
        };
        match e {
            PluginError::Fd {
                pid,
                fd,
                link,
                op,
                source,
            } => {
                (out.kind, out.pid, out.fd) = (Self::FD, *pid, *fd);
                (out.what, out.detail) = (link.as_str().into(), (*op).into());
                out.errno = errno(source);
            }
            PluginError::Path { path, op, source } => {
                out.kind = Self::PATH;
                (out.what, out.detail) = (path.to_string_lossy().as_ref().into(), (*op).into());
                out.errno = errno(source);
            }
            PluginError::Restore {
                id,
                what,
                op,
                source,
            } => {
                (out.kind, out.num) = (Self::RESTORE, u64::from(*id));
                (out.what, out.detail) = (what.as_str().into(), (*op).into());
                out.errno = errno(source);
            }
            PluginError::Unsupported {
                resource,
                pid,
                hint,
            } => {
                (out.kind, out.pid) = (Self::UNSUPPORTED, *pid);
                (out.what, out.detail) = (resource.as_str().into(), hint.as_str().into());
            }
            PluginError::NoHandler { pid, fd, link } => {
                (out.kind, out.pid, out.fd) = (Self::NO_HANDLER, *pid, *fd);
                out.what = link.as_str().into();
            }
            PluginError::NoRestorer { fd_type, id } => {
                (out.kind, out.num) = (Self::NO_RESTORER, u64::from(*id));
                out.what = fd_type.as_str().into();
            }
            PluginError::FileChanged { path, what } => {
                out.kind = Self::FILE_CHANGED;
                (out.what, out.detail) =
                    (path.to_string_lossy().as_ref().into(), what.as_str().into());
            }
            PluginError::GhostTooBig {
                path,
                pid,
                fd,
                size,
                limit,
            } => {
                (out.kind, out.pid, out.fd) = (Self::GHOST_TOO_BIG, *pid, *fd);
                (out.num, out.num2) = (*size, *limit);
                out.what = path.to_string_lossy().as_ref().into();
            }
            PluginError::BadImage { image, reason } => {
                out.kind = Self::BAD_IMAGE;
                (out.what, out.detail) = (image.as_str().into(), reason.as_str().into());
            }
            PluginError::Unavailable { service, why } => {
                out.kind = Self::UNAVAILABLE;
                (out.what, out.detail) = ((*service).into(), why.as_str().into());
            }
            PluginError::Task { pid, op, source } => {
                (out.kind, out.pid) = (Self::TASK, *pid);
                (out.what, out.detail) = (op.as_str().into(), error_chain(source.as_ref()).into());
            }
            PluginError::BadFdInfo { field, reason } => {
                out.kind = Self::BAD_FDINFO;
                (out.what, out.detail) = (field.as_str().into(), reason.as_str().into());
            }
            PluginError::Panicked { plugin, message } => {
                out.kind = Self::PANICKED;
                (out.what, out.message) = (plugin.as_str().into(), message.as_str().into());
            }
            // Image, Plugin and later variants: the message says it all.
            _ => {}
        }
        out
    }
}

/// `e` and its sources, `": "`-separated (a source does not cross the boundary as such).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(e) = src {
        s.push_str(": ");
        s.push_str(&e.to_string());
        src = e.source();
    }
    s
}

/// A `&'static str` for an operation name that crossed the boundary. Operation names are a
/// small fixed set per plugin, so the leak is bounded; plugins are never unloaded either.
fn intern(op: String) -> &'static str {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static OPS: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    let mut guard = OPS.lock().unwrap_or_else(|p| p.into_inner());
    let set = guard.get_or_insert_with(HashSet::new);
    if let Some(s) = set.get(op.as_str()) {
        return s;
    }
    let leaked: &'static str = Box::leak(op.into_boxed_str());
    set.insert(leaked);
    leaked
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(e: PluginError) -> PluginError {
        FfiError::from(&e).into_plugin_error("p")
    }

    #[test]
    fn errors_keep_their_kind_and_fields() {
        let e = round_trip(PluginError::Unsupported {
            resource: "eventfd in semaphore mode".into(),
            pid: 12,
            hint: "none".into(),
        });
        assert_eq!(
            e.to_string(),
            "eventfd in semaphore mode of pid 12 is not supported: none"
        );
        let e = round_trip(PluginError::path("/x", "open", nix::errno::Errno::ENOENT));
        match e {
            PluginError::Path { path, op, source } => {
                assert_eq!((path.to_str(), op), (Some("/x"), "open"));
                assert_eq!(source.raw_os_error(), Some(libc::ENOENT));
            }
            other => panic!("{other:?}"),
        }
        let e = round_trip(PluginError::NoHandler {
            pid: 1,
            fd: 4,
            link: "anon_inode:[eventfd]".into(),
        });
        assert!(e.to_string().contains("anon_inode:[eventfd]"), "{e}");
        let e = round_trip(PluginError::Image {
            image: "files.img".into(),
            source: "short read".into(),
        });
        assert!(
            matches!(&e, PluginError::Plugin { plugin, message } if plugin == "p" && message.contains("files.img")),
            "{e:?}"
        );
    }

    #[test]
    fn api_0_3_errors_round_trip() {
        let e = round_trip(PluginError::Unavailable {
            service: "remote_syscall",
            why: "tasks run".into(),
        });
        assert!(
            matches!(&e, PluginError::Unavailable { service, why } if *service == "remote_syscall" && why == "tasks run"),
            "{e:?}"
        );
        let e = round_trip(PluginError::Task {
            pid: 77,
            op: "process_vm_readv at 0x1000".into(),
            source: Box::new(io::Error::from_raw_os_error(libc::EFAULT)),
        });
        match &e {
            PluginError::Task { pid, op, source } => {
                assert_eq!((*pid, op.as_str()), (77, "process_vm_readv at 0x1000"));
                assert!(source.to_string().contains("Bad address"), "{source}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            e.to_string(),
            "process_vm_readv at 0x1000 in task 77 failed"
        );
    }

    #[test]
    fn api_0_5_errors_round_trip() {
        let e = round_trip(PluginError::BadFdInfo {
            field: "clockid".into(),
            reason: "no such line".into(),
        });
        assert!(
            matches!(&e, PluginError::BadFdInfo { field, reason } if field == "clockid" && reason == "no such line"),
            "{e:?}"
        );
    }

    #[test]
    fn unknown_error_kind_keeps_the_message() {
        let e = FfiError {
            kind: 999,
            message: "new kind of failure".into(),
            ..Default::default()
        };
        assert_eq!(
            e.into_plugin_error("eventfd").to_string(),
            "plugin eventfd: new kind of failure"
        );
    }

    #[test]
    fn image_refs_by_name() {
        let r = ImageRef::ghost_file(0x1f);
        assert_eq!(FfiImageRef::from(r).to_image_ref().unwrap(), r);
        let bad = FfiImageRef {
            kind: "FUTURE".into(),
            id: ROption::RNone,
        };
        assert!(bad.to_image_ref().is_err());
    }
}
