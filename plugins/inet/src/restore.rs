//! `inet_sk_entry`s back into sockets. Every socket is made in `open_file` with
//! `SO_REUSEADDR` and `SO_REUSEPORT` on for its `bind` (as CRIU: several restored sockets
//! may share a port);
//! an established connection is rebuilt in repair mode ([`crate::tcp`]), a UDP queue sent
//! again before the socket is connected ([`crate::udp`]). `finish`, just before the tree
//! resumes, puts both back as dumped and ends every repair.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use criu_plugin_api::{FileRestorer, InstalledFd, PluginError, RestoreContext};
use criu_proto::images::{FdTypes, FileEntry, InetSkEntry, SkOptsEntry};
use criu_sk_common::sys::set_int;
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::socket::{Backlog, Shutdown, listen, shutdown};

use crate::addr::{self, FAMILY_V4, FAMILY_V6};
use crate::dump::{TCP_CLOSE, TCP_ESTABLISHED, TCP_LISTEN, proto_name};
use crate::tcp::{self, Stream};
use crate::udp::{self, Datagram};
use crate::{fin, raw, sys, tcp_state_name};

fn bad(id: u32, reason: String) -> PluginError {
    PluginError::bad_image(
        "files.img",
        format!("INETSK entry of file id {id}: {reason}"),
    )
}

/// How errors name a socket of the images.
pub fn describe(ie: &InetSkEntry) -> String {
    let local =
        addr::ip_of(ie.family, &ie.src_addr).map(|ip| SocketAddr::new(ip, ie.src_port as u16));
    let peer =
        addr::ip_of(ie.family, &ie.dst_addr).map(|ip| SocketAddr::new(ip, ie.dst_port as u16));
    let mut proto = proto_name(ie.proto);
    if raw::is_raw(ie) {
        proto = format!("raw {proto}");
    }
    match (local, peer) {
        (Some(l), Some(p)) if ie.state != TCP_CLOSE && ie.state != TCP_LISTEN => {
            format!("{proto} {l} -> {p}")
        }
        (Some(l), _) => format!("{proto} {l}"),
        _ => format!("{proto} socket"),
    }
}

/// Whether `ie` is a TCP connection (CRIU's `tcp_connection()`).
pub fn is_connection(ie: &InetSkEntry) -> bool {
    is_tcp(ie) && ie.state != TCP_LISTEN && ie.state != TCP_CLOSE
}

/// Whether `ie` is a TCP socket (not a raw socket of protocol TCP).
fn is_tcp(ie: &InetSkEntry) -> bool {
    !raw::is_raw(ie) && ie.proto as i32 == libc::IPPROTO_TCP
}

/// Whether `ie` is a closed TCP socket that was connected (its last peer recorded).
pub fn was_connection(ie: &InetSkEntry) -> bool {
    is_tcp(ie) && ie.state == TCP_CLOSE && ie.dst_port != 0
}

