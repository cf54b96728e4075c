//! Socket option calls nix has no typed wrapper for: `int` options of any level, byte-string
//! options (`SO_BINDTODEVICE`) and option numbers newer than the libc crate. The only
//! unsafe code of the crate; each wrapper returns `Result<_, Errno>`.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;

/// `SO_PASSSEC` (asm-generic/socket.h).
pub const SO_PASSSEC: i32 = 34;
/// `SO_MARK`.
pub const SO_MARK: i32 = 36;
/// `SO_PEEK_OFF`: the offset `MSG_PEEK` reads from (-1: peeking always starts at the head).
pub const SO_PEEK_OFF: i32 = 42;
/// `SO_BUF_LOCK`: bit 0 `SO_SNDBUF` was set by the program, bit 1 `SO_RCVBUF` (5.14+).
pub const SO_BUF_LOCK: i32 = 72;
/// `SO_PASSPIDFD` (6.5+): received messages carry an `SCM_PIDFD` of the sender.
pub const SO_PASSPIDFD: i32 = 76;
/// `SO_PASSRIGHTS` (6.16+): 0 makes a unix socket refuse `SCM_RIGHTS`.
pub const SO_PASSRIGHTS: i32 = 83;

/// `getsockopt(fd, level, opt)` of an `int` option.
pub fn get_int(fd: BorrowedFd<'_>, level: i32, opt: i32) -> Result<i32, Errno> {
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
pub fn set_int(fd: BorrowedFd<'_>, level: i32, opt: i32, val: i32) -> Result<(), Errno> {
    set_bytes(fd, level, opt, &val.to_ne_bytes())
}

/// `getsockopt(fd, level, opt)` into a buffer of `max` bytes; the bytes the kernel wrote.
pub fn get_bytes(fd: BorrowedFd<'_>, level: i32, opt: i32, max: usize) -> Result<Vec<u8>, Errno> {
    let mut buf = vec![0u8; max];
    let mut len = max as libc::socklen_t;
    // SAFETY: `buf` is valid for writes of `len` bytes; the kernel writes at most that and
    // stores the length it wrote in `len`.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            buf.as_mut_ptr().cast(),
            &raw mut len,
        )
    };
    Errno::result(r)?;
    buf.truncate((len as usize).min(max));
    Ok(buf)
}

/// `setsockopt(fd, level, opt, bytes)`.
pub fn set_bytes(fd: BorrowedFd<'_>, level: i32, opt: i32, bytes: &[u8]) -> Result<(), Errno> {
    // SAFETY: `bytes` lives across the call and its length is passed along.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            bytes.as_ptr().cast(),
            bytes.len() as libc::socklen_t,
        )
    };
    Errno::result(r).map(drop)
}

/// A `SOL_SOCKET` int option, `None` when this kernel does not know it (`ENOPROTOOPT`).
pub fn get_optional(fd: BorrowedFd<'_>, opt: i32) -> Result<Option<i32>, Errno> {
    match get_int(fd, libc::SOL_SOCKET, opt) {
        Ok(v) => Ok(Some(v)),
        Err(Errno::ENOPROTOOPT) => Ok(None),
        Err(e) => Err(e),
    }
}
