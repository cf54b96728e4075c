//! The receive queue of a UDP socket, which CRIU drops: peeked at dump (`MSG_PEEK` from
//! `SO_PEEK_OFF` 0, the option put back: nothing is consumed) into `sk-queues.img`, one
//! `sk_packet_entry` + data per datagram with its sender in our field `criu_rs_addr`
//! ([`crate::addr::sender_bytes`]). At restore each datagram is sent again, in order, from
//! a temporary socket bound to its sender's address (`SO_REUSEADDR`, so a restored socket
//! holding that port does not stand in the way; `IP_TRANSPARENT`, so a remote sender's
//! address can be bound) to the restored socket, before it is connected (a connected UDP
//! socket takes datagrams from its peer only). The queues of ICMP ping sockets (echo
//! replies) are dropped, as CRIU drops every datagram queue: nothing but the kernel can
//! queue an ICMP reply.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use criu_plugin_api::{DumpContext, FdDesc, ImageCursor, ImageRef, PluginError, PluginImageKind};
use criu_proto::images::SkPacketEntry;
use criu_sk_common::sys::{SO_PEEK_OFF, get_int, set_int};
use nix::errno::Errno;
use prost::Message;

use crate::addr::{self, FAMILY_V6};
use crate::dump::{Sock, fd_err};

/// `sk-queues.img`, shared with the unix plugin (entries name their socket by file id).
pub const SK_QUEUES: ImageRef = ImageRef::single(PluginImageKind::SkQueues);

/// The largest datagram (a UDP length is 16 bits).
const MAX_DATAGRAM: usize = 65536;

/// One queued datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// Its bytes.
    pub data: Vec<u8>,
    /// Its sender.
    pub from: SocketAddr,
}

fn peek_all(f: BorrowedFd<'_>) -> Result<Vec<Datagram>, (Errno, &'static str)> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, from) =
            match crate::sys::recv_from(f, &mut buf, libc::MSG_PEEK | libc::MSG_DONTWAIT) {
                Ok(r) => r,
                Err(Errno::EAGAIN) => return Ok(out),
                Err(e) => return Err((e, "recvfrom(MSG_PEEK)")),
            };
        let from = from.ok_or((
            Errno::EAFNOSUPPORT,
            "recvfrom(MSG_PEEK): datagram without a sender",
        ))?;
        out.push(Datagram {
            data: buf[..n].to_vec(),
            from,
        });
    }
}

/// Peeks every datagram queued on `f` without consuming one.
pub fn peek_queue(f: BorrowedFd<'_>) -> Result<Vec<Datagram>, (Errno, &'static str)> {
    let off =
        get_int(f, libc::SOL_SOCKET, SO_PEEK_OFF).map_err(|e| (e, "getsockopt(SO_PEEK_OFF)"))?;
    set_int(f, libc::SOL_SOCKET, SO_PEEK_OFF, 0).map_err(|e| (e, "setsockopt(SO_PEEK_OFF)"))?;
    let r = peek_all(f);
    set_int(f, libc::SOL_SOCKET, SO_PEEK_OFF, off).map_err(|e| (e, "setsockopt(SO_PEEK_OFF)"))?;
    r
}

/// Writes the receive queue of UDP socket `fd` (file id `id`) to `sk-queues.img`.
pub fn dump_queue(
    ctx: &mut dyn DumpContext,
    fd: &FdDesc,
    sk: &Sock,
    id: u32,
) -> Result<(), PluginError> {
    let q = peek_queue(fd.file()).map_err(|(e, op)| fd_err(fd, op)(e))?;
    if !q.is_empty() {
        tracing::debug!(pid = fd.pid, fd = fd.fd, sock = %sk.describe(), datagrams = q.len(), "UDP queue");
    }
    for d in q {
        let e = SkPacketEntry {
            id_for: id,
            length: d.data.len() as u32,
            criu_rs_addr: Some(addr::sender_bytes(d.from)),
            ..SkPacketEntry::default()
        };
        ctx.write_entry(SK_QUEUES, &e.encode_to_vec(), &d.data)?;
    }
    Ok(())
}

