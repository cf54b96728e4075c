//! `TFD_IOC_SET_TICKS` and `timerfd_gettime` on a borrowed fd, which nix has no wrapper
//! for, wrapped once here. This is the plugin's only `unsafe` code.

#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;

// `TFD_IOC_SET_TICKS` = `_IOW('T', 0, __u64)` (Linux 3.17+, CONFIG_CHECKPOINT_RESTORE).
nix::ioctl_write_ptr!(tfd_ioc_set_ticks, b'T', 0, u64);

/// Sets the expiries a `read` of the timerfd returns (and wakes its readers).
pub fn set_ticks(fd: BorrowedFd<'_>, ticks: u64) -> Result<(), Errno> {
    // SAFETY: valid fd; the kernel reads one u64 from a live local.
    unsafe { tfd_ioc_set_ticks(fd.as_raw_fd(), &ticks) }.map(drop)
}

/// `timerfd_gettime`, for its side effect: a periodic timer that expired since its last
/// `read` is moved to its next expiry and the expiries it missed are added to its ticks,
/// which fdinfo shows only after that. What a `read` returns does not change.
pub fn settle(fd: BorrowedFd<'_>) -> Result<(), Errno> {
    // SAFETY: valid fd; the kernel writes one itimerspec into a live zeroed local.
    let r = unsafe {
        let mut cur: libc::itimerspec = std::mem::zeroed();
        libc::timerfd_gettime(fd.as_raw_fd(), &mut cur)
    };
    Errno::result(r).map(drop)
}
