//! One netlink socket into its `netlink_sk_entry`, read from criu's duplicate of it.

use std::os::fd::{AsRawFd, BorrowedFd};

use criu_plugin_api::{FdDesc, PluginError};
use criu_proto::images::{FdTypes, FileEntry, NetlinkSkEntry};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{NetlinkAddr, getpeername, getsockname};

use crate::{NETLINK_CONNECTED, NL_OPTIONS, protocol_name, sys};

fn fd_err<'a>(fd: &'a FdDesc, op: &'static str) -> impl Fn(std::io::Error) -> PluginError + 'a {
    move |source| PluginError::Fd {
        pid: fd.pid,
        fd: fd.fd,
        link: fd.link.clone(),
        op,
        source,
    }
}

fn refuse(fd: &FdDesc, what: String, hint: &str) -> PluginError {
    PluginError::Unsupported {
        resource: format!("fd {} ({}, {what})", fd.fd, fd.link),
        pid: fd.pid,
        hint: hint.into(),
    }
}

/// The groups as `netlink_sk_entry.groups` words, trailing empty words dropped (CRIU
/// writes no word for a socket in no group).
pub fn trim_groups(mut words: Vec<u32>) -> Vec<u32> {
    while words.last() == Some(&0) {
        words.pop();
    }
    words
}

/// `dst_group` from the peer's group mask (`getpeername` gives `1 << (group - 1)`).
pub fn group_of_mask(mask: u32) -> u32 {
    if mask == 0 {
        0
    } else {
        mask.trailing_zeros() + 1
    }
}

/// The `SOL_NETLINK` options that are on, as `criu_rs_nl_options` bits.
fn nl_options(f: BorrowedFd<'_>) -> Result<u32, std::io::Error> {
    let mut bits = 0;
    for (opt, _) in NL_OPTIONS {
        if sys::get_int(f, libc::SOL_NETLINK, opt)? != 0 {
            bits |= 1 << opt;
        }
    }
    Ok(bits)
}

/// Whether `f` has something to read (a queued message).
fn has_data(f: BorrowedFd<'_>) -> Result<bool, nix::errno::Errno> {
    let mut fds = [PollFd::new(f, PollFlags::POLLIN)];
    poll(&mut fds, PollTimeout::ZERO)?;
    Ok(fds[0]
        .revents()
        .is_some_and(|r| r.contains(PollFlags::POLLIN)))
}

/// The entry of netlink socket `fd`, under file id `id`.
pub fn dump(fd: &FdDesc, id: u32) -> Result<FileEntry, PluginError> {
    let f = fd.file();
    let protocol = sys::get_int(f, libc::SOL_SOCKET, libc::SO_PROTOCOL)
        .map_err(fd_err(fd, "getsockopt(SO_PROTOCOL)"))? as u32;
    let name = protocol_name(protocol);
    let own_ns =
        std::fs::metadata("/proc/self/ns/net").map_err(fd_err(fd, "stat /proc/self/ns/net"))?;
    let sk_ns = sys::netns_inode(f).map_err(fd_err(fd, "ioctl(SIOCGSKNS)"))?;
    if sk_ns != std::os::unix::fs::MetadataExt::ino(&own_ns) {
        return Err(refuse(
            fd,
            format!("{name} of network namespace {sk_ns}"),
            "sockets of another network namespace than criu's are not dumped yet; run criu \
             in the task's network namespace",
        ));
    }
    let local: NetlinkAddr =
        getsockname(f.as_raw_fd()).map_err(|e| fd_err(fd, "getsockname")(e.into()))?;
    let portid = local.pid();
    if has_data(f).map_err(|e| fd_err(fd, "poll")(e.into()))? {
        return Err(refuse(
            fd,
            format!("{name}, port id {portid}"),
            "messages are queued on it (replies or notifications the task has not read yet), \
             and no one but the kernel can queue them again (CRIU refuses them too): dump when \
             the task has read them",
        ));
    }
    let filter = match sys::filter_len(f) {
        Ok(n) => n,
        // An eBPF program (SO_ATTACH_BPF) has no classic form to read back.
        Err(e) if e.raw_os_error() == Some(libc::EACCES) => {
            return Err(refuse(
                fd,
                format!("{name}, port id {portid}"),
                "an eBPF socket filter (SO_ATTACH_BPF) is attached, which cannot be read back",
            ));
        }
        Err(e) => return Err(fd_err(fd, "getsockopt(SO_GET_FILTER)")(e)),
    };
    let groups = trim_groups(
        sys::memberships(f).map_err(fd_err(fd, "getsockopt(NETLINK_LIST_MEMBERSHIPS)"))?,
    );
    let peer: NetlinkAddr =
        getpeername(f.as_raw_fd()).map_err(|e| fd_err(fd, "getpeername")(e.into()))?;
    let (dst_portid, dst_group) = (peer.pid(), group_of_mask(peer.groups()));
    // The peer is all the kernel tells apart a connected socket by (see the README).
    let state = if dst_portid != 0 || dst_group != 0 {
        NETLINK_CONNECTED
    } else {
        0
    };
    let nl = nl_options(f).map_err(fd_err(fd, "getsockopt(SOL_NETLINK)"))?;
    let mut opts = criu_sk_common::dump(f).map_err(|e| PluginError::Fd {
        pid: fd.pid,
        fd: fd.fd,
        link: fd.link.clone(),
        op: e.opt,
        source: e.source.into(),
    })?;
    if filter != 0 {
        opts.so_filter =
            sys::get_filter(f, filter).map_err(fd_err(fd, "getsockopt(SO_GET_FILTER)"))?;
    }
    tracing::debug!(pid = fd.pid, fd = fd.fd, id, protocol = %name, portid, ?groups, dst_portid, dst_group, "netlink socket");
    let ne = NetlinkSkEntry {
        id,
        ino: fd.stat.ino as u32,
        protocol,
        state,
        flags: fd.fdinfo.file_flags(),
        portid,
        groups,
        dst_portid,
        dst_group,
        fown: fd.owner.to_entry(),
        opts,
        ns_id: None,
        criu_rs_nl_options: (nl != 0).then_some(nl),
    };
    Ok(FileEntry {
        r#type: FdTypes::Netlinksk as i32,
        id,
        nlsk: Some(ne),
        ..Default::default()
    })
}
