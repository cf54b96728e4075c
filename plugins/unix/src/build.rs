//! Making every unix socket of the images in criu's process, connected as they were:
//! socketpairs for pairs of which neither end owns a listener's name, bind + listen for
//! servers, connect + accept for connections accepted from a listener (so that the accepted
//! end has the listener's name again), connect for pending connections and connected
//! datagram sockets; then buffers, queues, options, shutdown and file flags.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use criu_plugin_api::PluginError;
use criu_proto::images::UnixSkEntry;
use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, accept4, connect, listen, socket, socketpair,
};

use crate::diag::{STATE_ESTABLISHED, STATE_LISTEN};
use crate::paths;
use crate::queue::{self, Packet};

/// Backlog while the restore connects pending and accepted connections.
pub(crate) const RESTORE_BACKLOG: i32 = 4096;

pub(crate) fn fail<'a>(u: &'a UnixSkEntry, op: &'static str) -> impl Fn(Errno) -> PluginError + 'a {
    move |e| PluginError::Restore {
        id: u.id,
        what: format!("unix socket inode {} {}", u.ino, paths::show(&u.name)),
        op,
        source: e.into(),
    }
}

pub(crate) fn conn_oriented(u: &UnixSkEntry) -> bool {
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

pub(crate) fn new_socket(u: &UnixSkEntry) -> Result<OwnedFd, PluginError> {
    socket(
        AddressFamily::Unix,
        sock_type(u)?,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(fail(u, "socket"))
}

/// The sockets of one restore, made and connected, with what is left to do before the
/// tree resumes.
#[derive(Debug)]
pub(crate) struct Built {
    pub(crate) socks: Vec<UnixSkEntry>,
    /// The sockets, by inode.
    pub(crate) fds: HashMap<u32, OwnedFd>,
    /// Partners of half-closed connections, closed once their queue is written.
    pub(crate) partners: HashMap<u32, OwnedFd>,
    /// Ghost sockets' files by inode, held until every queue is written.
    pub(crate) ghosts: HashMap<u32, paths::Ghost>,
    /// Queued messages still to write, by socket id.
    pub(crate) queues: HashMap<u32, Vec<Packet>>,
    /// Datagram sockets connected to a peer outside the tree: inode, the peer's name,
    /// connected again once the queues are written.
    pub(crate) reconnect: Vec<(u32, Vec<u8>)>,
    /// Listeners whose final `listen()` was called by their task ([`crate::rejoin`]).
    pub(crate) relistened: std::collections::HashSet<u32>,
}

/// How each socket comes to be.
pub(crate) struct Plan<'a> {
    pub(crate) socks: &'a [UnixSkEntry],
    by_ino: HashMap<u32, usize>,
    /// Name -> listening socket inode.
    listeners: HashMap<&'a [u8], u32>,
}

impl<'a> Plan<'a> {
    pub(crate) fn new(socks: &'a [UnixSkEntry]) -> Self {
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

    pub(crate) fn get(&self, ino: u32) -> Option<&'a UnixSkEntry> {
        self.by_ino.get(&ino).map(|&i| &self.socks[i])
    }

    /// A connection accepted from a listener of the images: it shares the listener's name.
    pub(crate) fn accepted_from(&self, u: &UnixSkEntry) -> Option<u32> {
        if !conn_oriented(u) || u.state != STATE_ESTABLISHED || u.name.is_empty() {
            return None;
        }
        self.listeners
            .get(u.name.as_slice())
            .copied()
            .filter(|&l| l != u.ino)
    }

    /// Binds its name itself (not an accepted connection sharing a listener's).
    pub(crate) fn owns_name(&self, u: &UnixSkEntry) -> bool {
        !u.name.is_empty() && self.accepted_from(u).is_none()
    }

    pub(crate) fn mutual(&self, u: &UnixSkEntry) -> Option<&'a UnixSkEntry> {
        self.get(u.peer)
            .filter(|p| p.peer == u.ino && p.ino != u.ino)
    }
}

