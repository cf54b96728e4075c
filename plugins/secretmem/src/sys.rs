//! The one system call nix does not wrap.
#![allow(unsafe_code)]

use std::os::fd::{FromRawFd, OwnedFd};

use nix::errno::Errno;

/// `memfd_secret(O_CLOEXEC)`: a new secret memory file (Linux 5.14+, secretmem enabled).
pub fn memfd_secret() -> Result<OwnedFd, Errno> {
    // SAFETY: memfd_secret takes one flags word and touches no memory of ours.
    let r = unsafe { libc::syscall(libc::SYS_memfd_secret, libc::O_CLOEXEC) };
    if r < 0 {
        return Err(Errno::last());
    }
    // SAFETY: on success the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(r as i32) })
}
