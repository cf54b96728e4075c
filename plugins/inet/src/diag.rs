//! The shutdown state of inet sockets, which no socket option shows: `sock_diag`
//! (`NETLINK_SOCK_DIAG`, `SOCK_DIAG_BY_FAMILY`, `inet_diag_req_v2`) lists every socket of one
//! family and protocol with its `INET_DIAG_SHUTDOWN` attribute, as CRIU collects them. The
//! query runs in the socket's own network namespace (a thread joins it with `setns`). A
//! socket the kernel does not list (an unbound datagram socket is in no hash table) is
//! read from `poll` instead, as CRIU does for unconnected sockets: `POLLRDHUP` shows a read
//! shutdown, `POLLHUP` both; a write shutdown alone shows nowhere and is lost then.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

pub use criu_sk_common::diag::DiagError;
use criu_sk_common::diag::{self as nl, attrs, u32_at};
use nix::errno::Errno;
use nix::sched::{CloneFlags, setns};
use nix::sys::stat::fstat;

use crate::sys;

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

fn sys_err(op: &'static str) -> impl Fn(Errno) -> DiagError {
    move |source| DiagError::Sys { op, source }
}

/// The dump request for every socket of `family` and `proto` in every state.
pub fn request(family: u8, proto: u8) -> Vec<u8> {
    let mut r = Vec::with_capacity(REQ_LEN);
    r.push(family);
    r.push(proto);
    r.push(0); // idiag_ext: INET_DIAG_SHUTDOWN comes without asking
    r.push(0); // pad
    r.extend_from_slice(&u32::MAX.to_ne_bytes()); // every state
    r.extend_from_slice(&[0; 40]); // sockid: ports, addresses, interface: all
    r.extend_from_slice(&[0xff; 8]); // cookie: none
    nl::request(&r)
}

/// One `inet_diag_msg` and its attributes: the socket's inode and `sk_shutdown`.
pub fn parse_socket(p: &[u8]) -> Result<(u32, u8), DiagError> {
    let ino = u32_at(p, MSG_LEN - 4)
        .ok_or_else(|| DiagError::Malformed(format!("inet_diag_msg of {} bytes", p.len())))?;
    for a in attrs(&p[MSG_LEN..], ino) {
        let (kind, v) = a?;
        if kind == INET_DIAG_SHUTDOWN {
            return v.first().map(|&b| (ino, b)).ok_or_else(|| {
                DiagError::Malformed(format!("empty INET_DIAG_SHUTDOWN, socket {ino}"))
            });
        }
    }
    Ok((ino, 0))
}

/// Every socket of `family`/`proto` in the calling thread's network namespace: inode to
/// `sk_shutdown`.
fn query_here(family: u8, proto: u8) -> Result<HashMap<u32, u8>, DiagError> {
    let mut out = HashMap::new();
    nl::exchange(&request(family, proto), |p| {
        let (ino, bits) = parse_socket(p)?;
        out.insert(ino, bits);
        Ok(())
    })?;
    Ok(out)
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
    use criu_sk_common::diag::{NLMSG_HDRLEN, SOCK_DIAG_BY_FAMILY, parse_batch};

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
        m.extend_from_slice(&3u16.to_ne_bytes()); // NLMSG_DONE
        m.extend_from_slice(&[0; 10]);
        m
    }

    fn parse(b: &[u8], out: &mut HashMap<u32, u8>) -> Result<bool, DiagError> {
        parse_batch(b, &mut |p: &[u8]| {
            let (ino, bits) = parse_socket(p)?;
            out.insert(ino, bits);
            Ok(())
        })
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
        assert!(parse(&b, &mut out).expect("parses"));
        assert_eq!(out, HashMap::from([(42, SEND_SHUTDOWN), (43, 0)]));
        assert_eq!(request(2, 17).len(), NLMSG_HDRLEN + REQ_LEN);
    }

    #[test]
    fn malformed_answers_are_errors() {
        let mut out = HashMap::new();
        let mut b = message(7, &[200, 0, 8, 0]);
        assert!(matches!(parse(&b, &mut out), Err(DiagError::Malformed(_))));
        b.truncate(20);
        assert!(parse(&b, &mut out).is_err());
        let short = message(1, &[])[..NLMSG_HDRLEN + 8].to_vec();
        let mut fixed = short.clone();
        fixed[..4].copy_from_slice(&(short.len() as u32).to_ne_bytes());
        assert!(parse(&fixed, &mut out).is_err());
        let empty = message(9, &[4, 0, INET_DIAG_SHUTDOWN as u8, 0]);
        assert!(parse(&empty, &mut out).is_err(), "empty INET_DIAG_SHUTDOWN");
    }
}
