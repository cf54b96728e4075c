//! The last step of a unix socket restore, once every task exists (so that a queued
//! message's `SCM_CREDENTIALS` can name its restored sender by its pid in criu's
//! namespace): buffer sizes, queued data, options, listen backlog, shutdown and file flags.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use criu_plugin_api::{PluginError, RestoreContext};
use criu_proto::images::UnixSkEntry;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::socket::{Backlog, Shutdown, listen, shutdown};

use crate::build::{Built, Plan, conn_oriented, fail, new_socket};
use crate::diag::STATE_LISTEN;
use crate::paths;
use crate::queue::{self, Creds, Packet};
use crate::sys::StandIn;
use criu_sk_common::{OptError, restore_buffers, unix_opts};

impl Built {
    /// Writes the queues (credentials naming the restored senders; fds in flight: this
    /// restore's sockets, `by_id` mapping a file id to its inode, or other plugins' files
    /// opened through `ctx`), then sets options, backlog, shutdown and file flags; removes
    /// ghost files.
    pub(crate) fn fill(
        &mut self,
        ctx: &mut dyn RestoreContext,
        by_id: &HashMap<u32, u32>,
    ) -> Result<(), PluginError> {
        let mut queues = std::mem::take(&mut self.queues);
        let partners = std::mem::take(&mut self.partners);
        let ghosts = std::mem::take(&mut self.ghosts);
        let (socks, fds) = (&self.socks, &self.fds);
        let plan = Plan::new(socks);
        // 5. Buffers, then queues.
        for u in socks {
            restore_buffers(fds[&u.ino].as_fd(), &u.opts).map_err(|e| opt_fail(u, e))?;
        }
        let mut env = Env {
            ctx,
            by_id,
            fds,
            stand_ins: HashMap::new(),
            pidns: None,
        };
        for u in socks {
            if let Some(packets) = queues.remove(&u.id) {
                let target = (!u.name.is_empty()).then(|| crate::build::reach(&ghosts, u));
                refill(&plan, &mut env, partners.get(&u.ino), u, target, &packets)?;
            }
        }
        // The gone senders' stand-ins exit now that their messages are queued.
        for (pid, s) in std::mem::take(&mut env.stand_ins) {
            s.end().map_err(|e| PluginError::Task {
                pid,
                op: "ending the stand-in of a gone sender".into(),
                source: e.into(),
            })?;
        }
        drop(partners);
        drop(ghosts);
        // A datagram socket whose peer is outside the tree: connected to its name again
        // (after the queue: a connected socket takes datagrams from its peer only).
        for (ino, name) in std::mem::take(&mut self.reconnect) {
            let (Some(u), Some(fd)) = (socks.iter().find(|u| u.ino == ino), fds.get(&ino)) else {
                return Err(PluginError::BadImage {
                    image: "files.img".into(),
                    reason: format!("unix socket inode {ino} to reconnect was not restored"),
                });
            };
            let addr = queue::addr_of(&name).map_err(fail(u, "socket address"))?;
            nix::sys::socket::connect(fd.as_raw_fd(), &addr).map_err(|e| PluginError::Restore {
                id: u.id,
                what: format!(
                    "unix socket inode {} to its peer outside the tree, {} (is it there?)",
                    u.ino,
                    paths::show(&name)
                ),
                op: "connect",
                source: e.into(),
            })?;
        }
        // 6. Options, backlog, shutdown, file flags.
        for u in socks {
            let fd = fds[&u.ino].as_fd();
            unix_opts::restore_rest(fd, &u.opts).map_err(|e| opt_fail(u, e))?;
            if u.state == STATE_LISTEN && !self.relistened.contains(&u.ino) {
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
        Ok(())
    }
}

fn opt_fail(u: &UnixSkEntry, e: OptError) -> PluginError {
    PluginError::Restore {
        id: u.id,
        what: format!("unix socket inode {} {}", u.ino, e.opt),
        op: e.op,
        source: e.source.into(),
    }
}

/// Queues `packets` on `u` again, each sent from the socket it can come from: a stream's
/// peer (or the partner made for it); for datagrams the partner made for an unbound socket
/// whose sender is gone, the connected peer, else the restored socket owning the sender's
/// name, else a temporary socket bound to that name (or an unbound one).
fn refill(
    plan: &Plan<'_>,
    env: &mut Env<'_>,
    partner: Option<&OwnedFd>,
    u: &UnixSkEntry,
    target: Option<Vec<u8>>,
    packets: &[Packet],
) -> Result<(), PluginError> {
    let fds = env.fds;
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
            send_packet(env, from, None, p, u)?;
        }
        return Ok(());
    }
    let target = target
        .map(|name| queue::addr_of(&name).map_err(fail(u, "socket address")))
        .transpose()?;
    // Sockets that may send to an unbound datagram socket: those connected to it.
    let connected_to_us = plan.socks.iter().find(|s| s.peer == u.ino).map(|s| s.ino);
    let mut temps: HashMap<Vec<u8>, OwnedFd> = HashMap::new();
    for p in packets {
        let from: BorrowedFd<'_> = if let Some(p) = partner {
            // An unbound socket whose sender is gone: made as a pair for its queue.
            p.as_fd()
        } else if u.peer != 0 {
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
        send_packet(env, from, to, p, u)?;
    }
    Ok(())
}

