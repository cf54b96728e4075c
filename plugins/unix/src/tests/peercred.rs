//! The recorded peers and the raw addresses the restore connects to from a task.

use criu_proto::images::UnixSkEntry;
use proptest::prelude::*;

use crate::peercred::{Cred, connector_of, peer_of};
use crate::remote::sockaddr;

#[test]
fn a_peer_is_recorded_only_whole() {
    let mut u = UnixSkEntry {
        criu_rs_peer_pid: Some(42),
        criu_rs_peer_uid: Some(1001),
        ..Default::default()
    };
    assert_eq!(peer_of(&u), None, "no gid: no peer");
    u.criu_rs_peer_gid = Some(2001);
    assert_eq!(
        peer_of(&u),
        Some(Cred {
            pid: 42,
            uid: 1001,
            gid: 2001
        })
    );
    assert_eq!(connector_of(&u), None);
    u.criu_rs_conn_pid = Some(7);
    u.criu_rs_conn_uid = Some(0);
    u.criu_rs_conn_gid = Some(0);
    assert_eq!(connector_of(&u).map(|c| c.pid), Some(7));
}

#[test]
fn sockaddr_of_path_and_abstract_names() {
    let fam = (libc::AF_UNIX as u16).to_ne_bytes();
    assert_eq!(sockaddr(b"/a"), Some([&fam[..], b"/a\0"].concat()));
    assert_eq!(sockaddr(b"\0ab"), Some([&fam[..], b"\0ab"].concat()));
    assert_eq!(sockaddr(b""), None);
    assert!(sockaddr(&[b'x'; 107]).is_some());
    assert_eq!(sockaddr(&[b'x'; 108]), None, "no room for the NUL");
    let mut abs = vec![0u8];
    abs.extend([b'y'; 107]);
    assert!(sockaddr(&abs).is_some(), "an abstract name fills sun_path");
}

proptest! {
    /// The address a task connects to names the same socket `connect` in criu would.
    #[test]
    fn sockaddr_matches_nix(name in proptest::collection::vec(1u8..=255, 1..100), abs: bool) {
        let name: Vec<u8> = if abs { [&[0u8][..], &name].concat() } else { name };
        let raw = sockaddr(&name).expect("fits");
        let ours = crate::queue::addr_of(&name).expect("nix takes it");
        let nix_bytes = if abs {
            [&(libc::AF_UNIX as u16).to_ne_bytes()[..], &[0u8], ours.as_abstract().unwrap()].concat()
        } else {
            use std::os::unix::ffi::OsStrExt;
            [&(libc::AF_UNIX as u16).to_ne_bytes()[..], ours.path().unwrap().as_os_str().as_bytes(), &[0u8]].concat()
        };
        prop_assert_eq!(raw, nix_bytes);
    }
}
