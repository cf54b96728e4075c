//! What the kernel says about every unix socket of criu's network namespace, through
//! `sock_diag` (`NETLINK_SOCK_DIAG`, `SOCK_DIAG_BY_FAMILY`, family `AF_UNIX`): inode, type,
//! state, name, peer, pending connections, queue lengths, shutdown.

use std::collections::HashMap;

pub use criu_sk_common::diag::DiagError;
use criu_sk_common::diag::{self as nl, attrs, u32_at};

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

/// The `SOCK_DIAG_BY_FAMILY` dump request for every unix socket in every state.
pub(crate) fn request() -> Vec<u8> {
    let mut r = Vec::with_capacity(24);
    r.push(libc::AF_UNIX as u8);
    r.push(0); // protocol
    r.extend_from_slice(&0u16.to_ne_bytes()); // pad
    r.extend_from_slice(&u32::MAX.to_ne_bytes()); // every state
    r.extend_from_slice(&0u32.to_ne_bytes()); // ino: all
    let show = UDIAG_SHOW_NAME | UDIAG_SHOW_VFS | UDIAG_SHOW_PEER | UDIAG_SHOW_ICONS;
    r.extend_from_slice(&(show | UDIAG_SHOW_RQLEN).to_ne_bytes());
    r.extend_from_slice(&[0xff; 8]); // cookie: none
    nl::request(&r)
}

/// Every unix socket of criu's network namespace, by inode.
pub(crate) fn query() -> Result<HashMap<u32, DiagSocket>, DiagError> {
    let mut out = HashMap::new();
    nl::exchange(&request(), |p| {
        let sk = parse_socket(p)?;
        out.insert(sk.ino, sk);
        Ok(())
    })?;
    Ok(out)
}

/// Parses one `recv` worth of netlink messages into `out`; `true` once `NLMSG_DONE` is seen.
#[cfg(test)]
pub(crate) fn parse_batch(b: &[u8], out: &mut HashMap<u32, DiagSocket>) -> Result<bool, DiagError> {
    nl::parse_batch(b, &mut |p: &[u8]| {
        let sk = parse_socket(p)?;
        out.insert(sk.ino, sk);
        Ok(())
    })
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
    for a in attrs(&p[DIAG_MSG_LEN..], sk.ino) {
        let (kind, v) = a?;
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
    }
    Ok(sk)
}
