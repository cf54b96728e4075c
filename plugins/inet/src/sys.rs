//! The socket calls nix has no wrapper for: `TCP_INFO`, the queue-size ioctls
//! (`SIOCINQ`, `SIOCOUTQ`, `SIOCOUTQNSD`), the TCP repair structures (`TCP_REPAIR_OPTIONS`,
//! `TCP_REPAIR_WINDOW`, not in the libc crate: defined here as linux/tcp.h has them) and a
//! peek of `len` bytes. The only unsafe code of the plugin; each wrapper returns
//! `Result<_, Errno>`. Integer options go through `criu_sk_common::sys`.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;

/// `TCP_REPAIR_QUEUE` (linux/tcp.h): which queue `TCP_QUEUE_SEQ` and repair sends act on.
pub const TCP_REPAIR_QUEUE: i32 = 20;
/// `TCP_REPAIR_OPTIONS`: the options the handshake negotiated.
pub const TCP_REPAIR_OPTIONS: i32 = 22;
/// `TCP_REPAIR_WINDOW` (4.8+): the window state.
pub const TCP_REPAIR_WINDOW: i32 = 29;
/// `TCP_RECV_QUEUE` for `TCP_REPAIR_QUEUE`.
pub const TCP_RECV_QUEUE: i32 = 1;
/// `TCP_SEND_QUEUE` for `TCP_REPAIR_QUEUE`.
pub const TCP_SEND_QUEUE: i32 = 2;
/// `TCPOPT_MAXSEG` (net/tcp.h).
pub const TCPOPT_MAXSEG: u32 = 2;
/// `TCPOPT_WINDOW`.
pub const TCPOPT_WINDOW: u32 = 3;
/// `TCPOPT_SACK_PERM`.
pub const TCPOPT_SACK_PERM: u32 = 4;
/// `TCPOPT_TIMESTAMP`.
pub const TCPOPT_TIMESTAMP: u32 = 8;
/// `SIOCOUTQNSD` (linux/sockios.h): bytes of the send queue not sent yet.
const SIOCOUTQNSD: libc::c_ulong = 0x894B;
/// `UDP_CORK` (linux/udp.h).
pub const UDP_CORK: i32 = 1;
/// `IPV6_FREEBIND` (linux/in6.h, 4.15+).
pub const IPV6_FREEBIND: i32 = 78;

/// `struct tcp_repair_opt`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpRepairOpt {
    /// `TCPOPT_*`.
    pub code: u32,
    /// Its value.
    pub val: u32,
}

/// `struct tcp_repair_window`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpRepairWindow {
    /// `snd_wl1`: the sequence number of the segment that last updated the send window.
    pub snd_wl1: u32,
    /// The send window.
    pub snd_wnd: u32,
    /// The largest window the peer offered.
    pub max_window: u32,
    /// The receive window.
    pub rcv_wnd: u32,
    /// `rcv_wup`: `rcv_nxt` at the last window update sent.
    pub rcv_wup: u32,
}

/// `getsockopt(fd, SOL_TCP, TCP_INFO)`.
pub fn tcp_info(fd: BorrowedFd<'_>) -> Result<libc::tcp_info, Errno> {
    // SAFETY: tcp_info is plain old data; all zeroes is a valid value.
    let mut ti: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `ti` is valid for writes of `len` bytes; the kernel writes at most that.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_TCP,
            libc::TCP_INFO,
            (&raw mut ti).cast(),
            &raw mut len,
        )
    };
    Errno::result(r).map(|_| ti)
}

fn ioctl_int(fd: BorrowedFd<'_>, req: libc::c_ulong) -> Result<u32, Errno> {
    let mut v: libc::c_int = 0;
    // SAFETY: these ioctls write one int through the pointer.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), req, &raw mut v) };
    Errno::result(r).map(|_| v as u32)
}

/// Bytes in the receive queue (`SIOCINQ`), or the size of the next datagram for UDP.
pub fn inq(fd: BorrowedFd<'_>) -> Result<u32, Errno> {
    ioctl_int(fd, libc::FIONREAD)
}

/// Bytes in the send queue, sent or not (`SIOCOUTQ`).
pub fn outq(fd: BorrowedFd<'_>) -> Result<u32, Errno> {
    ioctl_int(fd, libc::TIOCOUTQ)
}

/// The events of `events` that `fd` has now (`poll` with no wait).
pub fn poll_now(fd: BorrowedFd<'_>, events: i16) -> Result<i16, Errno> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no wait.
    Errno::result(unsafe { libc::poll(&mut p, 1, 0) })?;
    Ok(p.revents)
}

