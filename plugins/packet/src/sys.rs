//! The few calls nix has no wrapper for: a packet socket of any protocol, its binds
//! (`sockaddr_ll`, and the `sockaddr` with a device name of `SOCK_PACKET`) and the
//! network namespace of a socket (`SIOCGSKNS`).
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::errno::Errno;

/// `SOCK_PACKET` (linux/net.h; libc marks it deprecated, but CRIU's images hold it).
pub const SOCK_PACKET: i32 = 10;
/// `SIOCGSKNS` (linux/sockios.h).
const SIOCGSKNS: libc::c_ulong = 0x894C;

/// `socket(AF_PACKET, ty, proto)`, close-on-exec; `proto` in network byte order.
pub fn packet_socket(ty: i32, proto: i32) -> Result<OwnedFd, Errno> {
    // SAFETY: plain syscall without pointers.
    let fd =
        Errno::result(unsafe { libc::socket(libc::AF_PACKET, ty | libc::SOCK_CLOEXEC, proto) })?;
    // SAFETY: `fd` was just returned by socket(2) and is owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `bind(fd, sockaddr_ll { ifindex })`: protocol 0 keeps the socket's own.
pub fn bind_ll(fd: BorrowedFd<'_>, ifindex: i32) -> Result<(), Errno> {
    // SAFETY: sockaddr_ll is plain old data; all zeroes is a valid value.
    let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sa.sll_family = libc::AF_PACKET as u16;
    sa.sll_ifindex = ifindex;
    let len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: `sa` is a valid sockaddr_ll of `len` bytes for the duration of the call.
    let r = unsafe { libc::bind(fd.as_raw_fd(), (&raw const sa).cast(), len) };
    Errno::result(r).map(drop)
}

/// `bind(fd, sockaddr { AF_PACKET, name })` of a `SOCK_PACKET` socket.
pub fn bind_spkt(fd: BorrowedFd<'_>, name: &str) -> Result<(), Errno> {
    // SAFETY: sockaddr is plain old data; all zeroes is a valid value.
    let mut sa: libc::sockaddr = unsafe { std::mem::zeroed() };
    sa.sa_family = libc::AF_PACKET as u16;
    // The last byte stays 0: names are shorter than IFNAMSIZ (16) anyway.
    for (d, s) in sa.sa_data.iter_mut().zip(name.bytes().take(13)) {
        *d = s as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sockaddr>() as libc::socklen_t;
    // SAFETY: `sa` is a valid sockaddr of `len` bytes for the duration of the call.
    let r = unsafe { libc::bind(fd.as_raw_fd(), (&raw const sa).cast(), len) };
    Errno::result(r).map(drop)
}

/// The network namespace of socket `fd` (`SIOCGSKNS`).
pub fn skns(fd: BorrowedFd<'_>) -> Result<OwnedFd, Errno> {
    // SAFETY: SIOCGSKNS takes no argument and returns a new fd or -1.
    let r = Errno::result(unsafe { libc::ioctl(fd.as_raw_fd(), SIOCGSKNS as _) })?;
    // SAFETY: the fd was just made by the kernel for us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}
