//! Once every task exists (`RestoreStage::AfterTasksExist`), the connections whose peer
//! credentials name a task of the tree are made again inside that task, so that
//! `SO_PEERCRED` and `SO_PEERPIDFD` answer as before the dump ([`crate::peercred`]):
//! - a socketpair of unnamed sockets: `socketpair()` by the task both ends named;
//! - a listener with accepted or pending connections: `listen()` by the task the listener
//!   named, its connections dropped and made again in the order `build` made them, each
//!   `connect()` by the task the accepted end named (the holder, for a connection not
//!   accepted yet; criu itself when that task is not in the tree), accepted by criu.
//!
//! Each call runs with the effective ids recorded at dump. The new sockets replace the
//! ones `build` made, in criu's table and at every fd number of every task holding them;
//! queues, options and flags come after, in `fill`. What is left as `build` made it, with
//! criu's process as its peer: sockets whose recorded task is not in the tree (exited, or
//! outside it), named socketpair ends, sockets with a `SIGIO` owner (set by the core on
//! the first description), and any connection whose calls fail in the task (warned).

use std::collections::{BTreeMap, HashMap};
use std::os::fd::{AsFd, OwnedFd};
use std::time::Instant;

use criu_plugin_api::{PluginError, RestoreContext};
use criu_proto::images::UnixSkEntry;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::socket::{SockFlag, accept4};

use crate::build::{Built, Plan, RESTORE_BACKLOG, fail, new_socket};
use crate::diag::STATE_LISTEN;
use crate::peercred::{Cred, connector_of, peer_of};
use crate::remote::{Task, sockaddr};

/// Both ends of socketpairs.
type Pairs<'a> = Vec<(&'a UnixSkEntry, &'a UnixSkEntry)>;

