//! The syscalls nix has no safe call for, wrapped once here: `open_by_handle_at`,
//! `name_to_handle_at`, `ioctl(INOTIFY_IOC_SETNEXTWD)` and `ioctl(FIONREAD)`. This is the
//! crate's only `unsafe` code: every call passes a valid fd (a `BorrowedFd`) and pointers to
//! live values of the exact layout the kernel reads or writes.

#![allow(unsafe_code)]

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::errno::Errno;

/// `MAX_HANDLE_SZ`: the largest file handle the kernel encodes (bytes).
pub const MAX_HANDLE_BYTES: usize = 128;

/// `struct file_handle` with room for the largest handle (libc's has a flexible array).
#[repr(C)]
struct RawHandle {
    handle_bytes: u32,
    handle_type: i32,
    f_handle: [u8; MAX_HANDLE_BYTES],
}

/// A file handle as `name_to_handle_at` and fdinfo give it: type and opaque bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHandle {
    /// `handle_type` (filesystem specific, e.g. 1 = `FILEID_INO32_GEN` on ext4).
    pub handle_type: i32,
    /// The handle's bytes (at most [`MAX_HANDLE_BYTES`]).
    pub bytes: Vec<u8>,
}

impl FileHandle {
    fn to_raw(&self) -> Result<RawHandle, Errno> {
        if self.bytes.len() > MAX_HANDLE_BYTES {
            return Err(Errno::EINVAL);
        }
        let mut raw = RawHandle {
            handle_bytes: self.bytes.len() as u32,
            handle_type: self.handle_type,
            f_handle: [0; MAX_HANDLE_BYTES],
        };
        raw.f_handle[..self.bytes.len()].copy_from_slice(&self.bytes);
        Ok(raw)
    }
}

/// `open_by_handle_at(mount_fd, handle, flags)`: opens the inode `handle` names on the
/// filesystem of `mount_fd` (an fd opened for reading: the kernel refuses `O_PATH` ones)
/// (needs `CAP_DAC_READ_SEARCH`). `ESTALE` when the inode is gone.
pub fn open_by_handle(
    mount_fd: BorrowedFd<'_>,
    handle: &FileHandle,
    flags: libc::c_int,
) -> Result<OwnedFd, Errno> {
    let mut raw = handle.to_raw()?;
    // SAFETY: `raw` is a live `struct file_handle` followed by MAX_HANDLE_SZ bytes, its
    // `handle_bytes` within them; the kernel only reads it.
    let fd = unsafe {
        libc::open_by_handle_at(
            mount_fd.as_raw_fd(),
            (&mut raw as *mut RawHandle).cast::<libc::file_handle>(),
            flags | libc::O_CLOEXEC,
        )
    };
    let fd = Errno::result(fd)?;
    // SAFETY: the kernel just returned this new fd, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `name_to_handle_at(AT_FDCWD, path, ..., flags)`: the handle of `path` and its mount id.
pub fn name_to_handle(path: &CStr, flags: libc::c_int) -> Result<(FileHandle, i32), Errno> {
    let mut raw = RawHandle {
        handle_bytes: MAX_HANDLE_BYTES as u32,
        handle_type: 0,
        f_handle: [0; MAX_HANDLE_BYTES],
    };
    let mut mnt_id: libc::c_int = 0;
    // SAFETY: `path` is a C string; `raw` announces exactly the room it has; `mnt_id` is a
    // live int. The kernel writes within them.
    let r = unsafe {
        libc::name_to_handle_at(
            libc::AT_FDCWD,
            path.as_ptr(),
            (&mut raw as *mut RawHandle).cast::<libc::file_handle>(),
            &mut mnt_id,
            flags,
        )
    };
    Errno::result(r)?;
    let n = (raw.handle_bytes as usize).min(MAX_HANDLE_BYTES);
    Ok((
        FileHandle {
            handle_type: raw.handle_type,
            bytes: raw.f_handle[..n].to_vec(),
        },
        mnt_id,
    ))
}

/// `INOTIFY_IOC_SETNEXTWD` (`_IOW('I', 0, __s32)`): the next watch added to `inotify`
/// gets the lowest free descriptor from `wd` on (kernels with CONFIG_CHECKPOINT_RESTORE;
/// `ENOTTY` elsewhere).
pub const INOTIFY_IOC_SETNEXTWD: libc::c_ulong = 0x4004_4900;

/// Sets the next watch descriptor of `inotify` (see [`INOTIFY_IOC_SETNEXTWD`]).
pub fn inotify_set_next_wd(inotify: BorrowedFd<'_>, wd: i32) -> Result<(), Errno> {
    // SAFETY: valid fd; the kernel takes the argument by value (no pointer).
    let r = unsafe {
        libc::ioctl(
            inotify.as_raw_fd(),
            INOTIFY_IOC_SETNEXTWD as _,
            wd as libc::c_ulong,
        )
    };
    Errno::result(r).map(drop)
}

/// `ioctl(FIONREAD)`: bytes of events queued on an inotify or fanotify fd (read-only).
pub fn queued_bytes(fd: BorrowedFd<'_>) -> Result<u32, Errno> {
    let mut n: libc::c_int = 0;
    // SAFETY: valid fd; `n` is a live int the kernel writes.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n) };
    Errno::result(r)?;
    Ok(n.max(0) as u32)
}

/// The inotify instance behind `fd`, for nix's safe calls. `fd` must come from
/// `inotify_init1` (a duplicate of what [`nix::sys::inotify::Inotify::init`] returned).
pub(crate) fn inotify_of(fd: OwnedFd) -> nix::sys::inotify::Inotify {
    // SAFETY: per the contract above the fd is an inotify instance, which is all nix's
    // wrapper assumes of it.
    unsafe { nix::sys::inotify::Inotify::from_owned_fd(fd) }
}

/// The fanotify group behind `fd`, for nix's safe calls. `fd` must come from
/// `fanotify_init` (a duplicate of what [`nix::sys::fanotify::Fanotify::init`] returned).
pub(crate) fn fanotify_of(fd: OwnedFd) -> nix::sys::fanotify::Fanotify {
    // SAFETY: per the contract above the fd is a fanotify group, which is all nix's
    // wrapper assumes of it.
    unsafe { nix::sys::fanotify::Fanotify::from_owned_fd(fd) }
}
