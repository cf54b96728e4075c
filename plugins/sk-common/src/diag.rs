//! The `sock_diag` exchange the socket plugins share (`NETLINK_SOCK_DIAG`,
//! `SOCK_DIAG_BY_FAMILY` dump requests, as CRIU's `collect_sockets`): one request sent, the
//! multi-part answer read until `NLMSG_DONE`, each socket message handed to the caller, whose
//! family-specific parser reads the fixed part and walks the attributes with [`attrs`].

use std::os::fd::AsRawFd;

use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, recv, sendto, socket,
};

/// `SOCK_DIAG_BY_FAMILY`: the request type, and the type of every answer message.
pub const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `sizeof(struct nlmsghdr)`.
pub const NLMSG_HDRLEN: usize = 16;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
/// Large enough for one `recv` of a dump batch (the kernel fills up to a page or so).
const RECV_BUF: usize = 1 << 16;

/// A failed `sock_diag` query.
#[derive(Debug, thiserror::Error)]
pub enum DiagError {
    /// A system call failed, or the kernel answered `NLMSG_ERROR`.
    #[error("sock_diag: {op} failed")]
    Sys {
        /// The call (or `SOCK_DIAG_BY_FAMILY` for an `NLMSG_ERROR` answer).
        op: &'static str,
        /// Its errno.
        #[source]
        source: Errno,
    },
    /// The kernel's answer did not parse.
    #[error("sock_diag: malformed answer: {0}")]
    Malformed(String),
}

/// The native-endian `u16` at `at`, if `b` holds it.
pub fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

/// The native-endian `u32` at `at`, if `b` holds it.
pub fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// `NLMSG_ALIGN` / `NLA_ALIGN`: netlink pads messages and attributes to 4 bytes.
pub fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// A `SOCK_DIAG_BY_FAMILY` dump request: the netlink header, then `body` (the family's
/// request struct, e.g. `inet_diag_req_v2` or `unix_diag_req`).
pub fn request(body: &[u8]) -> Vec<u8> {
    let len = NLMSG_HDRLEN + body.len();
    let mut r = Vec::with_capacity(len);
    r.extend_from_slice(&(len as u32).to_ne_bytes());
    r.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    r.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    r.extend_from_slice(&1u32.to_ne_bytes()); // seq
    r.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel
    r.extend_from_slice(body);
    r
}

/// Sends `request` (from [`request`]) in the calling thread's network namespace and hands
/// the payload of every socket message of the answer to `each`, until `NLMSG_DONE`.
pub fn exchange(
    request: &[u8],
    mut each: impl FnMut(&[u8]) -> Result<(), DiagError>,
) -> Result<(), DiagError> {
    let sys = |op| move |source| DiagError::Sys { op, source };
    let sock = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkSockDiag,
    )
    .map_err(sys("socket(NETLINK_SOCK_DIAG)"))?;
    sendto(
        sock.as_raw_fd(),
        request,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )
    .map_err(sys("sendto"))?;
    let mut buf = vec![0u8; RECV_BUF];
    loop {
        let n = recv(sock.as_raw_fd(), &mut buf, MsgFlags::empty()).map_err(sys("recv"))?;
        if n == 0 {
            return Err(DiagError::Malformed(
                "end of stream before NLMSG_DONE".into(),
            ));
        }
        if parse_batch(&buf[..n], &mut each)? {
            return Ok(());
        }
    }
}

/// Walks one `recv` worth of netlink messages, handing each socket message's payload to
/// `each`; `true` once `NLMSG_DONE` is seen. `NLMSG_ERROR` is the error it carries.
pub fn parse_batch(
    mut b: &[u8],
    each: &mut impl FnMut(&[u8]) -> Result<(), DiagError>,
) -> Result<bool, DiagError> {
    let bad = |what: String| DiagError::Malformed(what);
    while !b.is_empty() {
        let (Some(len), Some(kind)) = (u32_at(b, 0), u16_at(b, 4)) else {
            return Err(bad(format!("netlink header of {} bytes", b.len())));
        };
        let len = len as usize;
        if len < NLMSG_HDRLEN || len > b.len() {
            return Err(bad(format!("netlink message length {len} of {}", b.len())));
        }
        let payload = &b[NLMSG_HDRLEN..len];
        match kind {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let code = u32_at(payload, 0).ok_or_else(|| bad("short NLMSG_ERROR".into()))?;
                return Err(DiagError::Sys {
                    op: "SOCK_DIAG_BY_FAMILY",
                    source: Errno::from_raw((code as i32).saturating_neg()),
                });
            }
            SOCK_DIAG_BY_FAMILY => each(payload)?,
            other => return Err(bad(format!("netlink message type {other}"))),
        }
        b = &b[align4(len).min(b.len())..];
    }
    Ok(false)
}

/// The attributes (`struct nlattr`: length, type, value) after a socket message's fixed
/// part, as `(type, value)`; `ino` names the socket in errors.
pub fn attrs(a: &[u8], ino: u32) -> Attrs<'_> {
    Attrs { rest: a, ino }
}

/// The iterator [`attrs`] returns: it yields an error once, then stops, on a malformed
/// attribute.
#[derive(Debug)]
pub struct Attrs<'a> {
    rest: &'a [u8],
    ino: u32,
}

