//! Built-in plugin for netlink sockets (`socket:[N]` of family `AF_NETLINK`), CRIU 4.x
//! format: a `files.img` NETLINKSK entry (`file_entry.nlsk`) per open file description.
//!
//! Dump reads the socket criu holds (the task's description, through `pidfd_getfd`):
//! protocol (`SO_PROTOCOL`), bound port id and the first 32 groups (`getsockname`), every
//! group (`NETLINK_LIST_MEMBERSHIPS`, so groups above 32 too), the peer of a connected socket
//! (`getpeername`), the generic socket options (`sk_opts_entry`) and the file flags and
//! owner. The netlink options CRIU does not record (`NETLINK_PKTINFO`, `NO_ENOBUFS`,
//! `BROADCAST_ERROR`, `LISTEN_ALL_NSID`, `CAP_ACK`, `EXT_ACK`, `GET_STRICT_CHK`) go to our
//! field `criu_rs_nl_options` (1001: bit N set = option number N on), present only when
//! one is on. As CRIU, a socket with queued messages is refused (nothing can queue a
//! kernel's reply or notification again), naming the pid, the fd, the protocol and the port
//! id; so are a socket of another network namespace and one with an eBPF filter attached
//! (a classic BPF filter, as udev monitors attach, is kept in `sk_opts_entry.so_filter`).
//!
//! Restore: `socket(AF_NETLINK, SOCK_RAW, protocol)`, `bind` to the dumped port id when it
//! is free (else the kernel picks one, as CRIU does: most programs never look), every group
//! joined (`NETLINK_ADD_MEMBERSHIP`, also above 32 and for a socket with groups but no port),
//! `connect` to the recorded peer, the options, the file flags.

#![deny(unsafe_code)]
#![warn(missing_docs)]

mod dump;
mod restore;
mod sys;
#[cfg(test)]
mod tests;

use criu_plugin_api::{
    API_VERSION, DumpContext, FdDesc, FdHandler, FileRestorer, Plugin, PluginError, PluginInfo,
    PluginRegistration, RestoreContext,
};
use criu_proto::images::{FdTypes, FileEntry};

/// The plugin's name.
pub const NAME: &str = "netlink";

/// Netlink protocols are numbered below this (the kernel's `MAX_LINKS`).
pub const MAX_PROTOCOLS: u32 = 32;

/// `netlink_sk_entry.state` of a connected socket (the kernel's `NETLINK_CONNECTED`).
pub const NETLINK_CONNECTED: u32 = 1;

/// The `SOL_NETLINK` options recorded in `criu_rs_nl_options`, by option number.
pub const NL_OPTIONS: [(i32, &str); 7] = [
    (libc::NETLINK_PKTINFO, "NETLINK_PKTINFO"),
    (libc::NETLINK_BROADCAST_ERROR, "NETLINK_BROADCAST_ERROR"),
    (libc::NETLINK_NO_ENOBUFS, "NETLINK_NO_ENOBUFS"),
    (libc::NETLINK_LISTEN_ALL_NSID, "NETLINK_LISTEN_ALL_NSID"),
    (libc::NETLINK_CAP_ACK, "NETLINK_CAP_ACK"),
    (libc::NETLINK_EXT_ACK, "NETLINK_EXT_ACK"),
    (libc::NETLINK_GET_STRICT_CHK, "NETLINK_GET_STRICT_CHK"),
];

/// The name of netlink protocol `p` (`NETLINK_ROUTE`...), or its number.
pub fn protocol_name(p: u32) -> String {
    let name = match p {
        0 => "NETLINK_ROUTE",
        2 => "NETLINK_USERSOCK",
        3 => "NETLINK_FIREWALL",
        4 => "NETLINK_SOCK_DIAG",
        5 => "NETLINK_NFLOG",
        6 => "NETLINK_XFRM",
        7 => "NETLINK_SELINUX",
        8 => "NETLINK_ISCSI",
        9 => "NETLINK_AUDIT",
        10 => "NETLINK_FIB_LOOKUP",
        11 => "NETLINK_CONNECTOR",
        12 => "NETLINK_NETFILTER",
        13 => "NETLINK_IP6_FW",
        14 => "NETLINK_DNRTMSG",
        15 => "NETLINK_KOBJECT_UEVENT",
        16 => "NETLINK_GENERIC",
        18 => "NETLINK_SCSITRANSPORT",
        19 => "NETLINK_ECRYPTFS",
        20 => "NETLINK_RDMA",
        21 => "NETLINK_CRYPTO",
        22 => "NETLINK_SMC",
        _ => return format!("netlink protocol {p}"),
    };
    name.to_string()
}

/// Netlink sockets (stateless: each restore gets its own restorer).
#[derive(Debug, Default)]
pub struct NetlinkPlugin;

/// The registered instance.
pub static PLUGIN: NetlinkPlugin = NetlinkPlugin;

inventory::submit! { PluginRegistration::new(&PLUGIN) }

impl Plugin for NetlinkPlugin {
    fn info(&self) -> PluginInfo {
        PluginInfo {
            name: NAME,
            version: env!("CARGO_PKG_VERSION"),
            priority: 130,
            api_version: API_VERSION,
        }
    }

    fn fd_handler(&self) -> Option<&dyn FdHandler> {
        Some(self)
    }
}

impl FdHandler for NetlinkPlugin {
    fn fd_types(&self) -> &[FdTypes] {
        &[FdTypes::Netlinksk]
    }

    fn claims(&self, fd: &FdDesc) -> bool {
        fd.link.starts_with("socket:")
            && sys::get_int(fd.file(), libc::SOL_SOCKET, libc::SO_DOMAIN)
                .is_ok_and(|d| d == libc::AF_NETLINK)
    }

    fn dump_file(
        &self,
        _ctx: &mut dyn DumpContext,
        fd: &FdDesc,
        id: u32,
    ) -> Result<FileEntry, PluginError> {
        dump::dump(fd, id)
    }

    fn start_restore(
        &self,
        _ctx: &mut dyn RestoreContext,
        entries: &[FileEntry],
    ) -> Result<Box<dyn FileRestorer>, PluginError> {
        Ok(Box::new(restore::NetlinkRestorer::new(entries)?))
    }
}