/// Logs the datagrams of a ping socket's queue that the dump leaves out.
pub fn warn_dropped(fd: &FdDesc, sk: &Sock) -> Result<(), PluginError> {
    let f = fd.file();
    // Ping sockets of some kernels answer no SIOCINQ: a peek of one byte tells then.
    let queued = match crate::sys::inq(f) {
        Ok(n) => n != 0,
        Err(nix::errno::Errno::ENOTTY) => {
            match crate::sys::recv_from(f, &mut [0u8; 1], libc::MSG_PEEK | libc::MSG_DONTWAIT) {
                Ok(_) => true,
                Err(nix::errno::Errno::EAGAIN) => false,
                Err(e) => return Err(fd_err(fd, "recv(MSG_PEEK)")(e)),
            }
        }
        Err(e) => return Err(fd_err(fd, "ioctl(SIOCINQ)")(e)),
    };
    if queued {
        tracing::warn!(pid = fd.pid, fd = fd.fd, sock = %sk.describe(), "queued datagrams of a ping or raw socket are dropped (as in CRIU)");
    }
    Ok(())
}

/// The datagrams of `sk-queues.img` for the sockets `ids` (UDP file ids), in order. Entries
/// of other sockets of `files` (the unix plugin's) are left to their plugin; an entry for a
/// file id `files` lacks, or for one of `ids` without a valid sender, is an error naming it.
pub fn read_queues(
    body: Option<&[u8]>,
    ids: &HashMap<u32, String>,
    files: &std::collections::HashSet<u32>,
) -> Result<HashMap<u32, Vec<Datagram>>, PluginError> {
    let mut out: HashMap<u32, Vec<Datagram>> = HashMap::new();
    let Some(body) = body else {
        return Ok(out);
    };
    let image = SK_QUEUES.to_string();
    let mut c = ImageCursor::new(SK_QUEUES, body);
    for n in 0.. {
        let Some(e) = c
            .next_entry::<SkPacketEntry>()
            .map_err(|err| PluginError::bad_image(&image, format!("entry {n}: {err}")))?
        else {
            break;
        };
        let data = c.raw(e.length as usize).map_err(|_| {
            PluginError::bad_image(
                &image,
                format!(
                    "entry {n} (socket id {}): {} bytes announced, fewer left",
                    e.id_for, e.length
                ),
            )
        })?;
        let Some(what) = ids.get(&e.id_for) else {
            if files.contains(&e.id_for) {
                continue;
            }
            return Err(PluginError::bad_image(
                &image,
                format!(
                    "entry {n}: queued for socket id {}, which files.img lacks",
                    e.id_for
                ),
            ));
        };
        let from = e
            .criu_rs_addr
            .as_deref()
            .and_then(addr::sender_of)
            .ok_or_else(|| {
                PluginError::bad_image(
                    &image,
                    format!(
                        "entry {n} (socket id {}, {what}): no valid sender address (criu_rs_addr)",
                        e.id_for
                    ),
                )
            })?;
        out.entry(e.id_for).or_default().push(Datagram {
            data: data.to_vec(),
            from,
        });
    }
    Ok(out)
}

/// Sends `q` to `local` (the restored socket's name) from temporary sockets bound to each
/// sender, in order.
pub fn requeue(
    family: u32,
    proto: i32,
    local: SocketAddr,
    q: &[Datagram],
) -> Result<(), (Errno, &'static str)> {
    let to = addr::delivery_target(local);
    let af = family as i32;
    let mut senders: HashMap<SocketAddr, OwnedFd> = HashMap::new();
    for d in q {
        let from = addr::for_family(family, d.from);
        let s = match senders.get(&from) {
            Some(s) => s,
            None => {
                let s = crate::sys::inet_socket(af, libc::SOCK_DGRAM, proto)
                    .map_err(|e| (e, "socket (datagram sender)"))?;
                let f = s.as_fd();
                set_int(f, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)
                    .map_err(|e| (e, "setsockopt(SO_REUSEADDR)"))?;
                let (lvl, opt) = if family == FAMILY_V6 {
                    (libc::SOL_IPV6, libc::IPV6_TRANSPARENT)
                } else {
                    (libc::SOL_IP, libc::IP_TRANSPARENT)
                };
                set_int(f, lvl, opt, 1).map_err(|e| (e, "setsockopt(IP_TRANSPARENT)"))?;
                crate::sys::bind(f, from).map_err(|e| (e, "bind (datagram sender)"))?;
                senders.entry(from).or_insert(s)
            }
        };
        let n = crate::sys::send_to(s.as_fd(), &d.data, Some(to), libc::MSG_DONTWAIT)
            .map_err(|e| (e, "sendto (queued datagram)"))?;
        if n != d.data.len() {
            return Err((Errno::EMSGSIZE, "sendto (queued datagram): short write"));
        }
    }
    Ok(())
}
