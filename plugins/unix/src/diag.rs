//! What the kernel says about every unix socket of criu's network namespace, through
//! `sock_diag` (`NETLINK_SOCK_DIAG`, `SOCK_DIAG_BY_FAMILY`, family `AF_UNIX`): inode, type,
//! state, name, peer, pending connections, queue lengths, shutdown.

use std::collections::HashMap;

use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, recv, sendto, socket,
};

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_HDRLEN: usize = 16;
const UDIAG_SHOW_NAME: u32 = 0x1;
const UDIAG_SHOW_VFS: u32 = 0x2;
const UDIAG_SHOW_PEER: u32 = 0x4;
const UDIAG_SHOW_ICONS: u32 = 0x8;
const UDIAG_SHOW_RQLEN: u32 = 0x10;
const UNIX_DIAG_NAME: u16 = 0;
const UNIX_DIAG_VFS: u16 = 1;
const UNIX_DIAG_PEER: u16 = 2;
const UNIX_DIAG_ICONS: u16 = 3;
const UNIX_DIAG_RQLEN: u16 = 4;
const UNIX_DIAG_SHUTDOWN: u16 = 6;
/// `struct unix_diag_msg`: family, type, state, pad, ino, cookie[2].
const DIAG_MSG_LEN: usize = 16;

/// `TCP_LISTEN`, the state of a listening unix socket.
pub(crate) const STATE_LISTEN: u32 = 10;
/// `TCP_ESTABLISHED`: a connected socket.
pub(crate) const STATE_ESTABLISHED: u32 = 1;

/// One unix socket as `sock_diag` reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct DiagSocket {
    /// Inode number of the socket.
    pub ino: u32,
    /// `SOCK_STREAM`, `SOCK_DGRAM` or `SOCK_SEQPACKET`.
    pub sock_type: u32,
    /// `TCP_*` state (`TCP_LISTEN` 10, `TCP_ESTABLISHED` 1, `TCP_CLOSE` 7).
    pub state: u32,
    /// The bound name: a path, or `\0` and an abstract name; empty when unbound.
    pub name: Vec<u8>,
    /// Inode and device of the socket file of a path name.
    pub vfs: Option<(u32, u32)>,
    /// Inode of the peer (0: none or an embryo not accepted yet).
    pub peer: u32,
    /// Listening socket: inodes of the clients whose connections wait to be accepted.
    pub icons: Vec<u32>,
    /// Bytes queued for reading (a listening socket: connections pending).
    pub rqueue: u32,
    /// Bytes sent and not yet read by the peer (a listening socket: its backlog).
    pub wqueue: u32,
    /// `sk_shutdown`: bit 0 `RCV_SHUTDOWN`, bit 1 `SEND_SHUTDOWN`.
    pub shutdown: u8,
}

/// A failed `sock_diag` query.
#[derive(Debug, thiserror::Error)]
pub enum DiagError {
    /// A netlink system call failed.
    #[error("sock_diag of unix sockets: {op} failed")]
    Sys {
        /// The call.
        op: &'static str,
        /// Its errno.
        #[source]
        source: Errno,
    },
    /// The kernel's answer did not parse.
    #[error("sock_diag of unix sockets: malformed answer: {0}")]
    Malformed(String),
}

/// The `SOCK_DIAG_BY_FAMILY` dump request for every unix socket in every state.
pub(crate) fn request() -> Vec<u8> {
    let mut r = Vec::with_capacity(NLMSG_HDRLEN + 24);
    r.extend_from_slice(&((NLMSG_HDRLEN + 24) as u32).to_ne_bytes());
    r.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    r.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    r.extend_from_slice(&1u32.to_ne_bytes()); // seq
    r.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel
    r.push(libc::AF_UNIX as u8);
    r.push(0); // protocol
    r.extend_from_slice(&0u16.to_ne_bytes()); // pad
    r.extend_from_slice(&u32::MAX.to_ne_bytes()); // every state
    r.extend_from_slice(&0u32.to_ne_bytes()); // ino: all
    let show = UDIAG_SHOW_NAME | UDIAG_SHOW_VFS | UDIAG_SHOW_PEER | UDIAG_SHOW_ICONS;
    r.extend_from_slice(&(show | UDIAG_SHOW_RQLEN).to_ne_bytes());
    r.extend_from_slice(&[0xff; 8]); // cookie: none
    r
}

