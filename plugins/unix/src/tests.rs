//! Parsers and codecs of the unix plugin, and its queue code on real sockets of the test
//! process (no root needed).

use std::collections::{HashMap, HashSet};
use std::os::fd::AsFd;

use criu_plugin_api::frame_entries;
use criu_proto::images::{FdTypes, FileEntry, ScmEntry, SkPacketEntry, UnixSkEntry};
use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockType, recv, socketpair};
use proptest::prelude::*;
use prost::Message;

use crate::diag::{self, DiagSocket};
use crate::queue::{self, Packet};
use crate::restore::{collect, read_queues};

fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
    let mut a = Vec::new();
    a.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
    a.extend_from_slice(&kind.to_ne_bytes());
    a.extend_from_slice(value);
    while a.len() % 4 != 0 {
        a.push(0);
    }
    a
}

fn diag_msg(ino: u32, ty: u8, state: u8, attrs: &[Vec<u8>]) -> Vec<u8> {
    let mut m = vec![libc::AF_UNIX as u8, ty, state, 0];
    m.extend_from_slice(&ino.to_ne_bytes());
    m.extend_from_slice(&[0; 8]);
    for a in attrs {
        m.extend_from_slice(a);
    }
    m
}

fn nlmsg(kind: u16, payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&((16 + payload.len()) as u32).to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(&[0; 10]);
    m.extend_from_slice(payload);
    m
}

#[test]
fn diag_request_asks_for_every_unix_socket() {
    let r = diag::request();
    assert_eq!(r.len(), 40);
    assert_eq!(u32::from_ne_bytes(r[0..4].try_into().unwrap()), 40);
    assert_eq!(r[16], libc::AF_UNIX as u8);
    assert_eq!(&r[20..24], &u32::MAX.to_ne_bytes(), "every state");
}

#[test]
fn diag_socket_attributes_parse() {
    let mut rq = 7u32.to_ne_bytes().to_vec();
    rq.extend_from_slice(&128u32.to_ne_bytes());
    let mut icons = 11u32.to_ne_bytes().to_vec();
    icons.extend_from_slice(&12u32.to_ne_bytes());
    let mut vfs = 99u32.to_ne_bytes().to_vec();
    vfs.extend_from_slice(&3u32.to_ne_bytes());
    let m = diag_msg(
        42,
        libc::SOCK_STREAM as u8,
        10,
        &[
            attr(0, b"/run/x.sock\0"),
            attr(1, &vfs),
            attr(2, &0u32.to_ne_bytes()),
            attr(3, &icons),
            attr(4, &rq),
            attr(6, &[3]),
        ],
    );
    let sk = diag::parse_socket(&m).unwrap();
    assert_eq!(
        sk,
        DiagSocket {
            ino: 42,
            sock_type: libc::SOCK_STREAM as u32,
            state: 10,
            name: b"/run/x.sock".to_vec(),
            vfs: Some((99, 3)),
            peer: 0,
            icons: vec![11, 12],
            rqueue: 7,
            wqueue: 128,
            shutdown: 3,
        }
    );
    // An abstract name keeps every byte, NULs included.
    let m = diag_msg(5, 2, 7, &[attr(0, b"\0ab\0c")]);
    assert_eq!(diag::parse_socket(&m).unwrap().name, b"\0ab\0c");
}

#[test]
fn diag_malformed_answers_are_errors() {
    assert!(diag::parse_socket(&[1, 2, 3]).is_err());
    let mut m = diag_msg(5, 2, 7, &[]);
    m.extend_from_slice(&[200, 0, 0, 0]); // an attribute longer than the message
    assert!(diag::parse_socket(&m).is_err());
    let mut m = diag_msg(5, 2, 7, &[]);
    m.extend_from_slice(&attr(4, &[1, 2]));
    assert!(diag::parse_socket(&m).is_err(), "short RQLEN");

    let mut out = HashMap::new();
    let mut batch = nlmsg(20, &diag_msg(9, 1, 1, &[]));
    batch.extend_from_slice(&nlmsg(3, &[0; 4]));
    assert!(
        diag::parse_batch(&batch, &mut out).unwrap(),
        "NLMSG_DONE ends it"
    );
    assert!(out.contains_key(&9));
    let err = nlmsg(2, &(-libc::EPERM).to_ne_bytes());
    assert!(diag::parse_batch(&err, &mut out).is_err());
    assert!(diag::parse_batch(&[16, 0, 0, 0, 20, 0], &mut out).is_err());
}

