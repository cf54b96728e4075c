//! The policy for peers outside the tree (`--ext-unix-sk`, `--external unix[INO]`) and
//! CRIU's external entry.

use criu_proto::images::UnixSkEntry;

use crate::diag::{DiagSocket, STATE_LISTEN};
use crate::external::{self, ExtPolicy, USK_EXTERN};

fn sock(ino: u32, ty: i32, name: &[u8]) -> DiagSocket {
    DiagSocket {
        ino,
        sock_type: ty as u32,
        name: name.to_vec(),
        ..Default::default()
    }
}

#[test]
fn external_values_name_unix_inodes() {
    assert_eq!(external::unix_ino("unix[42]"), Some(42));
    for other in [
        "unix[]",
        "unix[x]",
        "unix[1",
        "tty[1:2]",
        "unix42",
        "mnt[unix[1]]",
    ] {
        assert_eq!(external::unix_ino(other), None, "{other}");
    }
    let p = ExtPolicy::new(false, &["tty[1:2]".into(), "unix[7]".into()]);
    assert!(!p.any_dgram);
    assert_eq!(p.inodes.into_iter().collect::<Vec<_>>(), [7]);
}

#[test]
fn ext_unix_sk_covers_named_datagram_peers_only() {
    let me = sock(10, libc::SOCK_DGRAM, b"");
    let path = sock(20, libc::SOCK_DGRAM, b"/run/log");
    let abs = sock(21, libc::SOCK_DGRAM, b"\0abstract");
    let rel = sock(22, libc::SOCK_DGRAM, b"log");
    let unnamed = sock(23, libc::SOCK_DGRAM, b"");
    let stream = sock(24, libc::SOCK_STREAM, b"/run/s");
    let none = ExtPolicy::default();
    assert!(
        none.refusal(&me, Some(&path))
            .unwrap()
            .contains("--ext-unix-sk")
    );
    let x = ExtPolicy::new(true, &[]);
    assert_eq!(x.refusal(&me, Some(&path)), None);
    assert_eq!(x.refusal(&me, Some(&abs)), None);
    assert!(x.refusal(&me, Some(&rel)).unwrap().contains("no name"));
    assert!(x.refusal(&me, Some(&unnamed)).unwrap().contains("no name"));
    assert!(
        x.refusal(&me, Some(&stream))
            .unwrap()
            .contains("stream connection")
    );
    assert!(x.refusal(&me, None).is_some());
    // Named by inode: any peer.
    let named = ExtPolicy::new(false, &["unix[10]".into()]);
    for peer in [&stream, &unnamed, &rel] {
        assert_eq!(named.refusal(&me, Some(peer)), None);
    }
    assert_eq!(named.refusal(&me, None), None);
}

#[test]
fn extern_entry_is_criu_s_and_restore_needs_the_option() {
    let e = external::extern_entry(5, &sock(20, libc::SOCK_STREAM, b"/run/s"));
    let peer = e.usk.clone().expect("usk");
    assert_eq!((e.id, peer.id, peer.ino, peer.peer), (5, 5, 20, 0));
    assert_eq!(peer.r#type, libc::SOCK_DGRAM as u32);
    assert_eq!((peer.state, peer.uflags), (STATE_LISTEN, USK_EXTERN));
    assert!(external::is_extern(&peer));

    let dgram = UnixSkEntry {
        id: 1,
        ino: 10,
        peer: 20,
        r#type: libc::SOCK_DGRAM as u32,
        ..Default::default()
    };
    let mut u = dgram.clone();
    let err = external::detach(&mut u, &peer, &ExtPolicy::default()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("inode 10") && msg.contains("--ext-unix-sk"),
        "{msg}"
    );
    assert_eq!(u.peer, 20, "left as it was");
    let name = external::detach(&mut u, &peer, &ExtPolicy::new(true, &[])).unwrap();
    assert_eq!((name, u.peer), (Some(b"/run/s".to_vec()), 0));
    let mut s = UnixSkEntry {
        r#type: libc::SOCK_STREAM as u32,
        ..dgram
    };
    let by_ino = ExtPolicy::new(false, &["unix[10]".into()]);
    assert_eq!(external::detach(&mut s, &peer, &by_ino).unwrap(), None);
    assert_eq!(s.peer, 0, "a stream comes back disconnected");
}