/// Every unix socket of criu's network namespace, by inode.
pub(crate) fn query() -> Result<HashMap<u32, DiagSocket>, DiagError> {
    let sys = |op| move |source| DiagError::Sys { op, source };
    let sock = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkSockDiag,
    )
    .map_err(sys("socket(NETLINK_SOCK_DIAG)"))?;
    use std::os::fd::AsRawFd;
    sendto(
        sock.as_raw_fd(),
        &request(),
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )
    .map_err(sys("sendto"))?;
    let mut out = HashMap::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = recv(sock.as_raw_fd(), &mut buf, MsgFlags::empty()).map_err(sys("recv"))?;
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

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Parses one `recv` worth of netlink messages into `out`; `true` once `NLMSG_DONE` is seen.
pub(crate) fn parse_batch(
    mut b: &[u8],
    out: &mut HashMap<u32, DiagSocket>,
) -> Result<bool, DiagError> {
    let bad = |what: &str| DiagError::Malformed(what.to_string());
    while !b.is_empty() {
        let len = u32_at(b, 0).ok_or_else(|| bad("short netlink header"))? as usize;
        let kind = u16_at(b, 4).ok_or_else(|| bad("short netlink header"))?;
        if len < NLMSG_HDRLEN || len > b.len() {
            return Err(bad(&format!("netlink message length {len} of {}", b.len())));
        }
        let payload = &b[NLMSG_HDRLEN..len];
        match kind {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let code = u32_at(payload, 0).ok_or_else(|| bad("short NLMSG_ERROR"))? as i32;
                return Err(DiagError::Sys {
                    op: "SOCK_DIAG_BY_FAMILY",
                    source: Errno::from_raw(-code),
                });
            }
            SOCK_DIAG_BY_FAMILY => {
                let sk = parse_socket(payload)?;
                out.insert(sk.ino, sk);
            }
            other => return Err(bad(&format!("netlink message type {other}"))),
        }
        b = &b[align4(len).min(b.len())..];
    }
    Ok(false)
}

/// One `unix_diag_msg` and its attributes.
pub(crate) fn parse_socket(p: &[u8]) -> Result<DiagSocket, DiagError> {
    let bad = |what: String| DiagError::Malformed(what);
    if p.len() < DIAG_MSG_LEN {
        return Err(bad(format!("unix_diag_msg of {} bytes", p.len())));
    }
    let mut sk = DiagSocket {
        sock_type: u32::from(p[1]),
        state: u32::from(p[2]),
        ino: u32_at(p, 4).unwrap_or_default(),
        ..DiagSocket::default()
    };
    let mut a = &p[DIAG_MSG_LEN..];
    while a.len() >= 4 {
        let len = usize::from(u16_at(a, 0).unwrap_or_default());
        let kind = u16_at(a, 2).unwrap_or_default();
        if len < 4 || len > a.len() {
            return Err(bad(format!(
                "attribute {kind} of length {len}, socket {}",
                sk.ino
            )));
        }
        let v = &a[4..len];
        let short = || {
            bad(format!(
                "attribute {kind} of {} bytes, socket {}",
                v.len(),
                sk.ino
            ))
        };
        match kind {
            UNIX_DIAG_NAME => {
                // A path name ends at its first NUL (the kernel keeps the terminator);
                // an abstract name (leading NUL) is every byte.
                let end = match v.first() {
                    Some(0) | None => v.len(),
                    Some(_) => v.iter().position(|&c| c == 0).unwrap_or(v.len()),
                };
                sk.name = v[..end].to_vec();
            }
            UNIX_DIAG_VFS => {
                sk.vfs = Some((
                    u32_at(v, 0).ok_or_else(short)?,
                    u32_at(v, 4).ok_or_else(short)?,
                ))
            }
            UNIX_DIAG_PEER => sk.peer = u32_at(v, 0).ok_or_else(short)?,
            UNIX_DIAG_ICONS => sk.icons = v.chunks_exact(4).filter_map(|c| u32_at(c, 0)).collect(),
            UNIX_DIAG_RQLEN => {
                sk.rqueue = u32_at(v, 0).ok_or_else(short)?;
                sk.wqueue = u32_at(v, 4).ok_or_else(short)?;
            }
            UNIX_DIAG_SHUTDOWN => sk.shutdown = *v.first().ok_or_else(short)?,
            _ => {}
        }
        a = &a[align4(len).min(a.len())..];
    }
    Ok(sk)
}
