//! The socket calls nix has no wrapper for: a netlink socket of any protocol number, integer
//! options of `SOL_NETLINK` (and the few `SOL_SOCKET` ones nix lacks), the group list
//! (`NETLINK_LIST_MEMBERSHIPS`), the socket's network namespace (`SIOCGSKNS`) and its
//! classic BPF filter (`SO_GET_FILTER`, `SO_ATTACH_FILTER`). Each is a thin, safe wrapper
//! returning `io::Result`; nothing else in the plugin is `unsafe`.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// `SIOCGSKNS` (linux/sockios.h): an fd of the socket's network namespace.
const SIOCGSKNS: libc::c_ulong = 0x894C;

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// `socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, protocol)`.
pub fn netlink_socket(protocol: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall without pointers.
    let fd = check(unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            protocol,
        )
    })?;
    // SAFETY: `fd` was just returned by socket(2) and is owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `getsockopt(fd, level, name)` of an `int` option.
pub fn get_int(fd: BorrowedFd<'_>, level: i32, name: i32) -> io::Result<i32> {
    let mut val: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `val` and `len` are valid for writes of the sizes passed.
    check(unsafe {
        libc::getsockopt(fd.as_raw_fd(), level, name, (&raw mut val).cast(), &mut len)
    })?;
    Ok(val)
}

/// `setsockopt(fd, level, name, &val)` of an `int` option.
pub fn set_int(fd: BorrowedFd<'_>, level: i32, name: i32, val: i32) -> io::Result<()> {
    // SAFETY: `val` is valid for reads of the size passed.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&raw const val).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// The multicast groups the socket is in (`NETLINK_LIST_MEMBERSHIPS`): word `i` holds groups
/// `32 * i + 1 ..= 32 * i + 32` (bit 0 = the lowest), as many words as the protocol has.
pub fn memberships(fd: BorrowedFd<'_>) -> io::Result<Vec<u32>> {
    let mut words = vec![0u32; 32];
    loop {
        let mut len = (words.len() * 4) as libc::socklen_t;
        // SAFETY: `words` is valid for writes of `len` bytes; the kernel writes at most that.
        check(unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_NETLINK,
                libc::NETLINK_LIST_MEMBERSHIPS,
                words.as_mut_ptr().cast(),
                &mut len,
            )
        })?;
        // The kernel answers with the size it has; a larger one means ours was short.
        let have = (len as usize).div_ceil(4);
        if have <= words.len() {
            words.truncate(have);
            return Ok(words);
        }
        words = vec![0u32; have];
    }
}

/// The inode of the socket's network namespace (`ioctl(SIOCGSKNS)`, then `fstat`).
pub fn netns_inode(fd: BorrowedFd<'_>) -> io::Result<u64> {
    // SAFETY: SIOCGSKNS takes no argument and returns a new fd.
    let ns = check(unsafe { libc::ioctl(fd.as_raw_fd(), SIOCGSKNS) })?;
    // SAFETY: `ns` was just returned by the ioctl and is owned by nothing else.
    let ns = unsafe { OwnedFd::from_raw_fd(ns) };
    Ok(nix::sys::stat::fstat(&ns)?.st_ino)
}

/// How many instructions the socket's attached classic BPF filter has (0: none),
/// `SO_GET_FILTER` with an empty buffer.
pub fn filter_len(fd: BorrowedFd<'_>) -> io::Result<u32> {
    let mut len: libc::socklen_t = 0;
    // SAFETY: with a zero length the kernel writes nothing through the (null) buffer and
    // answers in `len`.
    check(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_GET_FILTER,
            std::ptr::null_mut(),
            &mut len,
        )
    })?;
    Ok(len)
}

/// The socket's classic BPF filter of `n` instructions ([`filter_len`]), each as the `u64`
/// with the bytes of its `struct sock_filter` (how CRIU's `sk_opts_entry.so_filter` holds
/// it).
pub fn get_filter(fd: BorrowedFd<'_>, n: u32) -> io::Result<Vec<u64>> {
    let mut prog = vec![0u64; n as usize];
    // For SO_GET_FILTER the length is counted in instructions, not bytes.
    let mut len = n as libc::socklen_t;
    // SAFETY: `prog` has room for `n` 8-byte `sock_filter`s, as many as `len` allows.
    check(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_GET_FILTER,
            prog.as_mut_ptr().cast(),
            &mut len,
        )
    })?;
    prog.truncate(len as usize);
    Ok(prog)
}

/// Attaches the classic BPF program `prog` (as [`get_filter`] returns it):
/// `SO_ATTACH_FILTER`.
pub fn attach_filter(fd: BorrowedFd<'_>, prog: &[u64]) -> io::Result<()> {
    let mut insns: Vec<libc::sock_filter> = prog
        .iter()
        .map(|w| {
            let b = w.to_ne_bytes();
            libc::sock_filter {
                code: u16::from_ne_bytes([b[0], b[1]]),
                jt: b[2],
                jf: b[3],
                k: u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
            }
        })
        .collect();
    let fprog = libc::sock_fprog {
        len: u16::try_from(insns.len()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?,
        filter: insns.as_mut_ptr(),
    };
    // SAFETY: `fprog` points to `insns`, alive for the call; the kernel copies the program.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&raw const fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    })
    .map(drop)
}
