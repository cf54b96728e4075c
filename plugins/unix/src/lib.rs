//! Built-in plugin for unix sockets (`socket:[ino]`, `AF_UNIX`), CRIU 4.x format.
//!
//! Dump: `sock_diag` lists every unix socket of the namespace once per dump (inode, type,
//! state, name, peer, pending connections, queue lengths, shutdown); each socket held by
//! the tree becomes a `files.img` UNIXSK entry (`usk`), its options read with
//! `getsockopt` on criu's duplicate ([`criu_plugin_api::FdDesc::file`]). Its receive queue
//! is peeked (`MSG_PEEK` from `SO_PEEK_OFF` 0, then the option put back: nothing is
//! consumed, so a failed dump leaves the queue as it was) into `sk-queues.img`, one
//! `sk_packet_entry` + data per message; a datagram's sender name goes to our field
//! `criu_rs_addr`, the credentials a message carries to `criu_rs_ucred_*`. As in CRIU, a
//! connection still waiting in a listener's accept queue is recorded with the listener as
//! its peer (a peer outside the tree: see `external`, `--ext-unix-sk`); a path socket whose file was unlinked or
//! replaced is marked `deleted` (a ghost, as CRIU); a relative name gets the directory
//! it was bound in (`name_dir`, found with `SIOCUNIXFILE`). Refused, naming fd, pid and inodes:
//! peers and pending connections outside the tree, data sent on a connection not accepted
//! yet. Fds in flight (`SCM_RIGHTS`) in a queue get their file ids from
//! [`criu_plugin_api::DumpContext::dump_file_in_flight`], kept in CRIU's `scm` entry; a
//! socket in flight whose peer no task holds waits for that peer to turn up in flight too
//! (checked after the dump, `DumpStage::AfterDump`).
//!
//! Restore: every socket is made in criu's process when the restore starts, before any
//! task exists (`build`): socketpairs, bind (path sockets with their mode and owner),
//! listen, connect + accept for accepted connections (so they keep the listener's name),
//! connect for pending connections. Once every task exists, before credentials are restored
//! (`rejoin`, `RestoreStage::AfterTasksExist`), the connections are made again inside the
//! tasks the kernel named as their peers at dump (`peercred`), so that `SO_PEERCRED` and
//! `SO_PEERPIDFD` answer as before. Then (`fill`, from
//! `FileRestorer::finish`): buffer sizes, queued data (sent from the peer, or for
//! datagrams from a socket with the sender's name; credentials naming the restored
//! sender; fds in flight: this restore's sockets, other files through
//! [`criu_plugin_api::RestoreContext::open_file_by_id`]), the other options, shutdown and file flags. A ghost is bound at its path
//! for a moment (whatever is there now moved aside and put back at once), its file kept by
//! an `O_PATH` fd and unlinked: connections and queued datagrams reach it through
//! `/proc/self/fd`, so a live socket or a FIFO at the same path is no obstacle. Each `open_file` hands out its socket.

#![deny(unsafe_code)]
#![warn(missing_docs)]

mod build;
mod diag;
mod dump;
mod external;
mod fill;
mod paths;
mod peercred;
mod queue;
mod rejoin;
mod remote;
mod restore;
mod sys;

use criu_plugin_api::{
    API_VERSION, DumpContext, DumpStage, FdDesc, FdHandler, FileRestorer, Plugin, PluginError,
    PluginInfo, PluginRegistration, PluginState, RestoreContext, RestoreStage, RunKind, StageHooks,
};
use criu_proto::images::{FdTypes, FileEntry};

/// The plugin's name.
pub const NAME: &str = "unix";

/// Unix sockets (stateless: each restore gets its own restorer).
#[derive(Debug, Default)]
pub struct UnixPlugin;

/// The registered instance.
pub static PLUGIN: UnixPlugin = UnixPlugin;

inventory::submit! { PluginRegistration::new(&PLUGIN) }

impl Plugin for UnixPlugin {
    fn info(&self) -> PluginInfo {
        PluginInfo {
            name: NAME,
            version: env!("CARGO_PKG_VERSION"),
            priority: 100,
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
        Ok(Some(match run {
            RunKind::Dump => Box::new(dump::DumpState::default()) as PluginState,
            RunKind::Restore => Box::new(restore::RestoreState::default()) as PluginState,
        }))
    }
}

/// Whether `fd` is a unix socket: a `socket:[ino]` whose `SO_DOMAIN` is `AF_UNIX`.
fn is_unix(fd: &FdDesc) -> bool {
    use std::os::fd::AsFd;
    fd.stat.file_type() == libc::S_IFSOCK
        && fd.anon_inode_of("socket").is_some()
        && sys::get_int(fd.file.as_fd(), libc::SOL_SOCKET, libc::SO_DOMAIN) == Ok(libc::AF_UNIX)
}

impl FdHandler for UnixPlugin {
    fn fd_types(&self) -> &[FdTypes] {
        &[FdTypes::Unixsk]
    }

    fn claims(&self, fd: &FdDesc) -> bool {
        is_unix(fd)
    }

    fn dump_file(
        &self,
        ctx: &mut dyn DumpContext,
        fd: &FdDesc,
        id: u32,
    ) -> Result<FileEntry, PluginError> {
        dump::dump_socket(ctx, fd, id)
    }

    fn start_restore(
        &self,
        ctx: &mut dyn RestoreContext,
        entries: &[FileEntry],
    ) -> Result<Box<dyn FileRestorer>, PluginError> {
        Ok(Box::new(restore::UnixRestorer::start(ctx, entries)?))
    }
}

impl StageHooks for UnixPlugin {
    fn dump_stages(&self) -> &[DumpStage] {
        &[DumpStage::AfterDump]
    }

    fn dump_stage(&self, stage: DumpStage, ctx: &mut dyn DumpContext) -> Result<(), PluginError> {
        match stage {
            DumpStage::AfterDump => dump::check_awaited_peers(ctx),
            _ => Ok(()),
        }
    }

    fn restore_stages(&self) -> &[RestoreStage] {
        &[RestoreStage::AfterTasksExist]
    }

    fn restore_stage(
        &self,
        stage: RestoreStage,
        ctx: &mut dyn RestoreContext,
    ) -> Result<(), PluginError> {
        match stage {
            RestoreStage::AfterTasksExist => restore::after_tasks_exist(ctx),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests;
