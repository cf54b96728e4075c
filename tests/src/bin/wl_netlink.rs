//! Netlink workload: an rtnetlink socket subscribed to link and IPv4 address notifications
//! (plus a group above 32, `NETLINK_NO_ENOBUFS` and a 300000-byte receive buffer), a uevent
//! listener and an unbound generic netlink socket.
//!
//! It leads its own session, reports `ready <pid> port=<rtnetlink port id>`, then waits for
//! GO_FILE (created by the test after the restore). It checks that each socket has its
//! protocol, port id, groups and options back, reports `listening`, waits (10 s at most) for
//! the kernel's RTM_NEWADDR notification of ADDR (an IPv4 address the test adds), then asks
//! the kernel for every link (RTM_GETLINK dump) and looks for `lo` in the answer. It appends
//! `ok` or `fail <why>` and exits 0 or 1.
//!
//! Usage: wl_netlink REPORT_FILE GO_FILE ADDR

use std::io::Write;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use nix::sys::socket::{MsgFlags, NetlinkAddr, bind, getsockname, recv, send};

const RTMGRP_LINK: u32 = 1;
const RTMGRP_IPV4_IFADDR: u32 = 0x10;
const HIGH_GROUP: i32 = 33;

fn netlink(protocol: i32) -> OwnedFd {
    // SAFETY: plain syscall; the fd it returns is owned by nothing else.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            protocol,
        )
    };
    assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: `fd` was just returned by socket(2).
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn get_int(fd: &OwnedFd, level: i32, name: i32) -> i32 {
    let mut v: libc::c_int = 0;
    let mut len = 4 as libc::socklen_t;
    // SAFETY: `v` and `len` are valid for the writes of the sizes passed.
    let r = unsafe { libc::getsockopt(fd.as_raw_fd(), level, name, (&raw mut v).cast(), &mut len) };
    assert_eq!(r, 0, "getsockopt {level}/{name}");
    v
}

fn set_int(fd: &OwnedFd, level: i32, name: i32, v: i32) {
    // SAFETY: `v` is valid for reads of the size passed.
    let r = unsafe { libc::setsockopt(fd.as_raw_fd(), level, name, (&raw const v).cast(), 4) };
    assert_eq!(r, 0, "setsockopt {level}/{name}");
}

fn groups(fd: &OwnedFd) -> Vec<u32> {
    let mut w = [0u32; 8];
    let mut len = 32 as libc::socklen_t;
    // SAFETY: `w` is valid for writes of `len` bytes.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_NETLINK,
            libc::NETLINK_LIST_MEMBERSHIPS,
            w.as_mut_ptr().cast(),
            &mut len,
        )
    };
    assert_eq!(r, 0, "NETLINK_LIST_MEMBERSHIPS");
    let mut v = w[..(len as usize / 4).min(8)].to_vec();
    while v.last() == Some(&0) {
        v.pop();
    }
    v
}

fn port(fd: &OwnedFd) -> u32 {
    getsockname::<NetlinkAddr>(fd.as_raw_fd())
        .expect("getsockname")
        .pid()
}

/// The netlink messages in `buf`: (type, payload).
fn messages(buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 16 <= buf.len() {
        let len = u32::from_ne_bytes(buf[at..at + 4].try_into().expect("4")) as usize;
        if len < 16 || at + len > buf.len() {
            break;
        }
        let ty = u16::from_ne_bytes(buf[at + 4..at + 6].try_into().expect("2"));
        out.push((ty, &buf[at + 16..at + len]));
        at += len.next_multiple_of(4);
    }
    out
}

