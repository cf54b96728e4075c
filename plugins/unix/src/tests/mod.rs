//! Parsers and codecs of the unix plugin; its queue code on real sockets of the test
//! process (no root needed) in [`sockets`].

use std::collections::{HashMap, HashSet};

use criu_plugin_api::frame_entries;
use criu_proto::images::{FdTypes, FileEntry, ScmEntry, SkPacketEntry, UnixSkEntry};
use proptest::prelude::*;
use prost::Message;

use crate::diag::{self, DiagSocket};
use crate::queue::Packet;
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
    // A datagram of another plugin's socket (file id 5, a UDP socket) is left to it.
    let body = queue_image(&[packet(5, b"udp", None), packet(1, b"ok", None)]);
    let back = read_queues(Some(&body), &ids, &files).unwrap();
    assert_eq!((back.len(), back[&1][0].data.as_slice()), (1, &b"ok"[..]));
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

mod external;
mod peercred;
mod sockets;
