//! Calls nix has no wrapper for: `SIOCUNIXFILE` and taking ownership of received fds, the
//! only unsafe code of the plugin (integer socket options: `criu-sk-common`'s wrappers).

#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;

// The integer option wrappers are sk-common's (one copy for every socket plugin).
pub(crate) use criu_sk_common::sys::{SO_PASSPIDFD, SO_PEEK_OFF, get_int, get_optional, set_int};

/// `SIOCUNIXFILE` (Linux 5.4+).
const SIOCUNIXFILE: libc::c_ulong = 0x89E0;

/// `ioctl(sock, SIOCUNIXFILE)`: an `O_PATH` fd of the file a unix socket is bound to.
pub(crate) fn unix_socket_file(sock: BorrowedFd<'_>) -> Result<std::os::fd::OwnedFd, Errno> {
    use std::os::fd::FromRawFd;
    // SAFETY: SIOCUNIXFILE takes no argument and returns a new fd or -1.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCUNIXFILE) };
    let fd = Errno::result(r)?;
    // SAFETY: `fd` was just returned by the kernel and is owned by nothing else.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// Takes ownership of an fd a `recvmsg` just installed in criu (`SCM_RIGHTS`), so that it is
/// closed exactly once.
pub(crate) fn own_received(fd: std::os::fd::RawFd) -> std::os::fd::OwnedFd {
    // SAFETY: the kernel installed `fd` in this process for this message only; no other
    // owner exists, so the OwnedFd is its sole owner.
    unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) }
}
