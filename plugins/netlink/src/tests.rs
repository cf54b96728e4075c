//! Real netlink sockets of this process dumped and restored through the plugin, with the
//! in-memory context; bad entries refused naming the image and the entry.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use criu_plugin_api::testing::{MemoryImages, own_fd_desc};
use criu_plugin_api::{FdHandler, PluginError};
use criu_proto::images::{FdTypes, FileEntry, NetlinkSkEntry};
use nix::sys::socket::{NetlinkAddr, bind, connect, getpeername, getsockname};

use crate::{PLUGIN, dump, restore, sys};

const RTMGRP_LINK: u32 = 1;
const RTMGRP_IPV4_IFADDR: u32 = 0x10;
/// A route group above 32 (`RTNLGRP_BRVLAN`), only reachable by `NETLINK_ADD_MEMBERSHIP`.
const HIGH_GROUP: i32 = 33;

fn route_socket(groups: u32) -> OwnedFd {
    let s = sys::netlink_socket(libc::NETLINK_ROUTE).expect("socket");
    bind(s.as_raw_fd(), &NetlinkAddr::new(0, groups)).expect("bind");
    s
}

fn dump_one(s: &OwnedFd, id: u32) -> Result<FileEntry, PluginError> {
    let desc = own_fd_desc(s.as_fd()).expect("desc");
    assert!(PLUGIN.claims(&desc), "{}", desc.link);
    PLUGIN.dump_file(&mut MemoryImages::new(0), &desc, id)
}

fn restore_one(e: &FileEntry) -> Result<OwnedFd, PluginError> {
    let mut ctx = MemoryImages::new(0);
    let mut r = PLUGIN.start_restore(&mut ctx, std::slice::from_ref(e))?;
    r.open_file(&mut ctx, e)
}

fn port(s: &OwnedFd) -> u32 {
    getsockname::<NetlinkAddr>(s.as_raw_fd())
        .expect("name")
        .pid()
}

#[test]
fn a_route_socket_keeps_port_groups_and_options() {
    let s = route_socket(RTMGRP_LINK | RTMGRP_IPV4_IFADDR);
    sys::set_int(
        s.as_fd(),
        libc::SOL_NETLINK,
        libc::NETLINK_ADD_MEMBERSHIP,
        HIGH_GROUP,
    )
    .unwrap();
    sys::set_int(s.as_fd(), libc::SOL_NETLINK, libc::NETLINK_NO_ENOBUFS, 1).unwrap();
    sys::set_int(s.as_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, 300_000).unwrap();
    sys::set_int(s.as_fd(), libc::SOL_SOCKET, libc::SO_PASSCRED, 1).unwrap();
    nix::fcntl::fcntl(
        &s,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )
    .unwrap();
    let portid = port(&s);
    let e = dump_one(&s, 5).unwrap();
    assert_eq!(e.r#type, FdTypes::Netlinksk as i32);
    let ne = e.nlsk.clone().unwrap();
    assert_eq!((ne.id, ne.protocol, ne.portid, ne.state), (5, 0, portid, 0));
    assert_eq!(ne.groups, [RTMGRP_LINK | RTMGRP_IPV4_IFADDR, 1]);
    assert_eq!(ne.criu_rs_nl_options, Some(1 << libc::NETLINK_NO_ENOBUFS));
    assert_eq!(ne.opts.so_passcred, Some(true));
    let rcvbuf = ne.opts.so_rcvbuf;
    assert_eq!(rcvbuf, 600_000);
    drop(s);

    let r = restore_one(&e).unwrap();
    assert_eq!(port(&r), portid, "the port id, free again");
    assert_eq!(
        crate::dump::trim_groups(sys::memberships(r.as_fd()).unwrap()),
        [RTMGRP_LINK | RTMGRP_IPV4_IFADDR, 1]
    );
    let get = |lvl, opt| sys::get_int(r.as_fd(), lvl, opt).unwrap();
    assert_eq!(get(libc::SOL_NETLINK, libc::NETLINK_NO_ENOBUFS), 1);
    assert_eq!(get(libc::SOL_NETLINK, libc::NETLINK_PKTINFO), 0);
    assert_eq!(get(libc::SOL_SOCKET, libc::SO_RCVBUF) as u32, rcvbuf);
    assert_eq!(get(libc::SOL_SOCKET, libc::SO_PASSCRED), 1);
    let fl = nix::fcntl::fcntl(&r, nix::fcntl::FcntlArg::F_GETFL).unwrap();
    assert_ne!(fl & libc::O_NONBLOCK, 0);
    // The whole entry of the restored socket is the dumped one (but its inode).
    let again = dump_one(&r, 5).unwrap().nlsk.unwrap();
    assert_eq!(
        NetlinkSkEntry {
            ino: ne.ino,
            ..again
        },
        ne
    );
}

#[test]
fn a_taken_port_id_gets_a_new_one_and_a_peer_is_reconnected() {
    let peer = route_socket(0);
    let s = sys::netlink_socket(libc::NETLINK_GENERIC).unwrap();
    let u = sys::netlink_socket(libc::NETLINK_KOBJECT_UEVENT).unwrap();
    bind(u.as_raw_fd(), &NetlinkAddr::new(0, 1)).unwrap();
    connect(s.as_raw_fd(), &NetlinkAddr::new(port(&peer), 0)).unwrap();
    let e = dump_one(&s, 7).unwrap();
    let ne = e.nlsk.clone().unwrap();
    assert_eq!((ne.protocol, ne.state, ne.dst_portid), (16, 1, port(&peer)));
    assert_ne!(ne.portid, 0, "connect binds");
    // Still open: its port id is taken.
    let r = restore_one(&e).unwrap();
    assert_ne!(port(&r), ne.portid);
    let p: NetlinkAddr = getpeername(r.as_raw_fd()).unwrap();
    assert_eq!(p.pid(), port(&peer));
    // A uevent listener: protocol 15, group 1.
    let ue = dump_one(&u, 8).unwrap().nlsk.unwrap();
    assert_eq!((ue.protocol, ue.groups.as_slice()), (15, &[1u32][..]));
}

#[test]
fn a_socket_with_queued_messages_is_refused_naming_it() {
    let s = route_socket(0);
    // An RTM_GETLINK dump request: the kernel queues the replies.
    let mut req = [0u8; 32];
    req[0..4].copy_from_slice(&32u32.to_ne_bytes());
    req[4..6].copy_from_slice(&libc::RTM_GETLINK.to_ne_bytes());
    req[6..8].copy_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16).to_ne_bytes());
    req[16] = libc::AF_UNSPEC as u8;
    nix::sys::socket::send(s.as_raw_fd(), &req, nix::sys::socket::MsgFlags::empty()).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
    let err = dump_one(&s, 9).unwrap_err().to_string();
    assert!(
        err.contains("NETLINK_ROUTE")
            && err.contains(&format!("port id {}", port(&s)))
            && err.contains("queued"),
        "{err}"
    );
    assert!(
        err.contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
}

