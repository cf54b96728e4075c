//! Making every unix socket of the images in criu's process, connected as they were:
//! socketpairs for pairs of which neither end owns a listener's name, bind + listen for
//! servers, connect + accept for connections accepted from a listener (so that the accepted
//! end has the listener's name again), connect for pending connections and connected
//! datagram sockets; then buffers, queues, options, shutdown and file flags.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use criu_plugin_api::PluginError;
use criu_proto::images::UnixSkEntry;
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::socket::{
    AddressFamily, Backlog, Shutdown, SockFlag, SockType, accept4, connect, listen, shutdown,
    socket, socketpair,
};

use crate::diag::{STATE_ESTABLISHED, STATE_LISTEN};
use crate::queue::{self, Packet};
use crate::{opts, paths};

/// Backlog while the restore connects pending and accepted connections.
const RESTORE_BACKLOG: i32 = 4096;

fn fail<'a>(u: &'a UnixSkEntry, op: &'static str) -> impl Fn(Errno) -> PluginError + 'a {
    move |e| PluginError::Restore {
        id: u.id,
        what: format!("unix socket inode {} {}", u.ino, paths::show(&u.name)),
        op,
        source: e.into(),
    }
}

fn conn_oriented(u: &UnixSkEntry) -> bool {
    u.r#type as i32 != libc::SOCK_DGRAM
}

fn sock_type(u: &UnixSkEntry) -> Result<SockType, PluginError> {
    match u.r#type as i32 {
        libc::SOCK_STREAM => Ok(SockType::Stream),
        libc::SOCK_DGRAM => Ok(SockType::Datagram),
        libc::SOCK_SEQPACKET => Ok(SockType::SeqPacket),
        t => Err(PluginError::bad_image(
            "files.img",
            format!("unix socket id {}: type {t}", u.id),
        )),
    }
}

fn new_socket(u: &UnixSkEntry) -> Result<OwnedFd, PluginError> {
    socket(
        AddressFamily::Unix,
        sock_type(u)?,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(fail(u, "socket"))
}

/// How each socket comes to be.
struct Plan<'a> {
    socks: &'a [UnixSkEntry],
    by_ino: HashMap<u32, usize>,
    /// Name -> listening socket inode.
    listeners: HashMap<&'a [u8], u32>,
}

impl<'a> Plan<'a> {
    fn new(socks: &'a [UnixSkEntry]) -> Self {
        Plan {
            socks,
            by_ino: socks.iter().enumerate().map(|(i, u)| (u.ino, i)).collect(),
            listeners: socks
                .iter()
                .filter(|u| u.state == STATE_LISTEN && !u.name.is_empty())
                .map(|u| (u.name.as_slice(), u.ino))
                .collect(),
        }
    }

    fn get(&self, ino: u32) -> Option<&'a UnixSkEntry> {
        self.by_ino.get(&ino).map(|&i| &self.socks[i])
    }

    /// A connection accepted from a listener of the images: it shares the listener's name.
    fn accepted_from(&self, u: &UnixSkEntry) -> Option<u32> {
        if !conn_oriented(u) || u.state != STATE_ESTABLISHED || u.name.is_empty() {
            return None;
        }
        self.listeners
            .get(u.name.as_slice())
            .copied()
            .filter(|&l| l != u.ino)
    }

    /// Binds its name itself (not an accepted connection sharing a listener's).
    fn owns_name(&self, u: &UnixSkEntry) -> bool {
        !u.name.is_empty() && self.accepted_from(u).is_none()
    }

    fn mutual(&self, u: &UnixSkEntry) -> Option<&'a UnixSkEntry> {
        self.get(u.peer)
            .filter(|p| p.peer == u.ino && p.ino != u.ino)
    }
}

