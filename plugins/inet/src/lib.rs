//! Built-in plugin for TCP and UDP sockets (`socket:[N]` of family `AF_INET`/`AF_INET6`),
//! CRIU 4.x format: a `files.img` INETSK entry (`file_entry.isk`) per open file description,
//! `tcp-stream-<ino>.img` per established connection, UDP datagrams in `sk-queues.img`.
//!
//! Dump reads criu's duplicate of each socket ([`criu_plugin_api::FdDesc::file`]): family,
//! type, protocol, names, TCP state and listen backlog (`TCP_INFO`), the generic options
//! (`criu_sk_common`), `IPV6_V6ONLY`, `IP_TOS`/`IP_TTL`/`IP_FREEBIND`/`IP_PKTINFO`,
//! `TCP_NODELAY`/`TCP_CORK` and the keepalive parameters. TCP: listening sockets (a listener
//! with connections not accepted yet is refused, as CRIU, unless `--skip-in-flight`),
//! bound and unbound sockets, and with `--tcp-established` established connections through
//! TCP repair ([`tcp`]); without it a connection is refused naming its addresses, the pid
//! and the fd. The repair mode the dump switches on is switched off again when the tree runs
//! on (`--leave-running`, `DumpStage::AfterDump`) and when the dump fails
//! (`DumpStage::Failed`): a failed dump leaves every connection working. Otherwise the tree
//! is killed with its sockets in repair mode, which close without a packet: the port is
//! free for the restore and the peer notices nothing. UDP/UDP-Lite: bound, connected,
//! with their queued datagrams and each one's sender ([`udp`]; CRIU drops them). ICMP ping
//! sockets (`SOCK_DGRAM`, `IPPROTO_ICMP`/`ICMPV6`): ident and peer (queued replies dropped,
//! as CRIU). A corked UDP socket (`UDP_CORK`) comes back corked (our field
//! `inet_sk_entry.criu_rs_udp_cork`); the datagram it was building cannot be read (no peek
//! of a send queue) and is dropped, as UDP may drop a datagram (CRIU refuses the socket).
//! Half-closed connections (FIN_WAIT1/2, CLOSE_WAIT, LAST_ACK, CLOSING) go through repair
//! too, their FINs put back at restore ([`fin`]). Classic socket filters are kept in
//! `sk_opts_entry.so_filter` (`criu_sk_common::filter`).
//! Raw sockets (`SOCK_RAW`, IPv4 and IPv6, any protocol) with their `ip_opts_raw_entry`
//! (`IP_HDRINCL`, `IP_NODEFRAG`, ICMP filters), address and peer ([`raw`]); their queued
//! datagrams are dropped, as CRIU drops them.
//! Refused, naming fd and pid: MPTCP, unfinished connections (SYN_SENT).
//!
//! Restore makes each socket in the restorer (`open_file`) and ends the repairs in
//! `finish`, just before the tree resumes ([`restore`]).

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod addr;
pub mod diag;
mod dump;
pub mod fin;
pub mod raw;
mod restore;
mod sys;
pub mod tcp;
#[cfg(test)]
mod tests;
pub mod udp;

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};

use criu_plugin_api::{
    API_VERSION, DumpContext, DumpStage, FdDesc, FdHandler, FileRestorer, Plugin, PluginError,
    PluginInfo, PluginRegistration, PluginState, RestoreContext, RunKind, StageHooks,
};
use criu_proto::images::{FdTypes, FileEntry};

pub use restore::validate;

/// The plugin's name.
pub const NAME: &str = "inet";

/// The name of TCP state `s` (net/tcp_states.h).
pub fn tcp_state_name(s: u32) -> &'static str {
    match s {
        1 => "ESTABLISHED",
        2 => "SYN_SENT",
        3 => "SYN_RECV",
        4 => "FIN_WAIT1",
        5 => "FIN_WAIT2",
        6 => "TIME_WAIT",
        7 => "CLOSE",
        8 => "CLOSE_WAIT",
        9 => "LAST_ACK",
        10 => "LISTEN",
        11 => "CLOSING",
        _ => "unknown state",
    }
}

/// One dump's state: criu's duplicates of the sockets it put in repair mode (with the pid
/// and fd they were found at), so that the end of the dump can switch repair off again.
#[derive(Debug, Default)]
pub struct DumpState {
    /// (pid, fd, criu's duplicate) per connection in repair mode.
    pub repaired: Vec<(i32, i32, OwnedFd)>,
    /// `sock_diag`'s shutdown bits by socket inode, per (network namespace inode,
    /// family, protocol): one query each per dump.
    pub shutdowns: HashMap<(u64, u8, u8), HashMap<u32, u8>>,
}

impl DumpState {
    /// Switches repair mode off on every socket; failures are logged (the socket is then
    /// still silent: the log names it).
    fn release(&mut self) {
        for (pid, fd, sock) in self.repaired.drain(..) {
            if let Err(e) = dump::repair_off(sock.as_fd()) {
                tracing::error!(pid, fd, error = %e, "cannot switch TCP repair mode off");
            }
        }
    }
}

/// TCP and UDP sockets (each restore gets its own restorer).
#[derive(Debug, Default)]
pub struct InetPlugin;

/// The registered instance.
pub static PLUGIN: InetPlugin = InetPlugin;

inventory::submit! { PluginRegistration::new(&PLUGIN) }

impl Plugin for InetPlugin {
    fn info(&self) -> PluginInfo {
        PluginInfo {
            name: NAME,
            version: env!("CARGO_PKG_VERSION"),
            priority: 120,
            api_version: API_VERSION,
        }
    }

    fn fd_handler(&self) -> Option<&dyn FdHandler> {
        Some(self)
    }

    fn stage_hooks(&self) -> Option<&dyn StageHooks> {
        Some(self)
    }

    fn new_state(&self, run: RunKind) -> Result<Option<PluginState>, PluginError> {
        Ok((run == RunKind::Dump).then(|| Box::new(DumpState::default()) as PluginState))
    }
}

impl FdHandler for InetPlugin {
    fn fd_types(&self) -> &[FdTypes] {
        &[FdTypes::Inetsk]
    }

    fn claims(&self, fd: &FdDesc) -> bool {
        fd.stat.file_type() == libc::S_IFSOCK
            && fd.link.starts_with("socket:")
            && criu_sk_common::sys::get_int(fd.file(), libc::SOL_SOCKET, libc::SO_DOMAIN)
                .is_ok_and(|d| d == libc::AF_INET || d == libc::AF_INET6)
    }

    fn dump_file(
        &self,
        ctx: &mut dyn DumpContext,
        fd: &FdDesc,
        id: u32,
    ) -> Result<FileEntry, PluginError> {
        dump::dump(ctx, fd, id)
    }

    fn start_restore(
        &self,
        ctx: &mut dyn RestoreContext,
        entries: &[FileEntry],
    ) -> Result<Box<dyn FileRestorer>, PluginError> {
        Ok(Box::new(restore::InetRestorer::start(ctx, entries)?))
    }
}

impl StageHooks for InetPlugin {
    fn dump_stages(&self) -> &[DumpStage] {
        &[DumpStage::AfterDump, DumpStage::Failed]
    }

    fn dump_stage(&self, stage: DumpStage, ctx: &mut dyn DumpContext) -> Result<(), PluginError> {
        let leave_running = ctx.options().leave_running;
        let state = ctx.state::<DumpState>()?;
        match stage {
            // Killed tasks close their sockets still in repair mode: silently.
            DumpStage::AfterDump if leave_running => state.release(),
            DumpStage::Failed => state.release(),
            _ => {}
        }
        Ok(())
    }
}
