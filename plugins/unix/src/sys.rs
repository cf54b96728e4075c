//! Integer socket options nix has no typed wrapper for (`SO_PEEK_OFF`, `SO_PASSPIDFD`,
//! `SO_PASSRIGHTS`, `SO_BUF_LOCK`, ...): the only unsafe code of the plugin.

#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;

/// `SO_PASSSEC` (asm-generic/socket.h).
pub(crate) const SO_PASSSEC: i32 = 34;
/// `SO_MARK`.
pub(crate) const SO_MARK: i32 = 36;
/// `SO_PEEK_OFF`: the offset `MSG_PEEK` reads from (-1: peeking always starts at the head).
pub(crate) const SO_PEEK_OFF: i32 = 42;
/// `SO_BUF_LOCK`: bit 0 `SO_SNDBUF` was set by the program, bit 1 `SO_RCVBUF` (5.14+).
pub(crate) const SO_BUF_LOCK: i32 = 72;
/// `SO_PASSPIDFD` (6.5+): received messages carry an `SCM_PIDFD` of the sender.
pub(crate) const SO_PASSPIDFD: i32 = 76;
/// `SO_PASSRIGHTS` (6.16+): 0 makes the socket refuse `SCM_RIGHTS`.
pub(crate) const SO_PASSRIGHTS: i32 = 83;

/// `getsockopt(fd, level, opt)` of an `int` option.
pub(crate) fn get_int(fd: BorrowedFd<'_>, level: i32, opt: i32) -> Result<i32, Errno> {
    let mut val: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `val` and `len` are valid for writes of the sizes given; the kernel writes at
    // most `len` bytes.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            (&raw mut val).cast(),
            &raw mut len,
        )
    };
    Errno::result(r).map(|_| val)
}

/// `setsockopt(fd, level, opt, &val)` of an `int` option.
pub(crate) fn set_int(fd: BorrowedFd<'_>, level: i32, opt: i32, val: i32) -> Result<(), Errno> {
    // SAFETY: `val` lives across the call and its size is passed along.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            (&raw const val).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    Errno::result(r).map(drop)
}

/// A `SOL_SOCKET` int option, `None` when this kernel does not know it (`ENOPROTOOPT`).
pub(crate) fn get_optional(fd: BorrowedFd<'_>, opt: i32) -> Result<Option<i32>, Errno> {
    match get_int(fd, libc::SOL_SOCKET, opt) {
        Ok(v) => Ok(Some(v)),
        Err(Errno::ENOPROTOOPT) => Ok(None),
        Err(e) => Err(e),
    }
}

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