/// `SIOCGSKNS` (linux/sockios.h): an fd of the socket's network namespace.
const SIOCGSKNS: libc::c_ulong = 0x894C;

/// The network namespace of socket `fd`, as a new fd (`SIOCGSKNS`).
pub fn skns(fd: BorrowedFd<'_>) -> Result<std::os::fd::OwnedFd, Errno> {
    // SAFETY: SIOCGSKNS takes no argument and returns a new fd or -1.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), SIOCGSKNS as _) };
    let r = Errno::result(r)?;
    // SAFETY: the fd was just made by the kernel for us and nothing else owns it.
    Ok(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(r) })
}

/// Bytes of the send queue not sent yet (`SIOCOUTQNSD`).
pub fn outq_not_sent(fd: BorrowedFd<'_>) -> Result<u32, Errno> {
    ioctl_int(fd, SIOCOUTQNSD)
}

/// `setsockopt(fd, SOL_TCP, TCP_REPAIR_OPTIONS, opts)`.
pub fn set_repair_options(fd: BorrowedFd<'_>, opts: &[TcpRepairOpt]) -> Result<(), Errno> {
    // SAFETY: `opts` is a slice of `repr(C)` structs laid out as the kernel's array.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_TCP,
            TCP_REPAIR_OPTIONS,
            opts.as_ptr().cast(),
            std::mem::size_of_val(opts) as libc::socklen_t,
        )
    };
    Errno::result(r).map(drop)
}

/// `getsockopt(fd, SOL_TCP, TCP_REPAIR_WINDOW)` (the socket must be in repair mode).
pub fn repair_window(fd: BorrowedFd<'_>) -> Result<TcpRepairWindow, Errno> {
    let mut w = TcpRepairWindow::default();
    let mut len = std::mem::size_of::<TcpRepairWindow>() as libc::socklen_t;
    // SAFETY: `w` is valid for writes of `len` bytes.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_TCP,
            TCP_REPAIR_WINDOW,
            (&raw mut w).cast(),
            &raw mut len,
        )
    };
    Errno::result(r).map(|_| w)
}

/// `setsockopt(fd, SOL_TCP, TCP_REPAIR_WINDOW, w)`.
pub fn set_repair_window(fd: BorrowedFd<'_>, w: &TcpRepairWindow) -> Result<(), Errno> {
    // SAFETY: `w` is a `repr(C)` struct laid out as the kernel's, alive for the call.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_TCP,
            TCP_REPAIR_WINDOW,
            std::ptr::from_ref(w).cast(),
            std::mem::size_of::<TcpRepairWindow>() as libc::socklen_t,
        )
    };
    Errno::result(r).map(drop)
}

/// `socket(family, ty | SOCK_CLOEXEC, proto)` (nix's protocol enum lacks UDP-Lite and
/// ICMP).
pub fn inet_socket(family: i32, ty: i32, proto: i32) -> Result<std::os::fd::OwnedFd, Errno> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain syscall without pointers.
    let fd = Errno::result(unsafe { libc::socket(family, ty | libc::SOCK_CLOEXEC, proto) })?;
    // SAFETY: `fd` was just returned by socket(2) and is owned by nothing else.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// `addr` as a `sockaddr_in`/`sockaddr_in6` in a `sockaddr_storage`, with its length.