/// Every socket of `socks` (checked by [`crate::restore::collect`]) made, named and
/// connected; [`Built::fill`] does the rest once the tasks exist.
pub(crate) fn build_all(
    socks: &[UnixSkEntry],
    queues: HashMap<u32, Vec<Packet>>,
) -> Result<Built, PluginError> {
    let plan = Plan::new(socks);
    let mut fds: HashMap<u32, OwnedFd> = HashMap::new();
    let mut partners: HashMap<u32, OwnedFd> = HashMap::new();
    let mut ghosts: HashMap<u32, paths::Ghost> = HashMap::new();
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
                    ghosts.extend(
                        paths::bind_name(fds[&s.ino].as_fd(), s, &fail(s, "bind"))?
                            .map(|g| (s.ino, g)),
                    );
                }
            }
            continue;
        }
        if plan.accepted_from(u).is_some() {
            continue; // made by accept() below
        }
        // An unbound datagram socket with a queue and no peer (its sender closed): only a
        // socketpair's other end can send to it.
        let lone_dgram = u.r#type == libc::SOCK_DGRAM as u32
            && u.name.is_empty()
            && u.peer == 0
            && queues.contains_key(&u.id)
            && !socks.iter().any(|s| s.peer == u.ino);
        if (conn_oriented(u) && u.state == STATE_ESTABLISHED && u.peer == 0) || lone_dgram {
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
            ghosts.extend(
                paths::bind_name(fds[&u.ino].as_fd(), u, &fail(u, "bind"))?.map(|g| (u.ino, g)),
            );
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
        let lsk = plan.get(l).ok_or_else(|| {
            PluginError::bad_image(
                "files.img",
                format!(
                    "unix socket id {}: its listener inode {l} is not in the images",
                    u.id
                ),
            )
        })?;
        let addr = queue::addr_of(&reach(&ghosts, lsk)).map_err(fail(u, "socket address"))?;
        connect(fds[&client.ino].as_raw_fd(), &addr).map_err(fail(client, "connect"))?;
        let accepted = accept4(&fds[&l], SockFlag::SOCK_CLOEXEC).map_err(fail(u, "accept"))?;
        fds.insert(u.ino, accepted);
    }
    // 4. Other connections: pending ones (peer: the listener) and datagram sockets.
    for u in socks {
        if u.peer == 0 || plan.mutual(u).is_some() {
            continue; // unconnected, a socketpair (1.) or an accepted connection (3.)
        }
        let peer = plan.get(u.peer).ok_or_else(|| {
            PluginError::bad_image(
                "files.img",
                format!(
                    "unix socket id {}: peer inode {} is not in the images",
                    u.id, u.peer
                ),
            )
        })?;
        if peer.name.is_empty() {
            return Err(PluginError::bad_image(
                "files.img",
                format!(
                    "unix socket id {}: connected to unbound inode {}, which is not connected back",
                    u.id, peer.ino
                ),
            ));
        }
        let addr = queue::addr_of(&reach(&ghosts, peer)).map_err(fail(u, "socket address"))?;
        connect(fds[&u.ino].as_raw_fd(), &addr).map_err(fail(u, "connect"))?;
    }
    Ok(Built {
        socks: socks.to_vec(),
        fds,
        partners,
        ghosts,
        queues,
        reconnect: Vec::new(),
        relistened: Default::default(),
    })
}

/// The name to connect or send to `u` at: a ghost's file, any other socket's name.
pub(crate) fn reach(ghosts: &HashMap<u32, paths::Ghost>, u: &UnixSkEntry) -> Vec<u8> {
    match ghosts.get(&u.ino) {
        Some(g) => g.reach(),
        None => paths::full_name(u),
    }
}

/// [`reach`] for another process of criu's pid namespace (a restored task).
pub(crate) fn reach_from_outside(ghosts: &HashMap<u32, paths::Ghost>, u: &UnixSkEntry) -> Vec<u8> {
    match ghosts.get(&u.ino) {
        Some(g) => g.reach_from_outside(),
        None => paths::full_name(u),
    }
}