impl<'a> Iterator for Attrs<'a> {
    type Item = Result<(u16, &'a [u8]), DiagError>;

    fn next(&mut self) -> Option<Self::Item> {
        let a = self.rest;
        if a.len() < 4 {
            return None;
        }
        let len = usize::from(u16_at(a, 0)?);
        let kind = u16_at(a, 2)?;
        if len < 4 || len > a.len() {
            self.rest = &[];
            return Some(Err(DiagError::Malformed(format!(
                "attribute {kind} of length {len}, socket {}",
                self.ino
            ))));
        }
        self.rest = &a[align4(len).min(a.len())..];
        Some(Ok((kind, &a[4..len])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nlmsg(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut m = ((NLMSG_HDRLEN + payload.len()) as u32)
            .to_ne_bytes()
            .to_vec();
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(payload);
        // Padding to the next message, as the kernel lays them out.
        m.resize(align4(m.len()), 0);
        m
    }

    fn collect(b: &[u8]) -> Result<(bool, Vec<Vec<u8>>), DiagError> {
        let mut seen = Vec::new();
        let done = parse_batch(b, &mut |p: &[u8]| {
            seen.push(p.to_vec());
            Ok(())
        })?;
        Ok((done, seen))
    }

    #[test]
    fn a_multi_part_answer_is_walked_to_nlmsg_done() {
        // Two recv batches: the first without NLMSG_DONE (more to read), the second ends it.
        let mut first = nlmsg(SOCK_DIAG_BY_FAMILY, &[1, 2, 3]); // padded to 20
        first.extend(nlmsg(SOCK_DIAG_BY_FAMILY, &[4; 8]));
        let (done, seen) = collect(&first).unwrap();
        assert!(!done, "no NLMSG_DONE yet");
        assert_eq!(seen, vec![vec![1, 2, 3], vec![4; 8]]);

        let mut second = nlmsg(SOCK_DIAG_BY_FAMILY, &[5]);
        second.extend(nlmsg(NLMSG_DONE, &0u32.to_ne_bytes()));
        second.extend(nlmsg(SOCK_DIAG_BY_FAMILY, &[6])); // after DONE: never read
        let (done, seen) = collect(&second).unwrap();
        assert!(done);
        assert_eq!(seen, vec![vec![5]]);
    }

    #[test]
    fn nlmsg_error_is_the_errno_it_carries() {
        let mut b = nlmsg(SOCK_DIAG_BY_FAMILY, &[1]);
        b.extend(nlmsg(NLMSG_ERROR, &(-libc::ENOENT).to_ne_bytes()));
        match collect(&b) {
            Err(DiagError::Sys { op, source }) => {
                assert_eq!(op, "SOCK_DIAG_BY_FAMILY");
                assert_eq!(source, Errno::ENOENT);
            }
            other => panic!("expected the kernel's ENOENT, got {other:?}"),
        }
        assert!(matches!(
            collect(&nlmsg(NLMSG_ERROR, &[0, 0])),
            Err(DiagError::Malformed(_))
        ));
    }

    #[test]
    fn malformed_batches_are_errors() {
        assert!(collect(&[16, 0, 0, 0, 20, 0]).is_err(), "short header");
        let mut long = nlmsg(SOCK_DIAG_BY_FAMILY, &[0; 4]);
        long[0] = 200; // longer than the batch
        assert!(collect(&long).is_err());
        let mut short = nlmsg(SOCK_DIAG_BY_FAMILY, &[]);
        short[0] = 8; // shorter than a header
        assert!(collect(&short).is_err());
        assert!(collect(&nlmsg(99, &[])).is_err(), "unknown message type");
        // The caller's error stops the walk.
        let b = nlmsg(SOCK_DIAG_BY_FAMILY, &[]);
        let r = parse_batch(&b, &mut |_: &[u8]| Err(DiagError::Malformed("mine".into())));
        assert!(matches!(r, Err(DiagError::Malformed(m)) if m == "mine"));
    }

    #[test]
    fn attributes_are_walked_with_their_padding() {
        let mut a = vec![5, 0, 6, 0, 9, 0, 0, 0]; // type 6, one byte, padded
        a.extend_from_slice(&[8, 0, 1, 0, 1, 2, 3, 4]);
        a.extend_from_slice(&[4, 0, 2, 0]); // empty value
        let got: Vec<_> = attrs(&a, 1).collect::<Result<_, _>>().unwrap();
        assert_eq!(
            got,
            vec![(6, &[9u8][..]), (1, &[1, 2, 3, 4][..]), (2, &[][..])]
        );
        let bad: Vec<_> = attrs(&[200, 0, 1, 0, 0, 0], 7).collect();
        assert_eq!(bad.len(), 1, "one error, then the end");
        assert!(matches!(&bad[0], Err(DiagError::Malformed(m)) if m.contains("socket 7")));
        assert!(matches!(
            attrs(&[2, 0, 1, 0], 7).next(),
            Some(Err(DiagError::Malformed(_)))
        ));
    }

    #[test]
    fn the_request_header_frames_the_body() {
        let r = request(&[7; 24]);
        assert_eq!(r.len(), 40);
        assert_eq!(u32_at(&r, 0), Some(40));
        assert_eq!(u16_at(&r, 4), Some(SOCK_DIAG_BY_FAMILY));
        assert_eq!(u16_at(&r, 6), Some(NLM_F_REQUEST | NLM_F_DUMP));
        assert_eq!(&r[16..], &[7; 24]);
        assert_eq!(u32_at(&r, usize::MAX - 1), None);
    }

    proptest::proptest! {
        /// Any bytes at all: an answer or an error, never a panic; every payload handed
        /// over lies inside the batch.
        #[test]
        fn any_batch_parses_or_errs(b in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let mut total = 0;
            let _ = parse_batch(&b, &mut |p: &[u8]| {
                total += p.len();
                Ok(())
            });
            proptest::prop_assert!(total <= b.len());
            let _ = attrs(&b, 0).count();
        }
    }
}