fn to_raw(addr: std::net::SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all zeroes is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        std::net::SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write((&raw mut ss).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        std::net::SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write((&raw mut ss).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

/// The address in `ss` when it is an inet one.
fn from_raw(ss: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<std::net::SocketAddr> {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
    match i32::from(ss.ss_family) {
        libc::AF_INET if len as usize >= std::mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in, and it is long enough.
            let sin: libc::sockaddr_in = unsafe { std::ptr::read(std::ptr::from_ref(ss).cast()) };
            Some(
                SocketAddrV4::new(
                    Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()),
                    u16::from_be(sin.sin_port),
                )
                .into(),
            )
        }
        libc::AF_INET6 if len as usize >= std::mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: the family says the storage holds a sockaddr_in6, and it is long enough.
            let s: libc::sockaddr_in6 = unsafe { std::ptr::read(std::ptr::from_ref(ss).cast()) };
            Some(
                SocketAddrV6::new(
                    Ipv6Addr::from(s.sin6_addr.s6_addr),
                    u16::from_be(s.sin6_port),
                    s.sin6_flowinfo,
                    s.sin6_scope_id,
                )
                .into(),
            )
        }
        _ => None,
    }
}

type NameCall =
    unsafe extern "C" fn(libc::c_int, *mut libc::sockaddr, *mut libc::socklen_t) -> libc::c_int;

fn name_of(fd: BorrowedFd<'_>, call: NameCall) -> Result<Option<std::net::SocketAddr>, Errno> {
    // SAFETY: sockaddr_storage is plain old data; all zeroes is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `ss` is valid for writes of `len` bytes; the kernel writes at most that.
    let r = unsafe { call(fd.as_raw_fd(), (&raw mut ss).cast(), &raw mut len) };
    Errno::result(r)?;
    Ok(from_raw(&ss, len))
}

/// `getsockname(fd)`: `None` for a name of another family.
pub fn local_name(fd: BorrowedFd<'_>) -> Result<Option<std::net::SocketAddr>, Errno> {
    name_of(fd, libc::getsockname)
}

/// `getpeername(fd)`: `None` when not connected.
pub fn peer_name(fd: BorrowedFd<'_>) -> Result<Option<std::net::SocketAddr>, Errno> {
    match name_of(fd, libc::getpeername) {
        Err(Errno::ENOTCONN) => Ok(None),
        r => r,
    }
}

/// `SO_PEERNAME` of `fd`: unlike `getpeername`, the peer a closed TCP socket last had
/// (CRIU records it: such a socket is a closed connection). `None` when there never was one.
/// `family` is the socket's: the kernel wants the exact size of its address.
pub fn last_peer(fd: BorrowedFd<'_>, family: u32) -> Result<Option<std::net::SocketAddr>, Errno> {
    // SAFETY: sockaddr_storage is plain old data; all zeroes is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = if family == libc::AF_INET6 as u32 {
        std::mem::size_of::<libc::sockaddr_in6>()
    } else {
        std::mem::size_of::<libc::sockaddr_in>()
    } as libc::socklen_t;
    // SAFETY: `ss` is valid for writes of `len` bytes; the kernel writes at most that.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERNAME,
            (&raw mut ss).cast(),
            &raw mut len,
        )
    };
    match Errno::result(r) {
        Err(Errno::ENOTCONN) => Ok(None),
        Err(e) => Err(e),
        Ok(_) => Ok(from_raw(&ss, len).filter(|a| a.port() != 0)),
    }
}

/// `bind(fd, addr)`.
pub fn bind(fd: BorrowedFd<'_>, addr: std::net::SocketAddr) -> Result<(), Errno> {
    let (ss, len) = to_raw(addr);
    // SAFETY: `ss` holds an address of `len` bytes, alive for the call.
    Errno::result(unsafe { libc::bind(fd.as_raw_fd(), (&raw const ss).cast(), len) }).map(drop)
}

/// `connect(fd, addr)`.
pub fn connect(fd: BorrowedFd<'_>, addr: std::net::SocketAddr) -> Result<(), Errno> {
    let (ss, len) = to_raw(addr);
    // SAFETY: `ss` holds an address of `len` bytes, alive for the call.
    Errno::result(unsafe { libc::connect(fd.as_raw_fd(), (&raw const ss).cast(), len) }).map(drop)
}

/// `sendto(fd, data, flags, to)`; the bytes sent.
pub fn send_to(
    fd: BorrowedFd<'_>,
    data: &[u8],
    to: Option<std::net::SocketAddr>,
    flags: i32,
) -> Result<usize, Errno> {
    let raw = to.map(to_raw);
    let (ptr, len) = match &raw {
        Some((ss, len)) => (std::ptr::from_ref(ss).cast::<libc::sockaddr>(), *len),
        None => (std::ptr::null(), 0),
    };
    // SAFETY: `data` and the address (or null with length 0) are valid for the call.
    let r = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            data.as_ptr().cast(),
            data.len(),
            flags,
            ptr,
            len,
        )
    };
    Errno::result(r).map(|n| n as usize)
}

/// `recvfrom(fd, buf, flags)`: the bytes received and the sender.
pub fn recv_from(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    flags: i32,
) -> Result<(usize, Option<std::net::SocketAddr>), Errno> {
    // SAFETY: sockaddr_storage is plain old data; all zeroes is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `buf` and `ss` are valid for writes of the lengths passed.
    let r = unsafe {
        libc::recvfrom(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            flags,
            (&raw mut ss).cast(),
            &raw mut len,
        )
    };
    let n = Errno::result(r)? as usize;
    Ok((n, from_raw(&ss, len)))
}
