//! One inet socket into its `inet_sk_entry`, read from criu's duplicate of it: family,
//! type and protocol (`SO_DOMAIN`, `SO_TYPE`, `SO_PROTOCOL`), names (`getsockname`,
//! `getpeername`), TCP state and listen backlog (`TCP_INFO`), options. An established TCP
//! connection goes on in [`crate::tcp`], a UDP receive queue in [`crate::udp`].

use std::collections::hash_map::Entry;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};

use criu_plugin_api::{DumpContext, FdDesc, PluginError};
use criu_proto::images::{FdTypes, FileEntry, InetSkEntry, IpOptsEntry, TcpOptsEntry};
use criu_sk_common::sys::{get_int, set_int};

use crate::addr::{self, FAMILY_V6};
use crate::{diag, raw, sys, tcp, tcp_state_name, udp};

/// `TCP_ESTABLISHED` (net/tcp_states.h); also what CRIU records for a connected datagram socket.
pub const TCP_ESTABLISHED: u32 = 1;
/// `TCP_CLOSE`: an unconnected socket.
pub const TCP_CLOSE: u32 = 7;
/// `TCP_LISTEN`.
pub const TCP_LISTEN: u32 = 10;

/// What the dump reads first about an inet socket.
#[derive(Debug, Clone)]
pub struct Sock {
    /// `AF_INET` or `AF_INET6`.
    pub family: u32,
    /// `SOCK_STREAM`, `SOCK_DGRAM`...
    pub sock_type: u32,
    /// `IPPROTO_TCP`, `IPPROTO_UDP`...
    pub proto: u32,
    /// Its name (the "any" address, port 0 when unbound).
    pub local: SocketAddr,
    /// Its peer, when connected.
    pub peer: Option<SocketAddr>,
}

impl Sock {
    /// `"TCP 127.0.0.1:5000 -> 127.0.0.1:40000"`: how errors and logs name the socket.
    pub fn describe(&self) -> String {
        let mut proto = proto_name(self.proto);
        if self.is_raw() {
            proto = format!("raw {proto}");
        }
        match self.peer {
            Some(p) => format!("{proto} {} -> {p}", self.local),
            None => format!("{proto} {}", self.local),
        }
    }
}

impl Sock {
    /// Whether it is a raw socket (`SOCK_RAW`), whatever its protocol.
    pub fn is_raw(&self) -> bool {
        self.sock_type as i32 == libc::SOCK_RAW
    }

    /// Whether it is a TCP socket (not a raw socket of protocol TCP).
    pub fn is_tcp(&self) -> bool {
        !self.is_raw() && self.proto as i32 == libc::IPPROTO_TCP
    }

    /// Whether it is a UDP or UDP-Lite socket (not a raw one of that protocol).
    pub fn is_udp(&self) -> bool {
        !self.is_raw() && matches!(self.proto as i32, libc::IPPROTO_UDP | libc::IPPROTO_UDPLITE)
    }
}

/// `"TCP"`, `"UDP"`, ... or the protocol's number.
pub fn proto_name(proto: u32) -> String {
    match proto as i32 {
        libc::IPPROTO_TCP => "TCP".into(),
        libc::IPPROTO_UDP => "UDP".into(),
        libc::IPPROTO_UDPLITE => "UDP-Lite".into(),
        libc::IPPROTO_ICMP => "ICMP".into(),
        libc::IPPROTO_ICMPV6 => "ICMPv6".into(),
        libc::IPPROTO_MPTCP => "MPTCP".into(),
        p => format!("IP protocol {p}"),
    }
}

pub(crate) fn fd_err<'a>(
    fd: &'a FdDesc,
    op: &'static str,
) -> impl Fn(nix::errno::Errno) -> PluginError + 'a {
    move |e| PluginError::Fd {
        pid: fd.pid,
        fd: fd.fd,
        link: fd.link.clone(),
        op,
        source: e.into(),
    }
}

pub(crate) fn refuse(fd: &FdDesc, what: String, hint: &str) -> PluginError {
    PluginError::Unsupported {
        resource: format!("fd {} ({}, {what})", fd.fd, fd.link),
        pid: fd.pid,
        hint: hint.into(),
    }
}