fn usk(id: u32, ino: u32, peer: u32) -> FileEntry {
    FileEntry {
        r#type: FdTypes::Unixsk as i32,
        id,
        usk: Some(UnixSkEntry {
            id,
            ino,
            peer,
            r#type: libc::SOCK_STREAM as u32,
            state: 1,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn err_text(e: criu_plugin_api::PluginError) -> String {
    e.to_string()
}

#[test]
fn collect_checks_ids_inodes_and_peers() {
    assert_eq!(collect(&[usk(1, 10, 11), usk(2, 11, 10)]).unwrap().len(), 2);
    let e = err_text(collect(&[usk(1, 10, 0), usk(2, 10, 0)]).unwrap_err());
    assert!(
        e.contains("files.img") && e.contains("inode 10 is referenced twice"),
        "{e}"
    );
    let e = err_text(collect(&[usk(1, 10, 0), usk(1, 12, 0)]).unwrap_err());
    assert!(e.contains("id 1 appears twice"), "{e}");
    let e = err_text(collect(&[usk(1, 10, 77)]).unwrap_err());
    assert!(
        e.contains("entry id 1") && e.contains("peer inode 77"),
        "{e}"
    );
    let mut no_usk = usk(3, 13, 0);
    no_usk.usk = None;
    assert!(err_text(collect(&[no_usk]).unwrap_err()).contains("without usk"));
    let mut other = usk(4, 14, 0);
    other.usk.as_mut().unwrap().id = 5;
    assert!(err_text(collect(&[other]).unwrap_err()).contains("says id 5"));
}

fn queue_image(entries: &[(SkPacketEntry, Vec<u8>)]) -> Vec<u8> {
    let encoded: Vec<(Vec<u8>, &[u8])> = entries
        .iter()
        .map(|(e, d)| (e.encode_to_vec(), d.as_slice()))
        .collect();
    frame_entries(encoded.iter().map(|(e, d)| (e.as_slice(), *d)))
}

fn packet(id_for: u32, data: &[u8], addr: Option<&[u8]>) -> (SkPacketEntry, Vec<u8>) {
    (
        SkPacketEntry {
            id_for,
            length: data.len() as u32,
            scm: Vec::new(),
            criu_rs_addr: addr.map(<[u8]>::to_vec),
            ..Default::default()
        },
        data.to_vec(),
    )
}

#[test]
fn bad_queue_entries_name_the_image_and_entry() {
    let ids: HashSet<u32> = [1, 2].into();
    let files: HashSet<u32> = [1, 2, 5].into();
    // Announces 10 bytes, carries 3.
    let mut short = packet(2, b"abc", None);
    short.0.length = 10;
    let body = queue_image(&[packet(1, b"ok", None), short]);
    let e = err_text(read_queues(Some(&body), &ids, &files).unwrap_err());
    assert!(
        e.contains("sk-queues.img") && e.contains("entry 1") && e.contains("10 bytes"),
        "{e}"
    );
    // Queued for a socket that does not exist.
    let body = queue_image(&[packet(9, b"x", None)]);
    let e = err_text(read_queues(Some(&body), &ids, &files).unwrap_err());
    assert!(e.contains("entry 0") && e.contains("socket id 9"), "{e}");
    // Fds in flight: kept in order; one naming a file id files.img lacks is refused.
    let mut p = packet(1, b"x", None);
    p.0.scm.push(ScmEntry {
        r#type: 1,
        rights: vec![5, 2],
    });
    let back = read_queues(Some(&queue_image(&[p.clone()])), &ids, &files).unwrap();
    assert_eq!(back[&1][0].rights, [5, 2]);
    p.0.scm[0].rights.push(7);
    let e = err_text(
        read_queues(
            Some(&queue_image(&[packet(2, b"y", None), p])),
            &ids,
            &files,
        )
        .unwrap_err(),
    );
    assert!(
        e.contains("sk-queues.img") && e.contains("entry 1") && e.contains("file id 7"),
        "{e}"
    );
    // A control message of another type.
    let mut p = packet(1, b"x", None);
    p.0.scm.push(ScmEntry {
        r#type: 2,
        rights: vec![],
    });
    let e = err_text(read_queues(Some(&queue_image(&[p])), &ids, &files).unwrap_err());
    assert!(e.contains("entry 0") && e.contains("type 2"), "{e}");
    // Credentials without their uid and gid.
    let mut p = packet(1, b"x", None);
    p.0.criu_rs_ucred_pid = Some(1);
    let e = err_text(read_queues(Some(&queue_image(&[p])), &ids, &files).unwrap_err());
    assert!(
        e.contains("entry 0") && e.contains("incomplete credentials"),
        "{e}"
    );
    // Garbage where an entry should be.
    let e = err_text(read_queues(Some(&[200, 0, 0, 0, 1]), &ids, &files).unwrap_err());
    assert!(e.contains("sk-queues.img") && e.contains("entry 0"), "{e}");
    assert!(read_queues(None, &ids, &files).unwrap().is_empty());
}

proptest! {
    /// Queues written as the dump frames them, fds in flight included, read back the same,
    /// per socket and in order.
    #[test]
    fn queue_image_round_trips(
        packets in proptest::collection::vec(
            (1u32..4, proptest::collection::vec(any::<u8>(), 0..300),
             proptest::option::of(proptest::collection::vec(any::<u8>(), 1..20)),
             proptest::collection::vec(1u32..10, 0..5)),
            0..20,
        )
    ) {
        let entries: Vec<_> = packets
            .iter()
            .map(|(id, data, addr, rights)| {
                let mut p = packet(*id, data, addr.as_deref());
                if !rights.is_empty() {
                    p.0.scm.push(ScmEntry { r#type: libc::SCM_RIGHTS as u32, rights: rights.clone() });
                }
                p
            })
            .collect();
        let ids: HashSet<u32> = [1, 2, 3].into();
        let files: HashSet<u32> = (1..10).collect();
        let back = read_queues(Some(&queue_image(&entries)), &ids, &files).unwrap();
        for id in 1..4 {
            let want: Vec<Packet> = packets
                .iter()
                .filter(|(i, _, _, _)| *i == id)
                .map(|(_, data, addr, rights)| Packet {
                    data: data.clone(),
                    addr: addr.clone().unwrap_or_default(),
                    creds: None,
                    rights: rights.clone(),
                })
                .collect();
            prop_assert_eq!(back.get(&id).cloned().unwrap_or_default(), want);
        }
    }
}

fn pair(ty: SockType) -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    socketpair(AddressFamily::Unix, ty, None, SockFlag::SOCK_CLOEXEC).unwrap()
}

/// Peeking reads every message without consuming it and puts SO_PEEK_OFF back; sending
/// the packets into a fresh pair gives the same messages.
#[test]
fn peek_leaves_the_queue_and_refill_keeps_boundaries() {
    use std::os::fd::AsRawFd;
    for ty in [SockType::Datagram, SockType::SeqPacket, SockType::Stream] {
        let (a, b) = pair(ty);
        let msgs: [&[u8]; 3] = [b"one", &[7u8; 100_000], b"three"];
        for m in msgs {
            queue::send(a.as_fd(), None, m, None, &[]).unwrap();
        }
        let datagrams = ty != SockType::Stream;
        let got: Vec<Packet> = queue::peek(b.as_fd(), datagrams, ty == SockType::Datagram, None)
            .unwrap()
            .into_iter()
            .map(|p| p.packet)
            .collect();
        let off = crate::sys::get_int(b.as_fd(), libc::SOL_SOCKET, crate::sys::SO_PEEK_OFF);
        assert_eq!(off, Ok(-1), "{ty:?}: SO_PEEK_OFF put back");
        let cred = crate::sys::get_int(b.as_fd(), libc::SOL_SOCKET, libc::SO_PASSCRED);
        assert_eq!(cred, Ok(0), "{ty:?}: SO_PASSCRED put back");
        let total: Vec<u8> = got.iter().flat_map(|p| p.data.clone()).collect();
        assert_eq!(total, msgs.concat(), "{ty:?}");
        if datagrams {
            assert_eq!(got.len(), 3, "{ty:?}: one packet per message");
        }
        // Still queued, whole.
        let mut buf = vec![0u8; 200_000];
        let n = recv(b.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT).unwrap();
        assert_eq!(&buf[..n], &msgs.concat()[..n], "{ty:?}");
        // Refilled elsewhere: the same messages.
        let (c, d) = pair(ty);
        for p in &got {
            queue::send(c.as_fd(), None, &p.data, p.creds, &[]).unwrap();
        }
        if datagrams {
            for m in msgs {
                let n = recv(d.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT).unwrap();
                assert_eq!(&buf[..n], m, "{ty:?}");
            }
        }
    }
}

/// A seqpacket socket whose peer shut down answers 0 past its last record: the peek ends
/// there instead of looping, and keeps an empty record that came before.
#[test]
fn seqpacket_peek_ends_at_the_peers_shutdown() {
    use std::os::fd::AsRawFd;
    let (a, b) = pair(SockType::SeqPacket);
    queue::send(a.as_fd(), None, b"rec", None, &[]).unwrap();
    queue::send(a.as_fd(), None, b"", None, &[]).unwrap();
    queue::send(a.as_fd(), None, b"last", None, &[]).unwrap();
    nix::sys::socket::shutdown(a.as_raw_fd(), nix::sys::socket::Shutdown::Write).unwrap();
    let got = queue::peek(b.as_fd(), true, false, Some(7)).unwrap();
    let data: Vec<&[u8]> = got.iter().map(|p| p.packet.data.as_slice()).collect();
    assert_eq!(data, [&b"rec"[..], b"", b"last"]);
}

/// Fds in flight: a peek hands out criu's own duplicates with their message (same open file
/// description), leaves them queued, and a refill sends them again in order.
#[test]
fn peek_takes_fds_in_flight_and_refill_sends_them() {
    use std::os::fd::AsRawFd;
    for ty in [SockType::Datagram, SockType::SeqPacket, SockType::Stream] {
        let (a, b) = pair(ty);
        let (p0, p1) = nix::unistd::pipe().unwrap();
        queue::send(a.as_fd(), None, b"plain", None, &[]).unwrap();
        queue::send(
            a.as_fd(),
            None,
            b"fds",
            None,
            &[p0.as_raw_fd(), p1.as_raw_fd()],
        )
        .unwrap();
        let datagrams = ty != SockType::Stream;
        let got = queue::peek(b.as_fd(), datagrams, ty == SockType::Datagram, None).unwrap();
        let with_fds = got.iter().find(|p| !p.fds.is_empty()).expect("the fds");
        assert_eq!(with_fds.fds.len(), 2, "{ty:?}");
        let ino = |f: std::os::fd::BorrowedFd<'_>| nix::sys::stat::fstat(f).unwrap().st_ino;
        assert_eq!(ino(with_fds.fds[0].as_fd()), ino(p0.as_fd()), "{ty:?}");
        assert_eq!(ino(with_fds.fds[1].as_fd()), ino(p1.as_fd()), "{ty:?}");
        let data: Vec<&[u8]> = got.iter().map(|p| p.packet.data.as_slice()).collect();
        if datagrams {
            assert_eq!(data, [&b"plain"[..], b"fds"], "{ty:?}");
            assert!(got[0].fds.is_empty(), "{ty:?}");
        } else {
            // A stream's writes before the one carrying fds come glued to it.
            assert_eq!(data, [&b"plainfds"[..]], "{ty:?}");
        }
        // Still queued with its fds.
        let mut buf = [0u8; 64];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 4]);
        let raws: Vec<std::os::fd::RawFd> = loop {
            let m = nix::sys::socket::recvmsg::<()>(
                b.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_DONTWAIT,
            )
            .unwrap();
            let fds: Vec<_> = m
                .cmsgs()
                .unwrap()
                .filter_map(|c| match c {
                    nix::sys::socket::ControlMessageOwned::ScmRights(f) => Some(f),
                    _ => None,
                })
                .flatten()
                .collect();
            if !fds.is_empty() {
                break fds;
            }
        };
        let owned: Vec<_> = raws.into_iter().map(crate::sys::own_received).collect();
        assert_eq!(ino(owned[0].as_fd()), ino(p0.as_fd()), "{ty:?}");
    }
}

/// A peek raises criu's soft `RLIMIT_NOFILE` to the hard one, so that a message's fds fit
/// where the soft limit would truncate them (`MSG_CTRUNC`); with no room left it fails
/// naming the limit. Runs itself again under `prlimit` (the limit is per process).
#[test]
fn peek_raises_the_fd_limit_for_fds_in_flight() {
    use std::os::fd::AsRawFd;
    const ENV: &str = "CRIU_RS_UNIX_LOW_NOFILE";
    let Ok(mode) = std::env::var(ENV) else {
        let me = std::env::current_exe().expect("test binary");
        for (mode, limits) in [("raise", "--nofile=64:1024"), ("stuck", "--nofile=64:64")] {
            let out = match std::process::Command::new("prlimit")
                .arg(limits)
                .arg(&me)
                .args([
                    "--exact",
                    "tests::peek_raises_the_fd_limit_for_fds_in_flight",
                ])
                .args(["--test-threads", "1", "--nocapture"])
                .env(ENV, mode)
                .output()
            {
                Ok(o) => o,
                Err(e) => {
                    eprintln!("skipping: no prlimit ({e})");
                    return;
                }
            };
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && text.contains("1 passed"),
                "{mode}: {text} {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        return;
    };
    let (a, b) = pair(SockType::Datagram);
    let files: Vec<std::os::fd::OwnedFd> = (0..8)
        .map(|_| std::fs::File::open("/dev/null").expect("/dev/null").into())
        .collect();
    let raws: Vec<i32> = files.iter().map(|f| f.as_raw_fd()).collect();
    queue::send(a.as_fd(), None, b"many", None, &raws).unwrap();
    drop(files);
    // Fill the table up to the soft limit: the peek cannot install 8 more.
    let mut hold = Vec::new();
    while let Ok(f) = std::fs::File::open("/dev/null") {
        hold.push(f);
    }
    hold.truncate(hold.len().saturating_sub(2));
    let got = queue::peek(b.as_fd(), true, false, None);
    if mode == "raise" {
        let got = got.expect("peek after raising the limit");
        assert_eq!(got[0].fds.len(), 8);
    } else {
        let e = got.expect_err("no room for the fds").to_string();
        assert!(e.contains("RLIMIT_NOFILE"), "{e}");
    }
}

#[test]
fn names_and_addresses_convert() {
    for name in [&b"/tmp/x.sock"[..], b"\0abstract\0with nul"] {
        let a = queue::addr_of(name).unwrap();
        assert_eq!(queue::name_of(Some(&a)), name);
    }
    assert!(queue::name_of(None).is_empty());
}