/// Remakes the connections of `built` in their tasks (see the module doc).
pub(crate) fn rejoin(ctx: &mut dyn RestoreContext, built: &mut Built) -> Result<(), PluginError> {
    let started = Instant::now();
    let socks = built.socks.clone();
    let plan = Plan::new(&socks);
    let mut holders = Holders::load(ctx);
    let mut pairs = 0usize;
    // Socketpairs by the task (and ids) that made them: one scratch page and one switch
    // of ids per group.
    let mut groups: BTreeMap<(i32, u32, u32), Pairs<'_>> = BTreeMap::new();
    for u in &socks {
        let Some(p) = plan.mutual(u) else { continue };
        if u.ino > p.ino
            || plan.accepted_from(u).is_some()
            || plan.accepted_from(p).is_some()
            || plan.owns_name(u)
            || plan.owns_name(p)
            || built.partners.contains_key(&u.ino)
            || has_owner(u)
            || has_owner(p)
        {
            continue;
        }
        if let Some((pid, cred)) = peer_of(u).and_then(|c| in_tree(ctx, c)) {
            groups
                .entry((pid, cred.uid, cred.gid))
                .or_default()
                .push((u, p));
        }
    }
    for ((pid, uid, gid), members) in groups {
        let cred = Cred { pid, uid, gid };
        let types: Vec<i32> = members.iter().map(|(u, _)| u.r#type as i32).collect();
        let mut task = Task::open(ctx, pid)?;
        let made = match task.socketpairs(&types, cred) {
            Ok(made) => made,
            Err(e) => {
                members.iter().for_each(|(u, _)| warn_kept(u, &e));
                task.done()?;
                continue;
            }
        };
        let mut taken = Vec::with_capacity(2 * made.len());
        for ((u, p), (a, b)) in members.iter().zip(made) {
            for (s, raw) in [(*u, a), (*p, b)] {
                // The task's own fds of it: placed from inside, no round trip through criu.
                for &(_, fd, cloexec) in holders.of(s.id).iter().filter(|h| h.0 == pid) {
                    task.place(raw, fd, cloexec)?;
                }
                taken.push((s, task.take_raw(raw)?));
            }
            pairs += 1;
        }
        task.done()?;
        for (s, new) in taken {
            holders.replace_except(ctx, built, s, new, Some(pid))?;
        }
    }
    for l in socks.iter().filter(|l| l.state == STATE_LISTEN) {
        pairs += relisten(ctx, built, &plan, &mut holders, l)?;
    }
    tracing::info!(
        connections = pairs,
        elapsed_us = started.elapsed().as_micros() as u64,
        "unix connections made again in their tasks (peer credentials)"
    );
    Ok(())
}

/// The listener `l` listened again by its recorded task, and its connections made again
/// (accepted ones first, then pending ones, as `build`). Returns how many were.
fn relisten(
    ctx: &mut dyn RestoreContext,
    built: &mut Built,
    plan: &Plan<'_>,
    holders: &mut Holders,
    l: &UnixSkEntry,
) -> Result<usize, PluginError> {
    let accepted: Vec<&UnixSkEntry> = plan
        .socks
        .iter()
        .filter(|s| plan.accepted_from(s) == Some(l.ino))
        .collect();
    let pending: Vec<&UnixSkEntry> = plan
        .socks
        .iter()
        .filter(|s| s.peer == l.ino && plan.mutual(s).is_none())
        .collect();
    let clients: Vec<&UnixSkEntry> = accepted.iter().filter_map(|s| plan.mutual(s)).collect();
    let listener_task = peer_of(l).and_then(|c| in_tree(ctx, c));
    let connectors: Vec<Option<(i32, Cred)>> = accepted
        .iter()
        .map(|s| peer_of(s).and_then(|c| in_tree(ctx, c)))
        .chain(
            pending
                .iter()
                .map(|c| connector_of(c).and_then(|c| in_tree(ctx, c))),
        )
        .collect();
    let remote_any = listener_task.is_some() || connectors.iter().any(Option::is_some);
    let owned = accepted
        .iter()
        .chain(&clients)
        .chain(&pending)
        .any(|s| has_owner(s));
    if !remote_any || owned || has_owner(l) || clients.len() != accepted.len() {
        return Ok(0);
    }
    let name = crate::build::reach_from_outside(&built.ghosts, l);
    let Some(addr) = sockaddr(&name) else {
        tracing::warn!(
            ino = l.ino,
            "listener name too long to connect from a task: peer credentials name criu"
        );
        return Ok(0);
    };
    let lfd = built.fds[&l.ino]
        .try_clone()
        .map_err(|e| PluginError::Restore {
            id: l.id,
            what: format!("unix socket inode {}", l.ino),
            op: "dup",
            source: e,
        })?;
    let mut relistened = None;
    if let Some((pid, cred)) = listener_task {
        let r = Task::open(ctx, pid).and_then(|mut t| {
            let r = t.listen(lfd.as_fd(), RESTORE_BACKLOG, cred);
            t.done().and(r)
        });
        match r {
            Ok(()) => relistened = Some((pid, cred)),
            Err(e) => warn_kept(l, &e),
        }
    }
    // What build queued on the listener (pending connections) goes: made again below.
    drain(&lfd, l)?;
    let mut n = 0;
    let mut who = connectors.into_iter();
    for (s, c) in accepted.iter().zip(&clients) {
        let client = connect_from(ctx, who.next().flatten(), c, &addr)?;
        let server = accept4(&lfd, SockFlag::SOCK_CLOEXEC).map_err(fail(s, "accept"))?;
        holders.replace(ctx, built, c, client)?;
        holders.replace(ctx, built, s, server)?;
        n += 1;
    }
    for c in pending {
        let client = connect_from(ctx, who.next().flatten(), c, &addr)?;
        holders.replace(ctx, built, c, client)?;
        n += 1;
    }
    // The listener's own backlog, by the same task (`fill` leaves it alone).
    if let Some((pid, cred)) = relistened {
        let backlog = i32::try_from(l.backlog).unwrap_or(i32::MAX);
        let r = Task::open(ctx, pid).and_then(|mut t| {
            let r = t.listen(lfd.as_fd(), backlog, cred);
            t.done().and(r)
        });
        match r {
            Ok(()) => {
                built.relistened.insert(l.ino);
            }
            Err(e) => warn_kept(l, &e),
        }
    }
    Ok(n)
}

/// A socket like `c` connected to `addr` by task `task` (as its recorded ids), or by criu
/// when there is none or the task's calls fail.
fn connect_from(
    ctx: &mut dyn RestoreContext,
    task: Option<(i32, Cred)>,
    c: &UnixSkEntry,
    addr: &[u8],
) -> Result<OwnedFd, PluginError> {
    if let Some((pid, cred)) = task {
        let r = Task::open(ctx, pid).and_then(|mut t| {
            let r = t.connect(c.r#type as i32, addr, cred);
            t.done().and(r)
        });
        match r {
            Ok(fd) => return Ok(fd),
            Err(e) => warn_kept(c, &e),
        }
    }
    let fd = new_socket(c)?;
    let name = &addr[2..];
    let name = name
        .strip_suffix(&[0])
        .filter(|_| name[0] != 0)
        .unwrap_or(name);
    let a = crate::queue::addr_of(name).map_err(fail(c, "socket address"))?;
    nix::sys::socket::connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &a)
        .map_err(fail(c, "connect"))?;
    Ok(fd)
}

/// Accepts and closes every connection waiting on the listener.
fn drain(lfd: &OwnedFd, l: &UnixSkEntry) -> Result<(), PluginError> {
    let flags = fcntl(lfd, FcntlArg::F_GETFL).map_err(fail(l, "fcntl(F_GETFL)"))?;
    let flags = OFlag::from_bits_truncate(flags);
    fcntl(lfd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).map_err(fail(l, "fcntl(F_SETFL)"))?;
    let r = loop {
        match accept4(lfd, SockFlag::SOCK_CLOEXEC) {
            Ok(fd) => drop(fd),
            Err(nix::errno::Errno::EAGAIN) => break Ok(()),
            Err(e) => break Err(fail(l, "accept (dropping a connection made again)")(e)),
        }
    };
    fcntl(lfd, FcntlArg::F_SETFL(flags)).map_err(fail(l, "fcntl(F_SETFL)"))?;
    r
}

/// `cred`'s task in the restored tree, by its restored pid.
fn in_tree(ctx: &dyn RestoreContext, cred: Cred) -> Option<(i32, Cred)> {
    ctx.restored_pid(cred.pid).map(|pid| (pid, cred))
}

fn has_owner(u: &UnixSkEntry) -> bool {
    u.fown.pid != 0 || u.fown.signum != 0
}

fn warn_kept(u: &UnixSkEntry, e: &PluginError) {
    tracing::warn!(
        id = u.id,
        ino = u.ino,
        error = %e,
        "could not remake the unix socket in its task: its peer credentials name criu"
    );
}

/// Which fd numbers of which task hold each file id.
struct Holders {
    by_id: HashMap<u32, Vec<(i32, i32, bool)>>,
}

impl Holders {
    fn load(ctx: &dyn RestoreContext) -> Self {
        let mut by_id: HashMap<u32, Vec<(i32, i32, bool)>> = HashMap::new();
        for t in ctx.tasks() {
            for f in ctx.task_fds(t.pid).unwrap_or_default() {
                by_id
                    .entry(f.id)
                    .or_default()
                    .push((t.pid, f.fd, f.cloexec));
            }
        }
        Holders { by_id }
    }

    /// Task, fd number and close-on-exec of every fd holding file `id`.
    fn of(&self, id: u32) -> &[(i32, i32, bool)] {
        self.by_id.get(&id).map(Vec::as_slice).unwrap_or_default()
    }

    /// `new` replaces socket `u` in criu's table and at every fd number holding it.
    fn replace(
        &mut self,
        ctx: &mut dyn RestoreContext,
        built: &mut Built,
        u: &UnixSkEntry,
        new: OwnedFd,
    ) -> Result<(), PluginError> {
        self.replace_except(ctx, built, u, new, None)
    }

    /// [`Holders::replace`], but the fds of task `done` (placed already) left alone.
    fn replace_except(
        &mut self,
        ctx: &mut dyn RestoreContext,
        built: &mut Built,
        u: &UnixSkEntry,
        new: OwnedFd,
        done: Option<i32>,
    ) -> Result<(), PluginError> {
        for &(pid, fd, cloexec) in self.of(u.id) {
            if Some(pid) != done {
                ctx.install_fd(pid, new.as_fd(), fd, cloexec)?;
            }
        }
        built.fds.insert(u.ino, new);
        Ok(())
    }
}