/// Reads family, type, protocol and names of `f`.
pub fn read_sock(fd: &FdDesc, f: BorrowedFd<'_>) -> Result<Sock, PluginError> {
    let get = |opt, name| get_int(f, libc::SOL_SOCKET, opt).map_err(fd_err(fd, name));
    let family = get(libc::SO_DOMAIN, "getsockopt(SO_DOMAIN)")? as u32;
    let sock_type = get(libc::SO_TYPE, "getsockopt(SO_TYPE)")? as u32;
    let proto = get(libc::SO_PROTOCOL, "getsockopt(SO_PROTOCOL)")? as u32;
    let local = sys::local_name(f)
        .map_err(fd_err(fd, "getsockname"))?
        .unwrap_or(SocketAddr::new(addr::unspecified(family), 0));
    // An unconnected datagram socket's peer reads as AF_UNSPEC: None.
    let peer = sys::peer_name(f).map_err(fd_err(fd, "getpeername"))?;
    Ok(Sock {
        family,
        sock_type,
        proto,
        local,
        peer,
    })
}

/// Whether CRIU's image and this plugin know the socket's kind; a refusal names it.
fn check_kind(fd: &FdDesc, sk: &Sock) -> Result<(), PluginError> {
    // A raw socket may carry any protocol (CRIU's can_dump_ipproto).
    let ok = sk.is_raw()
        || matches!(
            (sk.sock_type as i32, sk.proto as i32),
            (libc::SOCK_STREAM, libc::IPPROTO_TCP)
                | (
                    libc::SOCK_DGRAM,
                    libc::IPPROTO_UDP
                        | libc::IPPROTO_UDPLITE
                        | libc::IPPROTO_ICMP
                        | libc::IPPROTO_ICMPV6
                )
        );
    if ok {
        return Ok(());
    }
    let hint = if sk.proto as i32 == libc::IPPROTO_MPTCP {
        "MPTCP sockets are not supported (as in CRIU); for Go programs, GODEBUG=multipathtcp=0 \
         turns MPTCP off"
    } else {
        "only TCP stream, UDP/UDP-Lite datagram, ICMP ping and raw sockets are supported \
         (as in CRIU)"
    };
    Err(refuse(
        fd,
        format!("{}, socket type {}", sk.describe(), sk.sock_type),
        hint,
    ))
}

fn ip_opts(f: BorrowedFd<'_>, sk: &Sock) -> Result<IpOptsEntry, (nix::errno::Errno, &'static str)> {
    let get = |level, opt, name| get_int(f, level, opt).map_err(|e| (e, name));
    let family = sk.family;
    let mut o = IpOptsEntry::default();
    if sk.is_raw() {
        o.raw = Some(raw::dump_opts(f, family, sk.proto)?);
    }
    if family == FAMILY_V6 {
        let fb = get(libc::SOL_IPV6, sys::IPV6_FREEBIND, "IPV6_FREEBIND")?;
        let pk = get(libc::SOL_IPV6, libc::IPV6_RECVPKTINFO, "IPV6_RECVPKTINFO")?;
        o.freebind = (fb != 0).then_some(true);
        o.pktinfo = (pk != 0).then_some(true);
    } else {
        let fb = get(libc::SOL_IP, libc::IP_FREEBIND, "IP_FREEBIND")?;
        let pk = get(libc::SOL_IP, libc::IP_PKTINFO, "IP_PKTINFO")?;
        let tos = get(libc::SOL_IP, libc::IP_TOS, "IP_TOS")?;
        let ttl = get(libc::SOL_IP, libc::IP_TTL, "IP_TTL")?;
        o.freebind = (fb != 0).then_some(true);
        o.pktinfo = (pk != 0).then_some(true);
        o.tos = (tos != 0).then_some(tos as u32);
        o.ttl = (ttl != 0).then_some(ttl as u32);
    }
    Ok(o)
}

fn tcp_opts(f: BorrowedFd<'_>) -> Result<TcpOptsEntry, (nix::errno::Errno, &'static str)> {
    let get = |opt, name| get_int(f, libc::SOL_TCP, opt).map_err(|e| (e, name));
    Ok(TcpOptsEntry {
        cork: Some(get(libc::TCP_CORK, "TCP_CORK")? != 0),
        nodelay: Some(get(libc::TCP_NODELAY, "TCP_NODELAY")? != 0),
        ..TcpOptsEntry::default()
    })
}