#[test]
fn bad_entries_name_the_image_and_the_entry() {
    let missing = FileEntry {
        r#type: FdTypes::Netlinksk as i32,
        id: 12,
        ..Default::default()
    };
    let mut ctx = MemoryImages::new(0);
    let err = PLUGIN
        .start_restore(&mut ctx, std::slice::from_ref(&missing))
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("files.img") && err.contains("file id 12") && err.contains("nlsk"),
        "{err}"
    );
    let unknown = FileEntry {
        nlsk: Some(NetlinkSkEntry {
            id: 12,
            protocol: 77,
            ..Default::default()
        }),
        ..missing
    };
    let err = PLUGIN
        .start_restore(&mut ctx, std::slice::from_ref(&unknown))
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("files.img") && err.contains("file id 12") && err.contains("protocol 77"),
        "{err}"
    );
}

#[test]
fn group_words_and_masks() {
    assert_eq!(dump::trim_groups(vec![0x11, 0, 0]), [0x11]);
    assert!(dump::trim_groups(vec![0, 0]).is_empty());
    assert_eq!(dump::group_of_mask(0), 0);
    assert_eq!(dump::group_of_mask(1 << 4), 5);
    let g: Vec<u32> = restore::group_numbers(&[0x11, 1]).collect();
    assert_eq!(g, [1, 5, 33]);
}

proptest::proptest! {
    /// Group words → group numbers (what restore joins) → words again: the same groups, and
    /// the entry's words carry no trailing empty word.
    #[test]
    fn group_numbers_round_trip(words in proptest::collection::vec(proptest::prelude::any::<u32>(), 0..6)) {
        let mut back = vec![0u32; words.len()];
        for g in restore::group_numbers(&words) {
            back[((g - 1) / 32) as usize] |= 1 << ((g - 1) % 32);
        }
        proptest::prop_assert_eq!(dump::trim_groups(back), dump::trim_groups(words.clone()));
        let trimmed = dump::trim_groups(words);
        proptest::prop_assert!(trimmed.last() != Some(&0));
    }
}

#[test]
fn a_classic_bpf_filter_comes_back() {
    let s = sys::netlink_socket(libc::NETLINK_KOBJECT_UEVENT).unwrap();
    bind(s.as_raw_fd(), &NetlinkAddr::new(0, 1)).unwrap();
    // ld [0]; jeq #0x1234, accept, drop: two paths, so the words differ.
    let prog: [u64; 4] = [
        u64::from_ne_bytes([0x20, 0, 0, 0, 0, 0, 0, 0]),
        u64::from_ne_bytes([0x15, 0, 0, 1, 0x34, 0x12, 0, 0]),
        u64::from_ne_bytes([0x06, 0, 0, 0, 0xff, 0xff, 0, 0]),
        u64::from_ne_bytes([0x06, 0, 0, 0, 0, 0, 0, 0]),
    ];
    sys::attach_filter(s.as_fd(), &prog).unwrap();
    let e = dump_one(&s, 3).unwrap();
    assert_eq!(e.nlsk.as_ref().unwrap().opts.so_filter, prog);
    drop(s);
    let r = restore_one(&e).unwrap();
    assert_eq!(sys::filter_len(r.as_fd()).unwrap(), 4);
    assert_eq!(sys::get_filter(r.as_fd(), 4).unwrap(), prog);
}
