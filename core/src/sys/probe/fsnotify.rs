//! Probes for the inotify and fanotify plugins: file handles and the inotify wd ioctl.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use super::{Result, fd_or, ok_or};

/// `struct file_handle` with room for `MAX_HANDLE_SZ` bytes (libc's has a flexible array).
#[repr(C)]
struct Handle {
    bytes: u32,
    kind: i32,
    data: [u8; 128],
}

/// `name_to_handle_at(AT_FDCWD, path)` then `open_by_handle_at(mount, handle, O_PATH)`:
/// whether a file can be found again from its handle (`CONFIG_FHANDLE`,
/// `CAP_DAC_READ_SEARCH`). `mount` is an fd of a directory on the same filesystem, opened
/// for reading.
pub fn reopen_by_handle(path: &CStr, mount: BorrowedFd<'_>) -> Result<OwnedFd> {
    let mut h = Handle {
        bytes: 128,
        kind: 0,
        data: [0; 128],
    };
    let mut mnt_id: libc::c_int = 0;
    // SAFETY: `path` is a C string; `h` announces exactly the room it has; `mnt_id` is a
    // live int. The kernel writes within them.
    let r = unsafe {
        libc::name_to_handle_at(
            libc::AT_FDCWD,
            path.as_ptr(),
            (&mut h as *mut Handle).cast::<libc::file_handle>(),
            &mut mnt_id,
            0,
        )
    };
    ok_or("name_to_handle_at", r.into())?;
    // SAFETY: `h` is the handle the kernel just filled; the kernel only reads it.
    let r = unsafe {
        libc::open_by_handle_at(
            mount.as_raw_fd(),
            (&mut h as *mut Handle).cast::<libc::file_handle>(),
            libc::O_PATH | libc::O_CLOEXEC,
        )
    };
    fd_or("open_by_handle_at", r.into())
}

/// `ioctl(INOTIFY_IOC_SETNEXTWD, wd)` (`CONFIG_CHECKPOINT_RESTORE`).
pub fn inotify_set_next_wd(inotify: BorrowedFd<'_>, wd: i32) -> Result<()> {
    const INOTIFY_IOC_SETNEXTWD: libc::c_ulong = 0x4004_4900;
    // SAFETY: valid fd; the argument is taken by value.
    let r = unsafe {
        libc::ioctl(
            inotify.as_raw_fd(),
            INOTIFY_IOC_SETNEXTWD as _,
            wd as libc::c_ulong,
        )
    };
    ok_or("ioctl(INOTIFY_IOC_SETNEXTWD)", r.into()).map(drop)
}