/// The state CRIU records and, for a listener, its backlog and accept queue length.
fn state_of(fd: &FdDesc, f: BorrowedFd<'_>, sk: &Sock) -> Result<(u32, u32, u32), PluginError> {
    if !sk.is_tcp() {
        let state = if sk.peer.is_some() {
            TCP_ESTABLISHED
        } else {
            TCP_CLOSE
        };
        return Ok((state, 0, 0));
    }
    let ti = sys::tcp_info(f).map_err(fd_err(fd, "getsockopt(TCP_INFO)"))?;
    let state = u32::from(ti.tcpi_state);
    // For a listener TCP_INFO gives the backlog in tcpi_sacked, the accept queue in
    // tcpi_unacked (tcp_get_info()).
    if state == TCP_LISTEN {
        return Ok((state, ti.tcpi_sacked, ti.tcpi_unacked));
    }
    Ok((state, 0, 0))
}

/// The entry of inet socket `fd`, under file id `id`.
pub fn dump(ctx: &mut dyn DumpContext, fd: &FdDesc, id: u32) -> Result<FileEntry, PluginError> {
    let f = fd.file();
    let sk = read_sock(fd, f)?;
    check_kind(fd, &sk)?;
    let (state, backlog, accept_queue) = state_of(fd, f, &sk)?;
    let mut sk = sk;
    if sk.is_tcp() && state == TCP_CLOSE && sk.peer.is_none() {
        // A connection closed since: its last peer, as CRIU records it (CRIU's restore
        // takes such a socket for a connection, which --tcp-close restores closed).
        sk.peer = sys::last_peer(f, sk.family).map_err(fd_err(fd, "getsockopt(SO_PEERNAME)"))?;
    }
    let opts = ctx.options().clone();
    if state == TCP_LISTEN && accept_queue != 0 {
        if !opts.skip_in_flight {
            return Err(refuse(
                fd,
                format!(
                    "{} listening, {accept_queue} connection(s) not accepted yet",
                    sk.describe()
                ),
                "connections in flight (not accepted yet) cannot be restored, as in CRIU; \
                 dump with --skip-in-flight to leave them out (their clients see a reset)",
            ));
        }
        tracing::info!(
            pid = fd.pid,
            fd = fd.fd,
            accept_queue,
            "skipping in-flight connections"
        );
    }
    let tcp_conn = sk.is_tcp() && state != TCP_LISTEN && state != TCP_CLOSE;
    if tcp_conn && !opts.tcp_established && !opts.tcp_close {
        return Err(refuse(
            fd,
            format!("{} {}", sk.describe(), tcp_state_name(state)),
            "a connected TCP socket is dumped only with --tcp-established, or with \
             --tcp-close to restore it closed (as in CRIU)",
        ));
    }
    let mut sk_opts = criu_sk_common::dump(f).map_err(|e| fd_err(fd, e.opt)(e.source))?;
    sk_opts.so_filter = match criu_sk_common::filter::dump_filter(f) {
        Ok(prog) => prog,
        // An eBPF program (SO_ATTACH_BPF) has no classic form to read back.
        Err(e) if e.source == nix::errno::Errno::EACCES => {
            return Err(refuse(
                fd,
                sk.describe(),
                "an eBPF socket filter (SO_ATTACH_BPF) is attached, which cannot be read \
                 back (as in CRIU)",
            ));
        }
        Err(e) => return Err(fd_err(fd, e.opt)(e.source)),
    };
    let mut tcp_o = None;
    if sk.is_tcp() {
        criu_sk_common::opts::dump_tcp_keepalive(f, &mut sk_opts)
            .map_err(|e| fd_err(fd, e.opt)(e.source))?;
        tcp_o = Some(tcp_opts(f).map_err(|(e, n)| fd_err(fd, n)(e))?);
    }
    let ip = ip_opts(f, &sk).map_err(|(e, n)| fd_err(fd, n)(e))?;
    let mut udp_cork = None;
    if sk.is_udp() {
        let cork =
            get_int(f, libc::SOL_UDP, sys::UDP_CORK).map_err(fd_err(fd, "getsockopt(UDP_CORK)"))?;
        if cork != 0 {
            // The datagram being built while corked sits in the kernel's write queue, which
            // nothing can read (no peek of a send queue): it is dropped, as UDP may drop any
            // datagram; the socket comes back corked (our field, CRIU refuses the socket).
            let pending = sys::outq(f).map_err(fd_err(fd, "ioctl(SIOCOUTQ)"))?;
            if pending != 0 {
                tracing::warn!(pid = fd.pid, fd = fd.fd, sock = %sk.describe(), pending,
                    "the pending datagram of a corked UDP socket is dropped");
            }
            udp_cork = Some(true);
        }
    }
    let v6only = if sk.family == FAMILY_V6 {
        let v = get_int(f, libc::SOL_IPV6, libc::IPV6_V6ONLY)
            .map_err(fd_err(fd, "getsockopt(IPV6_V6ONLY)"))?;
        Some(v != 0)
    } else {
        None
    };
    let ino = fd.stat.ino as u32;
    let shutdown = shutdown_of(ctx, fd, &sk, state)?;
    if tcp_conn && opts.tcp_close {
        // As CRIU: neither repaired nor locked; the restore makes it a closed socket.
        tracing::info!(pid = fd.pid, fd = fd.fd, sock = %sk.describe(),
            "--tcp-close: the connection is not dumped");
    } else if tcp_conn {
        tcp::dump(ctx, fd, &sk, state, ino)?;
    } else if sk.is_udp() {
        udp::dump_queue(ctx, fd, &sk, id)?;
    } else if !sk.is_tcp() {
        udp::warn_dropped(fd, &sk)?;
    }
    tracing::debug!(pid = fd.pid, fd = fd.fd, id, sock = %sk.describe(), state, "inet socket");
    let (dst_port, dst_addr) = match sk.peer {
        Some(p) => (u32::from(p.port()), addr::words_of(p.ip())),
        None => (0, addr::words_of(addr::unspecified(sk.family))),
    };
    let ie = InetSkEntry {
        id,
        ino,
        family: sk.family,
        r#type: sk.sock_type,
        proto: sk.proto,
        state,
        src_port: u32::from(sk.local.port()),
        dst_port,
        flags: fd.fdinfo.file_flags(),
        backlog,
        src_addr: addr::words_of(sk.local.ip()),
        dst_addr,
        fown: fd.owner.to_entry(),
        opts: sk_opts,
        v6only,
        ip_opts: Some(ip),
        ifname: None,
        ns_id: None,
        shutdown,
        tcp_opts: tcp_o,
        criu_rs_udp_cork: udp_cork,
    };
    Ok(FileEntry {
        r#type: FdTypes::Inetsk as i32,
        id,
        isk: Some(ie),
        ..Default::default()
    })
}