/// Checks one INETSK entry and returns its socket part.
pub fn validate(entry: &FileEntry) -> Result<&InetSkEntry, PluginError> {
    let ie = entry
        .isk
        .as_ref()
        .ok_or_else(|| bad(entry.id, "no isk (inet_sk_entry) in it".into()))?;
    if ie.id != entry.id {
        return Err(bad(entry.id, format!("its isk says id {}", ie.id)));
    }
    let words = match ie.family {
        FAMILY_V4 => 1,
        FAMILY_V6 => 4,
        f => {
            return Err(bad(
                entry.id,
                format!("family {f} is not AF_INET or AF_INET6"),
            ));
        }
    };
    if ie.src_addr.len() != words || ie.dst_addr.len() != words {
        return Err(bad(
            entry.id,
            format!(
                "address of {} and {} words for family {}",
                ie.src_addr.len(),
                ie.dst_addr.len(),
                ie.family
            ),
        ));
    }
    if ie.src_port > 65535 || ie.dst_port > 65535 {
        return Err(bad(
            entry.id,
            format!("port {} or {} above 65535", ie.src_port, ie.dst_port),
        ));
    }
    if ie.state == 0 || ie.state > 11 {
        return Err(bad(
            entry.id,
            format!("{}: {} is no TCP state", describe(ie), ie.state),
        ));
    }
    if ie.shutdown.is_some_and(|v| !(0..=3).contains(&v)) {
        return Err(bad(
            entry.id,
            format!(
                "{}: shutdown {:?} is no sk_shutdown",
                describe(ie),
                ie.shutdown
            ),
        ));
    }
    if raw::is_raw(ie) && ie.state != TCP_ESTABLISHED && ie.state != TCP_CLOSE {
        return Err(bad(
            entry.id,
            format!("{}: a raw socket in TCP state {}", describe(ie), ie.state),
        ));
    }
    raw::validate(ie).map_err(|e| bad(entry.id, format!("{}: {e}", describe(ie))))?;
    if is_connection(ie) && ie.state != TCP_ESTABLISHED && !fin::is_half_closed(ie.state) {
        return Err(PluginError::Unsupported {
            resource: format!(
                "{} {} (file id {})",
                describe(ie),
                tcp_state_name(ie.state),
                ie.id
            ),
            pid: 0,
            hint: "TCP connections in this state are not restored (ESTABLISHED and \
                   half-closed ones are)"
                .into(),
        });
    }
    Ok(ie)
}

/// What `finish` does for one socket.
#[derive(Debug)]
struct Pending {
    id: u32,
    what: String,
    sock: OwnedFd,
    reuseaddr: bool,
    reuseport: bool,
    /// The options as dumped: the buffer sizes and locks are put back once the queues are
    /// in (they need room, which setting the sizes locks).
    opts: SkOptsEntry,
    stream: Option<Stream>,
    state: u32,
}

/// The inet sockets of one restore, checked (with their TCP streams and UDP queues) before
/// any is opened.
#[derive(Debug)]
pub struct InetRestorer {
    entries: HashMap<u32, InetSkEntry>,
    streams: HashMap<u32, Stream>,
    queues: HashMap<u32, Vec<Datagram>>,
    tcp_close: bool,
    pending: Vec<Pending>,
}