/// What sending queued messages again needs besides the sockets themselves.
struct Env<'a> {
    ctx: &'a mut dyn RestoreContext,
    /// File id -> inode of this restore's unix sockets.
    by_id: &'a HashMap<u32, u32>,
    /// This restore's sockets by inode.
    fds: &'a HashMap<u32, OwnedFd>,
    /// Stand-ins of the senders that are gone, by the pid the images name them by.
    stand_ins: HashMap<i32, StandIn>,
    /// The restored tree's pid namespace when it is not criu's (looked up once).
    pidns: Option<Option<std::fs::File>>,
}

impl Env<'_> {
    /// The fds a message carries, in order: this restore's sockets as they are (`raw`), other
    /// plugins' files opened once through the core (kept open in `held` until sent).
    fn rights(
        &mut self,
        u: &UnixSkEntry,
        ids: &[u32],
        held: &mut Vec<OwnedFd>,
    ) -> Result<Vec<std::os::fd::RawFd>, PluginError> {
        let mut raw = Vec::with_capacity(ids.len());
        for &id in ids {
            if let Some(ino) = self.by_id.get(&id) {
                let sock = self.fds.get(ino).ok_or_else(|| {
                    PluginError::bad_image(
                        "sk-queues.img",
                        format!(
                            "socket id {}: carries unix socket id {id}, which was not made",
                            u.id
                        ),
                    )
                })?;
                raw.push(sock.as_raw_fd());
            } else {
                let f = self.ctx.open_file_by_id(id)?;
                raw.push(f.as_raw_fd());
                held.push(f);
            }
        }
        Ok(raw)
    }
}

impl Env<'_> {
    /// The credentials criu sends a message with: the sender as criu names it (criu sends
    /// from its own pid namespace; the kernel shows the receiver the pid in its own), or,
    /// for a sender that is not a task of the restored tree (it exited before the dump, or
    /// was never part of the tree), a stand-in that exits once the queues are written: the
    /// receiver finds a process that has exited, as before the dump, not one that got the
    /// pid since nor criu (which the kernel would name in a message sent without them).
    fn creds_of(&mut self, c: Creds, u: &UnixSkEntry) -> Result<Creds, PluginError> {
        if let Some(pid) = self.ctx.host_pid(c.pid) {
            return Ok(Creds { pid, ..c });
        }
        let s = match self.stand_ins.entry(c.pid) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                if self.pidns.is_none() {
                    self.pidns = Some(tree_pidns(&*self.ctx, u)?);
                }
                let ns = self.pidns.as_ref().and_then(Option::as_ref);
                let s = StandIn::fork(ns.map(|f| f.as_fd()), c.pid)
                    .map_err(fail(u, "fork (stand-in of a gone sender)"))?;
                tracing::debug!(
                    socket = u.id,
                    pid = c.pid,
                    stand_in = s.pid.as_raw(),
                    "the sender of queued messages is gone: named by a stand-in that exits"
                );
                v.insert(s)
            }
        };
        Ok(Creds {
            pid: s.pid.as_raw(),
            ..c
        })
    }
}

/// The pid namespace of the restored tree (its root's) when it is not criu's own: a
/// stand-in is made there, so that the receivers see a pid of their namespace.
fn tree_pidns(
    ctx: &dyn RestoreContext,
    u: &UnixSkEntry,
) -> Result<Option<std::fs::File>, PluginError> {
    let Some(root) = ctx.tasks().first().and_then(|t| ctx.host_pid(t.pid)) else {
        return Ok(None);
    };
    let theirs = format!("/proc/{root}/ns/pid");
    let link = |p: &str| {
        std::fs::read_link(p).map_err(|e| PluginError::Restore {
            id: u.id,
            what: format!("the pid namespace of the restored tree ({p})"),
            op: "readlink",
            source: e,
        })
    };
    if link(&theirs)? == link("/proc/self/ns/pid")? {
        return Ok(None);
    }
    std::fs::File::open(&theirs)
        .map(Some)
        .map_err(|e| PluginError::Restore {
            id: u.id,
            what: format!("the pid namespace of the restored tree ({theirs})"),
            op: "open",
            source: e,
        })
}

/// Sends one queued message with its credentials ([`Env::creds_of`]) and its fds in
/// flight.
fn send_packet(
    env: &mut Env<'_>,
    from: BorrowedFd<'_>,
    to: Option<&nix::sys::socket::UnixAddr>,
    p: &Packet,
    u: &UnixSkEntry,
) -> Result<(), PluginError> {
    let creds = p.creds.map(|c| env.creds_of(c, u)).transpose()?;
    let mut held = Vec::new();
    let fds = env.rights(u, &p.rights, &mut held)?;
    queue::send(from, to, &p.data, creds, &fds).map_err(fail(u, "send (queued data)"))
}