/// The `sk_shutdown` value CRIU records: for UDP and UDP-Lite always (from `sock_diag`,
/// [`diag`]), for a closed TCP socket its read shutdown if any (from `poll`, as CRIU's
/// `dump_tcp_uncon_shutdown`); a connection's shutdown is in its state.
fn shutdown_of(
    ctx: &mut dyn DumpContext,
    fd: &FdDesc,
    sk: &Sock,
    state: u32,
) -> Result<Option<i32>, PluginError> {
    let f = fd.file();
    if sk.is_raw() {
        // CRIU records none for raw sockets (and restores none).
        return Ok(None);
    }
    match sk.proto as i32 {
        libc::IPPROTO_TCP if state == TCP_CLOSE => {
            let bits = diag::polled(f, false).map_err(fd_err(fd, "poll"))?;
            Ok((bits != 0).then_some(i32::from(bits)))
        }
        libc::IPPROTO_UDP | libc::IPPROTO_UDPLITE => {
            let diag_err = |e: diag::DiagError| {
                refuse(
                    fd,
                    format!("{}: {e}", sk.describe()),
                    "the shutdown state of a UDP socket is read with sock_diag \
                     (NETLINK_SOCK_DIAG, module inet_diag/udp_diag)",
                )
            };
            let (ns, ns_ino) = diag::netns_of(f).map_err(diag_err)?;
            let key = (ns_ino, sk.family as u8, sk.proto as u8);
            let state = ctx.state::<crate::DumpState>()?;
            let known = match state.shutdowns.entry(key) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => {
                    e.insert(diag::query(ns.as_fd(), key.1, key.2).map_err(diag_err)?)
                }
            };
            let bits = match known.get(&(fd.stat.ino as u32)) {
                Some(&b) => b,
                // Not hashed (unbound): only poll can tell.
                None => diag::polled(f, true).map_err(fd_err(fd, "poll"))?,
            };
            Ok(Some(i32::from(bits)))
        }
        _ => Ok(None),
    }
}

/// Turns repair mode off again on a socket the dump put in it.
pub fn repair_off(f: BorrowedFd<'_>) -> Result<(), nix::errno::Errno> {
    set_int(f, libc::SOL_TCP, libc::TCP_REPAIR, 0)
}