/// The attributes after a fixed header of `skip` bytes: (type, data).
fn attrs(payload: &[u8], skip: usize) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut at = skip;
    while at + 4 <= payload.len() {
        let len = u16::from_ne_bytes(payload[at..at + 2].try_into().expect("2")) as usize;
        if len < 4 || at + len > payload.len() {
            break;
        }
        let ty = u16::from_ne_bytes(payload[at + 2..at + 4].try_into().expect("2"));
        out.push((ty & 0x3fff, &payload[at + 4..at + len]));
        at += len.next_multiple_of(4);
    }
    out
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, report, go, addr] = args.as_slice() else {
        eprintln!("usage: wl_netlink REPORT_FILE GO_FILE ADDR");
        std::process::exit(2);
    };
    let addr: Ipv4Addr = addr.parse().expect("ADDR");
    let _ = nix::unistd::setsid();
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(report)
        .expect("open report");
    let route = netlink(libc::NETLINK_ROUTE);
    bind(
        route.as_raw_fd(),
        &NetlinkAddr::new(0, RTMGRP_LINK | RTMGRP_IPV4_IFADDR),
    )
    .expect("bind");
    set_int(
        &route,
        libc::SOL_NETLINK,
        libc::NETLINK_ADD_MEMBERSHIP,
        HIGH_GROUP,
    );
    set_int(&route, libc::SOL_NETLINK, libc::NETLINK_NO_ENOBUFS, 1);
    set_int(&route, libc::SOL_SOCKET, libc::SO_RCVBUF, 300_000);
    let uevent = netlink(libc::NETLINK_KOBJECT_UEVENT);
    bind(uevent.as_raw_fd(), &NetlinkAddr::new(0, 1)).expect("bind uevent");
    let generic = netlink(libc::NETLINK_GENERIC);
    let before = (port(&route), groups(&route), port(&uevent), groups(&uevent));
    let rcvbuf = get_int(&route, libc::SOL_SOCKET, libc::SO_RCVBUF);
    writeln!(out, "ready {} port={}", std::process::id(), before.0).expect("write");
    while !std::path::Path::new(go).exists() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let after = (port(&route), groups(&route), port(&uevent), groups(&uevent));
    let checks = [
        (
            after == before,
            format!("sockets {after:?}, were {before:?}"),
        ),
        (
            get_int(&route, libc::SOL_SOCKET, libc::SO_RCVBUF) == rcvbuf,
            "rcvbuf".into(),
        ),
        (
            get_int(&route, libc::SOL_NETLINK, libc::NETLINK_NO_ENOBUFS) == 1,
            "NO_ENOBUFS".into(),
        ),
        (
            get_int(&uevent, libc::SOL_SOCKET, libc::SO_PROTOCOL) == libc::NETLINK_KOBJECT_UEVENT,
            "uevent protocol".into(),
        ),
        (
            get_int(&generic, libc::SOL_SOCKET, libc::SO_PROTOCOL) == libc::NETLINK_GENERIC,
            "generic protocol".into(),
        ),
        (port(&generic) == 0, "generic socket bound".into()),
    ];
    if let Some((_, why)) = checks.iter().find(|(ok, _)| !ok) {
        writeln!(out, "fail {why}").expect("write");
        std::process::exit(1);
    }
    writeln!(out, "listening").expect("write");
    match talk(&route, addr) {
        Ok(()) => writeln!(out, "ok").expect("write"),
        Err(why) => {
            writeln!(out, "fail {why}").expect("write");
            std::process::exit(1);
        }
    }
}

/// Waits for ADDR's RTM_NEWADDR, then lists the links.
fn talk(route: &OwnedFd, addr: Ipv4Addr) -> Result<(), String> {
    let tv = nix::sys::time::TimeVal::new(10, 0);
    nix::sys::socket::setsockopt(
        &route.as_fd(),
        nix::sys::socket::sockopt::ReceiveTimeout,
        &tv,
    )
    .map_err(|e| format!("SO_RCVTIMEO: {e}"))?;
    let mut buf = vec![0u8; 65536];
    'notified: loop {
        let n = recv(route.as_raw_fd(), &mut buf, MsgFlags::empty())
            .map_err(|e| format!("waiting for RTM_NEWADDR of {addr}: {e}"))?;
        for (ty, p) in messages(&buf[..n]) {
            if ty == libc::RTM_NEWADDR
                && attrs(p, 8)
                    .iter()
                    .any(|(t, d)| (*t == 1 || *t == 2) && *d == addr.octets())
            {
                break 'notified;
            }
        }
    }
    // RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, an ifinfomsg of family AF_UNSPEC.
    let mut req = [0u8; 32];
    req[0..4].copy_from_slice(&32u32.to_ne_bytes());
    req[4..6].copy_from_slice(&libc::RTM_GETLINK.to_ne_bytes());
    req[6..8].copy_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16).to_ne_bytes());
    req[8..12].copy_from_slice(&7u32.to_ne_bytes());
    send(route.as_raw_fd(), &req, MsgFlags::empty())
        .map_err(|e| format!("send RTM_GETLINK: {e}"))?;
    let mut names = Vec::new();
    loop {
        let n = recv(route.as_raw_fd(), &mut buf, MsgFlags::empty())
            .map_err(|e| format!("RTM_GETLINK answer: {e}"))?;
        for (ty, p) in messages(&buf[..n]) {
            match ty as i32 {
                libc::NLMSG_DONE => {
                    return if names.iter().any(|n| n == "lo") {
                        Ok(())
                    } else {
                        Err(format!("links {names:?}"))
                    };
                }
                libc::NLMSG_ERROR => return Err("RTM_GETLINK answered an error".into()),
                _ if ty == libc::RTM_NEWLINK => {
                    for (t, d) in attrs(p, 16) {
                        if t == libc::IFLA_IFNAME {
                            names.push(
                                String::from_utf8_lossy(d)
                                    .trim_end_matches('\0')
                                    .to_string(),
                            );
                        }
                    }
                }
                // Notifications in between.
                _ => {}
            }
        }
    }
}