/// Every socket of `socks` (checked by [`crate::restore::collect`]) made and filled, by
/// file id.
pub(crate) fn build_all(
    socks: &[UnixSkEntry],
    mut queues: HashMap<u32, Vec<Packet>>,
) -> Result<HashMap<u32, OwnedFd>, PluginError> {
    let plan = Plan::new(socks);
    let mut fds: HashMap<u32, OwnedFd> = HashMap::new();
    // Partners of half-closed connections, closed once their queue is written.
    let mut partners: HashMap<u32, OwnedFd> = HashMap::new();
    // Files of ghost sockets, removed (dropped) once every connection and queue is made.
    let mut ghosts: Vec<paths::Ghost> = Vec::new();
    check_ghost_paths(socks)?;
    // 1. Sockets and socketpairs; names bound.
    for u in socks {
        if fds.contains_key(&u.ino) {
            continue;
        }
        let pair = plan
            .mutual(u)
            .filter(|p| plan.accepted_from(u).is_none() && plan.accepted_from(p).is_none());
        if let Some(p) = pair {
            let (a, b) = socketpair(
                AddressFamily::Unix,
                sock_type(u)?,
                None,
                SockFlag::SOCK_CLOEXEC,
            )
            .map_err(fail(u, "socketpair"))?;
            fds.insert(u.ino, a);
            fds.insert(p.ino, b);
            for s in [u, p] {
                if plan.owns_name(s) {
                    ghosts.extend(paths::bind_name(fds[&s.ino].as_fd(), s, &fail(s, "bind"))?);
                }
            }
            continue;
        }
        if plan.accepted_from(u).is_some() {
            continue; // made by accept() below
        }
        if conn_oriented(u) && u.state == STATE_ESTABLISHED && u.peer == 0 {
            // Its peer is gone: a socketpair whose other end closes after the queue.
            let (a, b) = socketpair(
                AddressFamily::Unix,
                sock_type(u)?,
                None,
                SockFlag::SOCK_CLOEXEC,
            )
            .map_err(fail(u, "socketpair"))?;
            fds.insert(u.ino, a);
            partners.insert(u.ino, b);
        } else {
            fds.insert(u.ino, new_socket(u)?);
        }
        if plan.owns_name(u) {
            ghosts.extend(paths::bind_name(fds[&u.ino].as_fd(), u, &fail(u, "bind"))?);
        }
    }
    // 2. Servers listen.
    for u in socks.iter().filter(|u| u.state == STATE_LISTEN) {
        listen(
            &fds[&u.ino],
            Backlog::new(RESTORE_BACKLOG).map_err(fail(u, "listen"))?,
        )
        .map_err(fail(u, "listen"))?;
    }
    // 3. Accepted connections: the peer connects, the listener accepts.
    for u in socks {
        let Some(l) = plan.accepted_from(u) else {
            continue;
        };
        let client = plan.mutual(u).ok_or_else(|| {
            PluginError::bad_image(
                "files.img",
                format!(
                    "unix socket id {}: accepted connection without its peer",
                    u.id
                ),
            )
        })?;
        let lsk = plan.get(l).expect("listeners come from the images");
        let addr = queue::addr_of(&lsk.name).map_err(fail(u, "socket address"))?;
        connect(fds[&client.ino].as_raw_fd(), &addr).map_err(fail(client, "connect"))?;
        let accepted = accept4(&fds[&l], SockFlag::SOCK_CLOEXEC).map_err(fail(u, "accept"))?;
        fds.insert(u.ino, accepted);
    }
    // 4. Other connections: pending ones (peer: the listener) and datagram sockets.
    for u in socks {
        if u.peer == 0 || plan.mutual(u).is_some() {
            continue; // unconnected, a socketpair (1.) or an accepted connection (3.)
        }
        let peer = plan.get(u.peer).expect("peers checked at collect");
        if peer.name.is_empty() {
            return Err(PluginError::bad_image(
                "files.img",
                format!(
                    "unix socket id {}: connected to unbound inode {}, which is not connected back",
                    u.id, peer.ino
                ),
            ));
        }
        let addr = queue::addr_of(&peer.name).map_err(fail(u, "socket address"))?;
        connect(fds[&u.ino].as_raw_fd(), &addr).map_err(fail(u, "connect"))?;
    }
    // 5. Buffers, then queues.
    for u in socks {
        opts::restore_buffers(fds[&u.ino].as_fd(), &u.opts).map_err(|e| opt_fail(u, e))?;
    }
    for u in socks {
        if let Some(packets) = queues.remove(&u.id) {
            refill(&plan, &fds, partners.get(&u.ino), u, &packets)?;
        }
    }
    drop(partners);
    drop(ghosts);
    // 6. Options, backlog, shutdown, file flags.
    for u in socks {
        let fd = fds[&u.ino].as_fd();
        opts::restore_rest(fd, &u.opts).map_err(|e| opt_fail(u, e))?;
        if u.state == STATE_LISTEN {
            let backlog = Backlog::new(u.backlog as i32).unwrap_or(Backlog::MAXCONN);
            listen(&fd, backlog).map_err(fail(u, "listen"))?;
        }
        let how = match u.shutdown.unwrap_or(0) {
            1 => Some(Shutdown::Read),
            2 => Some(Shutdown::Write),
            3 => Some(Shutdown::Both),
            _ => None,
        };
        if let Some(how) = how {
            shutdown(fd.as_raw_fd(), how).map_err(fail(u, "shutdown"))?;
        }
        fcntl(
            fd,
            FcntlArg::F_SETFL(OFlag::from_bits_truncate(u.flags as i32)),
        )
        .map_err(fail(u, "fcntl(F_SETFL)"))?;
    }
    Ok(socks
        .iter()
        .map(|u| (u.id, fds.remove(&u.ino).expect("every socket was made")))
        .collect())
}

