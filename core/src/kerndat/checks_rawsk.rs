//! `net_diag_raw`: CRIU's name for "raw inet sockets can be checkpointed here". CRIU needs
//! the kernel's raw `sock_diag` (CONFIG_INET_RAW_DIAG) to find them; the inet plugin reads
//! everything it records from the socket itself (`getsockopt`, `getsockname`), so the
//! answer is whether raw IPv4 and IPv6 sockets can be made and their options read here.
//! The kernel's raw `sock_diag` is probed too and reported in the detail.

use std::os::fd::{AsFd, AsRawFd};

use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, recv, sendto, socket,
};

use super::KernelFeatures;
use crate::sys::probe;

type Outcome = Result<Option<String>, String>;

/// One raw socket of `family` with `IPPROTO_RAW`, its header-included option read back.
fn raw_socket(family: AddressFamily, level: i32, opt: i32) -> Result<(), String> {
    let s = socket(
        family,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::Raw,
    )
    .map_err(|e| format!("socket({family:?}, SOCK_RAW, IPPROTO_RAW): {e}"))?;
    let mut b = [0u8; 4];
    probe::getsockopt_buf(s.as_fd(), level, opt, &mut b)
        .map_err(|e| format!("getsockopt of a raw {family:?} socket: {e}"))?;
    Ok(())
}

/// Whether the kernel answers a raw `sock_diag` dump (CRIU's `socket_test_collect_bit`).
fn raw_diag(family: u8) -> Result<(), String> {
    let nl = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkSockDiag,
    )
    .map_err(|e| format!("socket(NETLINK_SOCK_DIAG): {e}"))?;
    // nlmsghdr (16) + inet_diag_req_v2 (56): SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST|NLM_F_DUMP.
    let mut r = Vec::with_capacity(72);
    r.extend_from_slice(&72u32.to_ne_bytes());
    r.extend_from_slice(&20u16.to_ne_bytes());
    r.extend_from_slice(&0x301u16.to_ne_bytes());
    r.extend_from_slice(&[0; 8]);
    r.extend_from_slice(&[family, libc::IPPROTO_RAW as u8, 0, 0]);
    r.extend_from_slice(&u32::MAX.to_ne_bytes());
    r.extend_from_slice(&[0; 40]);
    r.extend_from_slice(&[0xff; 8]);
    sendto(
        nl.as_raw_fd(),
        &r,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )
    .map_err(|e| format!("sendto: {e}"))?;
    let mut buf = vec![0u8; 1 << 15];
    let n = recv(nl.as_raw_fd(), &mut buf, MsgFlags::empty()).map_err(|e| format!("recv: {e}"))?;
    // An NLMSG_ERROR (2) with a non-zero code: no raw diag module.
    if n >= 20 && u16::from_ne_bytes([buf[4], buf[5]]) == 2 {
        let code = i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]);
        if code != 0 {
            return Err(nix::errno::Errno::from_raw(-code).to_string());
        }
    }
    Ok(())
}

pub(super) fn net_diag_raw(_: &mut KernelFeatures) -> Outcome {
    raw_socket(AddressFamily::Inet, libc::SOL_IP, libc::IP_HDRINCL)?;
    raw_socket(AddressFamily::Inet6, libc::SOL_IPV6, 36)?;
    let diag = match raw_diag(libc::AF_INET as u8).and_then(|()| raw_diag(libc::AF_INET6 as u8)) {
        Ok(()) => "present".to_string(),
        Err(e) => format!("absent ({e}), not needed"),
    };
    Ok(Some(format!(
        "raw sockets are read with getsockopt; the kernel's raw sock_diag: {diag}"
    )))
}
