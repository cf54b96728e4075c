//! Who the kernel names as a socket's peer (`SO_PEERCRED`, `SO_PEERPIDFD`): recorded at
//! dump in our fields of `unix_sk_entry`, so that the restore can make each connection
//! inside the task that made it ([`crate::peer_remote`]).
//!
//! The kernel takes the peer's pid and credentials from the calling task: both ends of a
//! `socketpair()` name its caller; an accepted connection names the task that called
//! `connect()`, and the connecting end the task that last called `listen()` on the listener.

use std::os::fd::AsFd;

use criu_plugin_api::FdDesc;
use criu_proto::images::UnixSkEntry;
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};

/// A task and the effective ids it had (as `SO_PEERCRED` reports them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cred {
    /// Its pid (as the images name tasks).
    pub(crate) pid: i32,
    /// Effective uid.
    pub(crate) uid: u32,
    /// Effective gid.
    pub(crate) gid: u32,
}

/// Records `fd`'s `SO_PEERCRED` in `u` (nothing when the kernel names no peer, as for an
/// unconnected datagram socket; a peer that exited keeps its pid, which no restored task
/// will have); for a connection still
/// waiting in a listener's queue (`pending`), the holder of `fd` is recorded as the task
/// that connected, with its effective ids now (the kernel shows the waiting end's
/// credentials to no one before `accept()`).
pub(crate) fn record(fd: &FdDesc, pending: bool, u: &mut UnixSkEntry) {
    if let Ok(c) = getsockopt(&fd.file.as_fd(), PeerCredentials)
        && c.pid() > 0
    {
        u.criu_rs_peer_pid = Some(c.pid() as u32);
        u.criu_rs_peer_uid = Some(c.uid());
        u.criu_rs_peer_gid = Some(c.gid());
    }
    if pending && let Some((uid, gid)) = effective_ids(fd.pid) {
        u.criu_rs_conn_pid = Some(fd.pid as u32);
        u.criu_rs_conn_uid = Some(uid);
        u.criu_rs_conn_gid = Some(gid);
    }
}

/// The effective uid and gid of task `pid` (`/proc/PID/status`, second column of `Uid:`
/// and `Gid:`).
fn effective_ids(pid: i32) -> Option<(u32, u32)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let second = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))?
            .split_whitespace()
            .nth(1)?
            .parse::<u32>()
            .ok()
    };
    Some((second("Uid:")?, second("Gid:")?))
}

/// The recorded peer of `u` (`SO_PEERCRED` at dump), if any.
pub(crate) fn peer_of(u: &UnixSkEntry) -> Option<Cred> {
    Some(Cred {
        pid: u.criu_rs_peer_pid? as i32,
        uid: u.criu_rs_peer_uid?,
        gid: u.criu_rs_peer_gid?,
    })
}

/// The task that connected `u`, a connection waiting in a listener's queue, if recorded.
pub(crate) fn connector_of(u: &UnixSkEntry) -> Option<Cred> {
    Some(Cred {
        pid: u.criu_rs_conn_pid? as i32,
        uid: u.criu_rs_conn_uid?,
        gid: u.criu_rs_conn_gid?,
    })
}
