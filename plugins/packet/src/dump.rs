//! One packet socket into its `packet_sock_entry`, from `sock_diag` ([`crate::diag`]) and
//! the generic socket options (`criu_sk_common`), as CRIU's `dump_one_packet_fd`. A
//! membership added `n` times is written `n` times (the restore adds it as often; CRIU
//! refuses it). Frames waiting in the socket's queue or ring are dropped, as CRIU drops them.

use std::collections::hash_map::Entry;
use std::os::fd::AsFd;

use criu_plugin_api::{DumpContext, FdDesc, PluginError};
use criu_proto::images::{FdTypes, FileEntry, PacketMclist, PacketSockEntry};
use nix::sys::stat::fstat;

use crate::diag::{self, Desc, PDI_AUXDATA, PDI_LOSS, PDI_ORIGDEV, PDI_VNETHDR};
use crate::{DumpState, sys};

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

fn refuse(fd: &FdDesc, what: String, hint: &str) -> PluginError {
    PluginError::Unsupported {
        resource: format!("fd {} ({}, {what})", fd.fd, fd.link),
        pid: fd.pid,
        hint: hint.into(),
    }
}

/// The packet sockets of network namespace `ns_ino` (an fd of it: `ns`), one query per
/// namespace per dump.
pub(crate) fn sockets_of<'s>(
    state: &'s mut DumpState,
    ns: std::os::fd::BorrowedFd<'_>,
    ns_ino: u64,
) -> Result<&'s std::collections::HashMap<u32, Desc>, diag::DiagError> {
    Ok(match state.sockets.entry(ns_ino) {
        Entry::Occupied(e) => e.into_mut(),
        Entry::Vacant(e) => e.insert(diag::query(ns)?),
    })
}

/// The entry of packet socket `fd` under file id `id`.
pub fn dump(ctx: &mut dyn DumpContext, fd: &FdDesc, id: u32) -> Result<FileEntry, PluginError> {
    let f = fd.file();
    let diag_err = |e: diag::DiagError| {
        refuse(
            fd,
            format!("packet socket: {e}"),
            "packet sockets are read with sock_diag (NETLINK_SOCK_DIAG, CONFIG_PACKET_DIAG), \
             as CRIU does",
        )
    };
    let ns = sys::skns(f).map_err(fd_err(fd, "ioctl(SIOCGSKNS)"))?;
    let ns_ino = fstat(ns.as_fd())
        .map_err(fd_err(fd, "fstat(netns)"))?
        .st_ino;
    let ino = fd.stat.ino as u32;
    let state = ctx.state::<DumpState>()?;
    let d = sockets_of(state, ns.as_fd(), ns_ino)
        .map_err(diag_err)?
        .get(&ino)
        .cloned()
        .ok_or_else(|| {
            refuse(
                fd,
                "packet socket not listed by sock_diag".into(),
                "the socket is in no packet socket list of its network namespace",
            )
        })?;
    state.files.insert(ino, (id, fd.pid));
    let mut opts = criu_sk_common::dump(f).map_err(|e| fd_err(fd, e.opt)(e.source))?;
    opts.so_filter =
        criu_sk_common::filter::dump_filter(f).map_err(|e| fd_err(fd, e.opt)(e.source))?;
    let mclist = d
        .mclist
        .iter()
        .flat_map(|m| {
            let one = PacketMclist {
                index: m.index,
                r#type: u32::from(m.kind),
                addr: m.addr.clone(),
            };
            std::iter::repeat_n(one, m.count.max(1) as usize)
        })
        .collect();
    let flag = |bit| d.info.flags & bit != 0;
    let psk = PacketSockEntry {
        id,
        r#type: u32::from(d.sock_type),
        // socket() takes it in network byte order, as CRIU stores it.
        protocol: u32::from(d.num.to_be()),
        flags: fd.fdinfo.file_flags(),
        ifindex: d.info.ifindex,
        fown: fd.owner.to_entry(),
        opts,
        version: d.info.version,
        reserve: d.info.reserve,
        aux_data: flag(PDI_AUXDATA),
        orig_dev: flag(PDI_ORIGDEV),
        vnet_hdr: flag(PDI_VNETHDR),
        loss: flag(PDI_LOSS),
        timestamp: d.info.tstamp,
        copy_thresh: d.info.copy_thresh,
        mclist,
        fanout: d.fanout,
        rx_ring: d.rx.as_ref().map(crate::dump_ring),
        tx_ring: d.tx.as_ref().map(crate::dump_ring),
        ns_id: None,
    };
    tracing::debug!(pid = fd.pid, fd = fd.fd, id, ino, "packet socket");
    Ok(FileEntry {
        r#type: FdTypes::Packetsk as i32,
        id,
        psk: Some(psk),
        ..Default::default()
    })
}
