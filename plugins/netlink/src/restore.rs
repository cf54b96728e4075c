//! A `netlink_sk_entry` back into a socket: protocol, port id, groups, peer, options.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use criu_plugin_api::{FileRestorer, PluginError, RestoreContext};
use criu_proto::images::{FdTypes, FileEntry, NetlinkSkEntry};
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::socket::{NetlinkAddr, bind, connect};

use crate::{MAX_PROTOCOLS, NETLINK_CONNECTED, NL_OPTIONS, protocol_name, sys};

fn bad(id: u32, reason: String) -> PluginError {
    PluginError::bad_image(
        "files.img",
        format!("NETLINKSK entry of file id {id}: {reason}"),
    )
}

/// Checks one NETLINKSK entry of `files.img` and returns its socket part.
pub fn validate(entry: &FileEntry) -> Result<&NetlinkSkEntry, PluginError> {
    let ne = entry
        .nlsk
        .as_ref()
        .ok_or_else(|| bad(entry.id, "no nlsk (netlink_sk_entry) in it".into()))?;
    if ne.id != entry.id {
        return Err(bad(entry.id, format!("its nlsk says id {}", ne.id)));
    }
    if ne.protocol >= MAX_PROTOCOLS {
        return Err(bad(
            entry.id,
            format!(
                "protocol {} is not a netlink protocol (0-{})",
                ne.protocol,
                MAX_PROTOCOLS - 1
            ),
        ));
    }
    if ne.state != 0 && ne.state != NETLINK_CONNECTED {
        return Err(bad(entry.id, format!("unknown state {}", ne.state)));
    }
    if ne.dst_group > 32 {
        return Err(bad(
            entry.id,
            format!("peer group {} above 32", ne.dst_group),
        ));
    }
    Ok(ne)
}

/// The netlink sockets of one restore, checked before any is opened.
#[derive(Debug)]
pub struct NetlinkRestorer {
    entries: HashMap<u32, NetlinkSkEntry>,
}

impl NetlinkRestorer {
    /// Checks every NETLINKSK entry of `entries`; the first bad one fails the restore.
    pub fn new(entries: &[FileEntry]) -> Result<Self, PluginError> {
        let mut map = HashMap::new();
        for e in entries
            .iter()
            .filter(|e| e.r#type == FdTypes::Netlinksk as i32)
        {
            map.insert(e.id, validate(e)?.clone());
        }
        Ok(NetlinkRestorer { entries: map })
    }
}

/// The group numbers (1-based) set in `words`.
pub fn group_numbers(words: &[u32]) -> impl Iterator<Item = u32> + '_ {
    words.iter().enumerate().flat_map(|(i, w)| {
        (0..32)
            .filter(move |b| w & (1 << b) != 0)
            .map(move |b| i as u32 * 32 + b + 1)
    })
}

fn restore_err<'a>(
    ne: &'a NetlinkSkEntry,
    op: &'static str,
) -> impl Fn(std::io::Error) -> PluginError + 'a {
    move |source| PluginError::Restore {
        id: ne.id,
        what: format!(
            "{} socket, port id {}",
            protocol_name(ne.protocol),
            ne.portid
        ),
        op,
        source,
    }
}

/// Binds to the dumped port id, or lets the kernel pick one when it is taken (as CRIU).
fn bind_port(s: BorrowedFd<'_>, ne: &NetlinkSkEntry) -> Result<(), PluginError> {
    if ne.portid == 0 {
        return Ok(());
    }
    match bind(s.as_raw_fd(), &NetlinkAddr::new(ne.portid, 0)) {
        Ok(()) => Ok(()),
        Err(Errno::EADDRINUSE) => {
            tracing::warn!(
                id = ne.id,
                portid = ne.portid,
                "netlink port id taken, the socket gets a new one"
            );
            bind(s.as_raw_fd(), &NetlinkAddr::new(0, 0))
                .map_err(|e| restore_err(ne, "bind (any port id)")(e.into()))
        }
        Err(e) => Err(restore_err(ne, "bind")(e.into())),
    }
}

/// Opens the socket `ne` describes.
pub fn open(ne: &NetlinkSkEntry, file_flags: u32) -> Result<OwnedFd, PluginError> {
    let s = sys::netlink_socket(ne.protocol as i32).map_err(restore_err(ne, "socket"))?;
    let f = s.as_fd();
    bind_port(f, ne)?;
    for g in group_numbers(&ne.groups) {
        sys::set_int(f, libc::SOL_NETLINK, libc::NETLINK_ADD_MEMBERSHIP, g as i32)
            .map_err(restore_err(ne, "setsockopt(NETLINK_ADD_MEMBERSHIP)"))?;
    }
    if ne.state == NETLINK_CONNECTED {
        let mask = if ne.dst_group == 0 {
            0
        } else {
            1 << (ne.dst_group - 1)
        };
        connect(f.as_raw_fd(), &NetlinkAddr::new(ne.dst_portid, mask))
            .map_err(|e| restore_err(ne, "connect")(e.into()))?;
    }
    let bits = ne.criu_rs_nl_options.unwrap_or(0);
    for (opt, _) in NL_OPTIONS {
        if bits & (1 << opt) != 0 {
            sys::set_int(f, libc::SOL_NETLINK, opt, 1)
                .map_err(restore_err(ne, "setsockopt(SOL_NETLINK)"))?;
        }
    }
    criu_sk_common::restore(f, &ne.opts).map_err(|e| restore_err(ne, e.opt)(e.source.into()))?;
    // The classic BPF filter is ours to set (sk-common leaves it to the caller).
    if !ne.opts.so_filter.is_empty() {
        sys::attach_filter(f, &ne.opts.so_filter)
            .map_err(restore_err(ne, "setsockopt(SO_ATTACH_FILTER)"))?;
    }
    let fl = OFlag::from_bits_truncate(file_flags as i32);
    fcntl(f, FcntlArg::F_SETFL(fl)).map_err(|e| restore_err(ne, "fcntl(F_SETFL)")(e.into()))?;
    Ok(s)
}

impl FileRestorer for NetlinkRestorer {
    fn open_file(
        &mut self,
        _ctx: &mut dyn RestoreContext,
        entry: &FileEntry,
    ) -> Result<OwnedFd, PluginError> {
        let ne = match self.entries.get(&entry.id) {
            Some(ne) => ne,
            None => validate(entry)?,
        };
        open(ne, ne.flags)
    }
}
