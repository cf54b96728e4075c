//! The shutdown state of inet sockets, which no socket option shows: `sock_diag`
//! (`NETLINK_SOCK_DIAG`, `SOCK_DIAG_BY_FAMILY`, `inet_diag_req_v2`) lists every socket of one
//! family and protocol with its `INET_DIAG_SHUTDOWN` attribute, as CRIU collects them. The
//! query runs in the socket's own network namespace (a thread joins it with `setns`). A
//! socket the kernel does not list (an unbound datagram socket is in no hash table) is
//! read from `poll` instead, as CRIU does for unconnected sockets: `POLLRDHUP` shows a read
//! shutdown, `POLLHUP` both; a write shutdown alone shows nowhere and is lost then.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::sched::{CloneFlags, setns};
use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, recv, sendto, socket,
};
use nix::sys::stat::fstat;

use crate::sys;

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_HDRLEN: usize = 16;
/// `sizeof(struct inet_diag_req_v2)`.
const REQ_LEN: usize = 56;
/// `sizeof(struct inet_diag_msg)`: family, state, timer, retrans, sockid (48), expires,
/// rqueue, wqueue, uid, inode.
const MSG_LEN: usize = 72;
const INET_DIAG_SHUTDOWN: u16 = 8;

/// `sk_shutdown` bits: `RCV_SHUTDOWN`.
pub const RCV_SHUTDOWN: u8 = 1;
/// `SEND_SHUTDOWN`.
pub const SEND_SHUTDOWN: u8 = 2;

/// A failed `sock_diag` query.
#[derive(Debug, thiserror::Error)]
pub enum DiagError {
    /// A system call failed.
    #[error("sock_diag of inet sockets: {op} failed")]
    Sys {
        /// The call.
        op: &'static str,
        /// Its errno.
        #[source]
        source: Errno,
    },
    /// The kernel's answer did not parse.
    #[error("sock_diag of inet sockets: malformed answer: {0}")]
    Malformed(String),
}

fn sys_err(op: &'static str) -> impl Fn(Errno) -> DiagError {
    move |source| DiagError::Sys { op, source }
}

/// The dump request for every socket of `family` and `proto` in every state.
pub fn request(family: u8, proto: u8) -> Vec<u8> {
    let mut r = Vec::with_capacity(NLMSG_HDRLEN + REQ_LEN);
    r.extend_from_slice(&((NLMSG_HDRLEN + REQ_LEN) as u32).to_ne_bytes());
    r.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    r.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    r.extend_from_slice(&1u32.to_ne_bytes()); // seq
    r.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel
    r.push(family);
    r.push(proto);
    r.push(0); // idiag_ext: INET_DIAG_SHUTDOWN comes without asking
    r.push(0); // pad
    r.extend_from_slice(&u32::MAX.to_ne_bytes()); // every state
    r.extend_from_slice(&[0; 40]); // sockid: ports, addresses, interface: all
    r.extend_from_slice(&[0xff; 8]); // cookie: none
    r
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Parses one `recv` worth of messages into `out` (inode to `sk_shutdown`); `true` once
/// `NLMSG_DONE` is seen.
pub fn parse_batch(mut b: &[u8], out: &mut HashMap<u32, u8>) -> Result<bool, DiagError> {
    let bad = |what: String| DiagError::Malformed(what);
    while !b.is_empty() {
        let (Some(len), Some(kind)) = (u32_at(b, 0), u16_at(b, 4)) else {
            return Err(bad(format!("netlink header of {} bytes", b.len())));
        };
        let len = len as usize;
        if len < NLMSG_HDRLEN || len > b.len() {
            return Err(bad(format!("netlink message length {len} of {}", b.len())));
        }
        let p = &b[NLMSG_HDRLEN..len];
        match kind {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let code = u32_at(p, 0).ok_or_else(|| bad("short NLMSG_ERROR".into()))? as i32;
                return Err(DiagError::Sys {
                    op: "SOCK_DIAG_BY_FAMILY",
                    source: Errno::from_raw(-code),
                });
            }
            SOCK_DIAG_BY_FAMILY => {
                let ino = u32_at(p, MSG_LEN - 4)
                    .ok_or_else(|| bad(format!("inet_diag_msg of {} bytes", p.len())))?;
                out.insert(ino, shutdown_attr(&p[MSG_LEN..], ino)?);
            }
            other => return Err(bad(format!("netlink message type {other}"))),
        }
        b = &b[align4(len).min(b.len())..];
    }
    Ok(false)
}

fn shutdown_attr(mut a: &[u8], ino: u32) -> Result<u8, DiagError> {
    while a.len() >= 4 {
        let len = usize::from(u16_at(a, 0).unwrap_or_default());
        let kind = u16_at(a, 2).unwrap_or_default();
        if len < 4 || len > a.len() {
            return Err(DiagError::Malformed(format!(
                "attribute {kind} of length {len}, socket {ino}"
            )));
        }
        if kind == INET_DIAG_SHUTDOWN {
            return a.get(4).copied().ok_or_else(|| {
                DiagError::Malformed(format!("empty INET_DIAG_SHUTDOWN, socket {ino}"))
            });
        }
        a = &a[align4(len).min(a.len())..];
    }
    Ok(0)
}