impl InetRestorer {
    /// Checks every INETSK entry of `entries`, reads the `tcp-stream` images of the
    /// connections and the UDP queues of `sk-queues.img`; the first bad one fails the restore.
    pub fn start(ctx: &mut dyn RestoreContext, entries: &[FileEntry]) -> Result<Self, PluginError> {
        let opts = ctx.options().clone();
        let mut map = HashMap::new();
        let mut streams = HashMap::new();
        let mut udp_ids = HashMap::new();
        for e in entries
            .iter()
            .filter(|e| e.r#type == FdTypes::Inetsk as i32)
        {
            let ie = validate(e)?.clone();
            if is_connection(&ie) {
                if !opts.tcp_established && !opts.tcp_close {
                    return Err(PluginError::Unsupported {
                        resource: format!("{} ESTABLISHED (file id {})", describe(&ie), ie.id),
                        pid: 0,
                        hint: "the images hold an established TCP connection: restore with \
                               --tcp-established (or --tcp-close to restore it closed), as CRIU"
                            .into(),
                    });
                }
                if !opts.tcp_close {
                    let img = tcp::image(ie.ino);
                    let what = format!("{} (file id {})", describe(&ie), ie.id);
                    let body = ctx.read_image(img)?.ok_or_else(|| {
                        PluginError::bad_image(
                            img.to_string(),
                            format!(
                                "missing: the stream of {what} (a dump with --tcp-close \
                                 writes none: restore with --tcp-close)"
                            ),
                        )
                    })?;
                    streams.insert(ie.id, tcp::parse(ie.ino, &what, &body)?);
                }
            }
            if !raw::is_raw(&ie)
                && matches!(ie.proto as i32, libc::IPPROTO_UDP | libc::IPPROTO_UDPLITE)
            {
                udp_ids.insert(ie.id, describe(&ie));
            }
            map.insert(ie.id, ie);
        }
        let queues = if udp_ids.is_empty() {
            HashMap::new()
        } else {
            let body = ctx.read_image(udp::SK_QUEUES)?;
            let files = entries.iter().map(|e| e.id).collect();
            udp::read_queues(body.as_deref(), &udp_ids, &files)?
        };
        Ok(InetRestorer {
            entries: map,
            streams,
            queues,
            tcp_close: opts.tcp_close,
            pending: Vec::new(),
        })
    }
}

fn ip_opts(f: BorrowedFd<'_>, ie: &InetSkEntry) -> Result<(), (Errno, &'static str)> {
    let Some(o) = &ie.ip_opts else { return Ok(()) };
    let v6 = ie.family == FAMILY_V6;
    if o.freebind == Some(true) {
        let (l, n) = if v6 {
            (libc::SOL_IPV6, sys::IPV6_FREEBIND)
        } else {
            (libc::SOL_IP, libc::IP_FREEBIND)
        };
        set_int(f, l, n, 1).map_err(|e| (e, "setsockopt(IP_FREEBIND)"))?;
    }
    if o.pktinfo == Some(true) {
        let (l, n) = if v6 {
            (libc::SOL_IPV6, libc::IPV6_RECVPKTINFO)
        } else {
            (libc::SOL_IP, libc::IP_PKTINFO)
        };
        set_int(f, l, n, 1).map_err(|e| (e, "setsockopt(IP_PKTINFO)"))?;
    }
    if !v6 {
        if let Some(tos) = o.tos {
            set_int(f, libc::SOL_IP, libc::IP_TOS, tos as i32)
                .map_err(|e| (e, "setsockopt(IP_TOS)"))?;
        }
        if let Some(ttl) = o.ttl {
            set_int(f, libc::SOL_IP, libc::IP_TTL, ttl as i32)
                .map_err(|e| (e, "setsockopt(IP_TTL)"))?;
        }
    }
    Ok(())
}

/// `bind(f, l)`. An IPv6 address may be tentative yet (duplicate address detection) or
/// gone: as CRIU, IPv6 sockets are bound with `IP_FREEBIND` on, switched off again after
/// unless it was on at dump.
fn bind(f: BorrowedFd<'_>, ie: &InetSkEntry, l: SocketAddr) -> Result<(), (Errno, &'static str)> {
    let v6 = ie.family == FAMILY_V6;
    if v6 {
        set_int(f, libc::SOL_IP, libc::IP_FREEBIND, 1)
            .map_err(|e| (e, "setsockopt(IP_FREEBIND)"))?;
    }
    sys::bind(f, l).map_err(|e| (e, "bind"))?;
    let kept = ie.ip_opts.as_ref().and_then(|o| o.freebind) == Some(true);
    if v6 && !kept {
        set_int(f, libc::SOL_IP, libc::IP_FREEBIND, 0)
            .map_err(|e| (e, "setsockopt(IP_FREEBIND)"))?;
    }
    Ok(())
}

/// The buffer sizes of a connection whose queues are written back: room for the queues
/// whatever the sizes were (data copied back takes more memory than it did in the kernel's
/// own segments), at least as dumped. [`InetRestorer::finish`] puts the dumped sizes and
/// locks back once the queues are in.
fn queue_buffers(
    f: BorrowedFd<'_>,
    o: &SkOptsEntry,
    s: &Stream,
) -> Result<(), (Errno, &'static str)> {
    let mut room = o.clone();
    room.so_buf_lock = None;
    // The kernel doubles what it is given (restore_buffers halves): 4 times the bytes.
    room.so_sndbuf = o.so_sndbuf.max((s.outq.len() as u32).saturating_mul(4));
    room.so_rcvbuf = o.so_rcvbuf.max((s.inq.len() as u32).saturating_mul(4));
    criu_sk_common::restore_buffers(f, &room).map_err(sk_opt)
}

fn opt_err((e, op): (Errno, &'static str)) -> (Errno, &'static str) {
    (e, op)
}

fn sk_opt(e: criu_sk_common::OptError) -> (Errno, &'static str) {
    (e.source, e.opt)
}

impl InetRestorer {
    /// Makes the socket `ie` describes; `Err` names the failed call.
    fn open(&mut self, ie: &InetSkEntry) -> Result<OwnedFd, (Errno, &'static str)> {
        let conn = is_connection(ie);
        let stream = if conn && !self.tcp_close {
            self.streams.get(&ie.id)
        } else {
            None
        };
        let s = sys::inet_socket(ie.family as i32, ie.r#type as i32, ie.proto as i32)
            .map_err(|e| (e, "socket"))?;
        let f = s.as_fd();
        criu_sk_common::restore_bound_dev(f, &ie.opts).map_err(sk_opt)?;
        set_int(f, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)
            .map_err(|e| (e, "setsockopt(SO_REUSEADDR)"))?;
        // As CRIU: a listener of a SO_REUSEPORT group may have dropped the option after
        // the others bound; every socket binds with it, the dumped value comes in `finish`.
        set_int(f, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)
            .map_err(|e| (e, "setsockopt(SO_REUSEPORT)"))?;
        // After SO_REUSEADDR, which would undo it: repair mode forces the reuse of the port
        // (an accepted connection shares its listener's).
        if stream.is_some() {
            set_int(f, libc::SOL_TCP, libc::TCP_REPAIR, 1)
                .map_err(|e| (e, "setsockopt(TCP_REPAIR)"))?;
        }
        // A raw IPv6 socket refuses IPV6_V6ONLY (it has its "port" from birth): never on.
        if let Some(v6only) = ie
            .v6only
            .filter(|_| ie.family == FAMILY_V6 && !raw::is_raw(ie))
        {
            set_int(f, libc::SOL_IPV6, libc::IPV6_V6ONLY, i32::from(v6only))
                .map_err(|e| (e, "setsockopt(IPV6_V6ONLY)"))?;
        }
        ip_opts(f, ie).map_err(opt_err)?;
        raw::restore_opts(f, ie)?;
        let local =
            addr::ip_of(ie.family, &ie.src_addr).map(|ip| SocketAddr::new(ip, ie.src_port as u16));
        let peer =
            addr::ip_of(ie.family, &ie.dst_addr).map(|ip| SocketAddr::new(ip, ie.dst_port as u16));
        // --tcp-close: the connection, or a connection closed since (CRIU's
        // tcp_connection(): a TCP socket with a peer port), comes back as a fresh socket,
        // neither bound nor connected, shut both ways (below).
        let closed = (conn && stream.is_none()) || (self.tcp_close && was_connection(ie));
        if let Some(l) = local.filter(|_| raw::is_raw(ie)) {
            raw::bind(f, ie, l)?;
        } else if let Some(l) = local.filter(|_| ie.src_port != 0 && !closed) {
            bind(f, ie, l)?;
        }
        if let (Some(st), Some(l), Some(p)) = (stream, local, peer) {
            tcp::restore(&s, st, ie.state, (l, p), |f| queue_buffers(f, &ie.opts, st))?;
        } else {
            criu_sk_common::restore_buffers(f, &ie.opts).map_err(sk_opt)?;
        }
        if let (Some(q), Some(l)) = (self.queues.get(&ie.id), local) {
            udp::requeue(ie.family, ie.proto as i32, l, q)?;
        }
        if ie.state == TCP_LISTEN {
            let backlog =
                Backlog::new(ie.backlog.min(i32::MAX as u32) as i32).unwrap_or(Backlog::MAXCONN);
            listen(&f, backlog).map_err(|e| (e, "listen"))?;
        } else if let Some(p) = peer.filter(|_| {
            ie.state == TCP_ESTABLISHED
                && matches!(ie.r#type as i32, libc::SOCK_DGRAM | libc::SOCK_RAW)
        }) {
            sys::connect(f, p).map_err(|e| (e, "connect"))?;
        }
        criu_sk_common::restore_rest(f, &ie.opts).map_err(sk_opt)?;
        // Last: the datagrams queued again above had passed it already.
        criu_sk_common::filter::attach_filter(f, &ie.opts.so_filter).map_err(sk_opt)?;
        if let Some(t) = &ie.tcp_opts {
            if t.nodelay == Some(true) {
                set_int(f, libc::SOL_TCP, libc::TCP_NODELAY, 1)
                    .map_err(|e| (e, "setsockopt(TCP_NODELAY)"))?;
            }
            if t.cork == Some(true) {
                set_int(f, libc::SOL_TCP, libc::TCP_CORK, 1)
                    .map_err(|e| (e, "setsockopt(TCP_CORK)"))?;
            }
        }
        if ie.criu_rs_udp_cork == Some(true) {
            set_int(f, libc::SOL_UDP, sys::UDP_CORK, 1).map_err(|e| (e, "setsockopt(UDP_CORK)"))?;
        }
        // --tcp-close: as CRIU, a connection comes back shut both ways (reads see EOF,
        // writes EPIPE, poll POLLHUP); otherwise the dumped shutdown, which an unconnected
        // socket takes too (the kernel sets it while answering ENOTCONN).
        let how = if closed {
            Some(Shutdown::Both)
        } else {
            match ie.shutdown.unwrap_or(0) {
                1 => Some(Shutdown::Read),
                2 => Some(Shutdown::Write),
                3 => Some(Shutdown::Both),
                _ => None,
            }
        };
        if let Some(how) = how.filter(|_| ie.r#type as i32 != libc::SOCK_RAW) {
            match shutdown(f.as_raw_fd(), how) {
                Ok(()) | Err(Errno::ENOTCONN) => {}
                Err(e) => return Err((e, "shutdown")),
            }
        }
        let fl = OFlag::from_bits_truncate(ie.flags as i32);
        fcntl(f, FcntlArg::F_SETFL(fl)).map_err(|e| (e, "fcntl(F_SETFL)"))?;
        let keep = f
            .try_clone_to_owned()
            .map_err(|e| (Errno::from_raw(e.raw_os_error().unwrap_or(0)), "dup"))?;
        self.pending.push(Pending {
            id: ie.id,
            what: describe(ie),
            sock: keep,
            reuseaddr: ie.opts.reuseaddr == Some(true),
            reuseport: ie.opts.so_reuseport == Some(true),
            opts: ie.opts.clone(),
            stream: stream.cloned(),
            state: ie.state,
        });
        Ok(s)
    }
}

impl FileRestorer for InetRestorer {
    fn open_file(
        &mut self,
        _ctx: &mut dyn RestoreContext,
        entry: &FileEntry,
    ) -> Result<OwnedFd, PluginError> {
        let ie = match self.entries.get(&entry.id) {
            Some(ie) => ie.clone(),
            None => validate(entry)?.clone(),
        };
        self.open(&ie).map_err(|(e, op)| PluginError::Restore {
            id: ie.id,
            what: describe(&ie),
            op,
            source: e.into(),
        })
    }

    fn finish(
        &mut self,
        _ctx: &mut dyn RestoreContext,
        _installed: &[InstalledFd],
    ) -> Result<(), PluginError> {
        let fail = |p: &Pending, op, e: Errno| PluginError::Restore {
            id: p.id,
            what: p.what.clone(),
            op,
            source: e.into(),
        };
        // Repairs first: switching repair mode off resets the socket's SO_REUSEADDR.
        for p in &self.pending {
            if let Some(s) = &p.stream {
                tcp::resume(p.sock.as_fd(), s, p.state).map_err(|(e, op)| fail(p, op, e))?;
            }
        }
        for p in &self.pending {
            if p.stream.is_some() {
                // Images without SO_BUF_LOCK (CRIU's): both sizes set, so locked, as CRIU.
                criu_sk_common::restore_buffers(p.sock.as_fd(), &p.opts)
                    .map_err(|e| fail(p, e.opt, e.source))?;
            }
            let v = i32::from(p.reuseaddr);
            set_int(p.sock.as_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, v)
                .map_err(|e| fail(p, "setsockopt(SO_REUSEADDR)", e))?;
            let v = i32::from(p.reuseport);
            set_int(p.sock.as_fd(), libc::SOL_SOCKET, libc::SO_REUSEPORT, v)
                .map_err(|e| fail(p, "setsockopt(SO_REUSEPORT)", e))?;
        }
        self.pending.clear();
        Ok(())
    }
}