/// A ghost (unlinked) path socket is bound at its path during the restore: refused when a
/// live socket of the images is bound at the same path.
fn check_ghost_paths(socks: &[UnixSkEntry]) -> Result<(), PluginError> {
    for g in socks
        .iter()
        .filter(|u| u.deleted == Some(true) && !u.name.is_empty())
    {
        if let Some(live) = socks
            .iter()
            .find(|u| u.deleted != Some(true) && u.name == g.name && u.state != STATE_ESTABLISHED)
        {
            return Err(PluginError::Unsupported {
                resource: format!(
                    "unix socket id {} bound to {} (unlinked) and socket id {} bound to the same path",
                    g.id,
                    paths::show(&g.name),
                    live.id
                ),
                pid: 0,
                hint: "a path reused by a second socket while the first one lives on is not supported yet".into(),
            });
        }
    }
    Ok(())
}

fn opt_fail(u: &UnixSkEntry, e: opts::OptError) -> PluginError {
    PluginError::Restore {
        id: u.id,
        what: format!("unix socket inode {} {}", u.ino, e.opt),
        op: e.op,
        source: e.source.into(),
    }
}

/// Queues `packets` on `u` again, each sent from the socket it can come from: a stream's
/// peer; for datagrams the connected peer, else the restored socket owning the sender's
/// name, else a temporary socket bound to that name (or an unbound one).
fn refill(
    plan: &Plan<'_>,
    fds: &HashMap<u32, OwnedFd>,
    partner: Option<&OwnedFd>,
    u: &UnixSkEntry,
    packets: &[Packet],
) -> Result<(), PluginError> {
    let no_sender = || {
        PluginError::bad_image(
            "sk-queues.img",
            format!(
                "socket id {}: queued data but no socket that could have sent it",
                u.id
            ),
        )
    };
    if conn_oriented(u) {
        let from = match partner {
            Some(p) => p.as_fd(),
            None => fds.get(&u.peer).ok_or_else(no_sender)?.as_fd(),
        };
        for p in packets {
            queue::send(from, None, &p.data).map_err(fail(u, "send (queued data)"))?;
        }
        return Ok(());
    }
    let target = if u.name.is_empty() {
        None
    } else {
        Some(queue::addr_of(&u.name).map_err(fail(u, "socket address"))?)
    };
    // Sockets that may send to an unbound datagram socket: those connected to it.
    let connected_to_us = plan.socks.iter().find(|s| s.peer == u.ino).map(|s| s.ino);
    let mut temps: HashMap<Vec<u8>, OwnedFd> = HashMap::new();
    for p in packets {
        let from: BorrowedFd<'_> = if u.peer != 0 {
            fds[&u.peer].as_fd()
        } else if target.is_none() {
            fds.get(&connected_to_us.ok_or_else(no_sender)?)
                .ok_or_else(no_sender)?
                .as_fd()
        } else if let Some(owner) = plan
            .socks
            .iter()
            .find(|s| plan.owns_name(s) && s.name == p.addr && !p.addr.is_empty())
        {
            fds[&owner.ino].as_fd()
        } else {
            if !temps.contains_key(&p.addr) {
                let t = new_socket(u)?;
                if !p.addr.is_empty() {
                    paths::bind_temporary(
                        t.as_fd(),
                        &p.addr,
                        &fail(u, "bind (sender of a queued datagram)"),
                    )?;
                }
                temps.insert(p.addr.clone(), t);
            }
            temps[&p.addr].as_fd()
        };
        let to = if u.peer != 0 && plan.get(u.peer).is_some_and(|peer| peer.peer == u.ino) {
            None
        } else {
            target.as_ref()
        };
        queue::send(from, to, &p.data).map_err(fail(u, "send (queued datagram)"))?;
    }
    Ok(())
}