/// Every socket of `family`/`proto` in the calling thread's network namespace.
fn query_here(family: u8, proto: u8) -> Result<HashMap<u32, u8>, DiagError> {
    let sock = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkSockDiag,
    )
    .map_err(sys_err("socket(NETLINK_SOCK_DIAG)"))?;
    let req = request(family, proto);
    sendto(
        sock.as_raw_fd(),
        &req,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )
    .map_err(sys_err("sendto"))?;
    let mut out = HashMap::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = recv(sock.as_raw_fd(), &mut buf, MsgFlags::empty()).map_err(sys_err("recv"))?;
        if n == 0 {
            return Err(DiagError::Malformed(
                "end of stream before NLMSG_DONE".into(),
            ));
        }
        if parse_batch(&buf[..n], &mut out)? {
            return Ok(out);
        }
    }
}

/// Every socket of `family`/`proto` in the network namespace `netns` (an fd of it): in a
/// thread of its own that joins it, so criu stays where it is.
pub fn query(netns: BorrowedFd<'_>, family: u8, proto: u8) -> Result<HashMap<u32, u8>, DiagError> {
    std::thread::scope(|s| {
        s.spawn(|| {
            setns(netns, CloneFlags::CLONE_NEWNET).map_err(sys_err("setns(CLONE_NEWNET)"))?;
            query_here(family, proto)
        })
        .join()
        .unwrap_or_else(|_| Err(DiagError::Malformed("the query thread panicked".into())))
    })
}

/// The network namespace of socket `f` (`SIOCGSKNS`) and its inode.
pub fn netns_of(f: BorrowedFd<'_>) -> Result<(OwnedFd, u64), DiagError> {
    let ns = sys::skns(f).map_err(sys_err("ioctl(SIOCGSKNS)"))?;
    let ino = fstat(ns.as_fd()).map_err(sys_err("fstat(netns)"))?.st_ino;
    Ok((ns, ino))
}

/// The shutdown bits `poll` shows for `f` (see the module's doc). A closed TCP socket
/// always polls `POLLHUP`: only its read shutdown is seen (as CRIU).
pub fn polled(f: BorrowedFd<'_>, datagram: bool) -> Result<u8, Errno> {
    let ev = sys::poll_now(f, libc::POLLRDHUP | libc::POLLHUP)?;
    let mut bits = 0;
    if ev & libc::POLLRDHUP != 0 {
        bits |= RCV_SHUTDOWN;
    }
    // datagram_poll(): POLLHUP only when both directions are shut.
    if datagram && ev & libc::POLLHUP != 0 {
        bits |= RCV_SHUTDOWN | SEND_SHUTDOWN;
    }
    Ok(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(ino: u32, attrs: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; MSG_LEN];
        p[MSG_LEN - 4..].copy_from_slice(&ino.to_ne_bytes());
        p.extend_from_slice(attrs);
        let mut m = ((NLMSG_HDRLEN + p.len()) as u32).to_ne_bytes().to_vec();
        m.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(&p);
        m
    }

    fn done() -> Vec<u8> {
        let mut m = (NLMSG_HDRLEN as u32).to_ne_bytes().to_vec();
        m.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m
    }

    #[test]
    fn shutdown_attributes_are_found_by_inode() {
        // An unrelated attribute (type 1, 8 bytes), then INET_DIAG_SHUTDOWN padded to 8.
        let mut attrs = vec![8, 0, 1, 0, 9, 9, 9, 9];
        attrs.extend_from_slice(&[5, 0, INET_DIAG_SHUTDOWN as u8, 0, 2, 0, 0, 0]);
        let mut b = message(42, &attrs);
        b.extend(message(43, &[]));
        b.extend(done());
        let mut out = HashMap::new();
        assert!(parse_batch(&b, &mut out).expect("parses"));
        assert_eq!(out, HashMap::from([(42, SEND_SHUTDOWN), (43, 0)]));
        assert_eq!(request(2, 17).len(), NLMSG_HDRLEN + REQ_LEN);
    }

    #[test]
    fn malformed_answers_are_errors() {
        let mut out = HashMap::new();
        let mut b = message(7, &[200, 0, 8, 0]);
        assert!(matches!(
            parse_batch(&b, &mut out),
            Err(DiagError::Malformed(_))
        ));
        b.truncate(20);
        assert!(parse_batch(&b, &mut out).is_err());
        let short = message(1, &[])[..NLMSG_HDRLEN + 8].to_vec();
        let mut fixed = short.clone();
        fixed[..4].copy_from_slice(&(short.len() as u32).to_ne_bytes());
        assert!(parse_batch(&fixed, &mut out).is_err());
    }
}
