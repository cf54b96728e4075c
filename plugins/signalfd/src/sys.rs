//! The one system call this plugin makes itself: `signalfd4` with a raw 64-bit mask (nix's
//! `SigSet` cannot hold real-time signals without unsafe code either).

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

/// A new signalfd for the signals of `mask` (bit N-1 for signal N), close-on-exec, and
/// nonblocking when `nonblock`. The kernel drops `SIGKILL` and `SIGSTOP` from the mask.
pub fn signalfd(mask: u64, nonblock: bool) -> io::Result<OwnedFd> {
    let mut flags = libc::SFD_CLOEXEC;
    if nonblock {
        flags |= libc::SFD_NONBLOCK;
    }
    // SAFETY: fd -1 asks for a new signalfd; the mask pointer is valid for the 8 bytes the
    // kernel's sigset_t has on Linux, which is the size passed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_signalfd4,
            -1,
            &mask as *const u64,
            std::mem::size_of::<u64>(),
            flags,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: signalfd4 returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as i32) })
}
