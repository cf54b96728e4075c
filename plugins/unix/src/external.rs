//! Sockets whose peer is outside the dumped tree (CRIU's `--ext-unix-sk` and
//! `--external unix[INO]`).
//!
//! Dump, as CRIU: with `--ext-unix-sk` a datagram socket connected to a named socket
//! outside the tree is dumped; `--external unix[INO]` (or `--ext-unix-sk=INO,...`) lets
//! socket INO of the tree be dumped whatever its type and peer. The socket's entry keeps the
//! peer's inode; the peer gets CRIU's external entry once (`uflags` `USK_EXTERN`, type
//! `SOCK_DGRAM`, state `TCP_LISTEN`, its name, no peer).
//!
//! Restore (asked for again with `--ext-unix-sk` or `--external unix[INO]`, as CRIU asks): a
//! datagram socket is connected to the peer's name again once its queue is written; a
//! stream or seqpacket socket (and a datagram one whose peer had no name) comes back
//! disconnected, its queue intact: its peer lives outside and cannot be joined again, so
//! reads end after the queue and writes fail with `EPIPE`, as when a peer closes.

use std::collections::HashSet;

use criu_plugin_api::{DumpOptions, PluginError};
use criu_proto::images::{FdTypes, FileEntry, UnixSkEntry};

use crate::diag::{DiagSocket, STATE_LISTEN};

/// `uflags` bit of CRIU's entry for a socket outside the tree.
pub(crate) const USK_EXTERN: u32 = 1;

/// What the options allow for peers outside the tree.
#[derive(Debug, Default, Clone)]
pub(crate) struct ExtPolicy {
    /// `--ext-unix-sk`.
    pub any_dgram: bool,
    /// Inodes named by `--external unix[INO]`.
    pub inodes: HashSet<u32>,
}

impl ExtPolicy {
    /// The policy of `ext_unix_sk` and `external` (values that are not `unix[INO]` are
    /// another resource's).
    pub(crate) fn new(ext_unix_sk: bool, external: &[String]) -> Self {
        ExtPolicy {
            any_dgram: ext_unix_sk,
            inodes: external.iter().filter_map(|e| unix_ino(e)).collect(),
        }
    }

    /// The policy of a dump.
    pub(crate) fn of_dump(o: &DumpOptions) -> Self {
        Self::new(o.ext_unix_sk, &o.external)
    }

    /// Why socket `sk` may not be dumped with `peer` outside the tree; `None`: it may.
    pub(crate) fn refusal(&self, sk: &DiagSocket, peer: Option<&DiagSocket>) -> Option<String> {
        if self.inodes.contains(&sk.ino) {
            return None;
        }
        let with = "dump the whole tree, or name the socket with --external unix[INO]";
        if !self.any_dgram {
            return Some(format!(
                "a unix socket connected to a socket outside the dumped tree; {with} (or \
                 --ext-unix-sk for a datagram socket connected to a named one)"
            ));
        }
        let Some(peer) = peer else {
            return Some(format!("its peer is gone from sock_diag; {with}"));
        };
        if peer.sock_type as i32 != libc::SOCK_DGRAM {
            return Some(format!(
                "--ext-unix-sk covers datagram sockets only, not half of a stream connection \
                 (as CRIU); {with}"
            ));
        }
        if !peer.name.first().is_some_and(|&c| c == 0 || c == b'/') {
            return Some(format!(
                "its peer outside the tree has no name (or a relative one) to connect to again; {with}"
            ));
        }
        None
    }
}

/// The inode of an `--external` value `unix[INO]`.
pub(crate) fn unix_ino(value: &str) -> Option<u32> {
    value.strip_prefix("unix[")?.strip_suffix(']')?.parse().ok()
}

/// CRIU's `files.img` entry for `peer`, a socket outside the tree, under file id `id`.
pub(crate) fn extern_entry(id: u32, peer: &DiagSocket) -> FileEntry {
    FileEntry {
        r#type: FdTypes::Unixsk as i32,
        id,
        usk: Some(UnixSkEntry {
            id,
            ino: peer.ino,
            r#type: libc::SOCK_DGRAM as u32,
            state: STATE_LISTEN,
            uflags: USK_EXTERN,
            name: peer.name.clone(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Whether `u` is CRIU's entry of a socket outside the tree.
pub(crate) fn is_extern(u: &UnixSkEntry) -> bool {
    u.uflags & USK_EXTERN != 0
}

/// A socket of the images whose peer is outside the tree, made ready for the build: the
/// peer is dropped from its entry; the name to connect to again (datagram sockets whose
/// peer has a name) is returned. Refused without the restore options that allow it.
pub(crate) fn detach(
    u: &mut UnixSkEntry,
    peer: &UnixSkEntry,
    allowed: &ExtPolicy,
) -> Result<Option<Vec<u8>>, PluginError> {
    if !allowed.any_dgram && !allowed.inodes.contains(&u.ino) {
        return Err(PluginError::Unsupported {
            resource: format!(
                "unix socket id {} (inode {}) whose peer inode {} {} is outside the tree",
                u.id,
                u.ino,
                peer.ino,
                crate::paths::show(&peer.name)
            ),
            pid: 0,
            hint: format!(
                "dumped with --ext-unix-sk or --external unix[{}]: restore with the same option",
                u.ino
            ),
        });
    }
    u.peer = 0;
    let dgram = u.r#type == libc::SOCK_DGRAM as u32;
    Ok((dgram && !peer.name.is_empty()).then(|| peer.name.clone()))
}
