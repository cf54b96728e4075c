//! Unit tests: image checks (no root needed) and the repair round trip on real sockets.

use std::collections::{HashMap, HashSet};

use criu_plugin_api::frame_entries;
use criu_proto::images::{SkPacketEntry, TcpStreamEntry};
use prost::Message;

use crate::{addr, tcp, udp};

fn stream_body(e: &TcpStreamEntry, data: &[u8]) -> Vec<u8> {
    let enc = e.encode_to_vec();
    frame_entries([(enc.as_slice(), data)])
}

#[test]
fn a_stream_whose_queue_sizes_disagree_with_its_data_is_refused() {
    let e = TcpStreamEntry {
        inq_len: 3,
        outq_len: 4,
        unsq_len: Some(1),
        ..TcpStreamEntry::default()
    };
    let s = tcp::parse(
        0x1234,
        "TCP a -> b (file id 7)",
        &stream_body(&e, b"abcdefg"),
    )
    .unwrap();
    assert_eq!(
        (s.inq.as_slice(), s.sent(), s.unsent()),
        (&b"abc"[..], &b"def"[..], &b"g"[..])
    );
    for data in [&b"abcdef"[..], b"abcdefgh"] {
        let err = tcp::parse(0x1234, "TCP a -> b (file id 7)", &stream_body(&e, data))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("tcp-stream-1234.img")
                && err.contains("file id 7")
                && err.contains("disagree"),
            "{err}"
        );
    }
    let mut bad = e;
    bad.unsq_len = Some(5);
    let err = tcp::parse(1, "x", &stream_body(&bad, b"abcdefg"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("unsent"), "{err}");
}

#[test]
fn datagrams_of_other_sockets_are_skipped_and_unknown_ones_refused() {
    let from = "127.0.0.1:4000".parse().unwrap();
    let pkt = |id: u32, data: &[u8]| {
        let e = SkPacketEntry {
            id_for: id,
            length: data.len() as u32,
            criu_rs_addr: Some(addr::sender_bytes(from)),
            ..SkPacketEntry::default()
        };
        (e.encode_to_vec(), data.to_vec())
    };
    let frames = [pkt(3, b"unix"), pkt(2, b"one"), pkt(2, b"")];
    let body = frame_entries(frames.iter().map(|(e, d)| (e.as_slice(), d.as_slice())));
    let ids: HashMap<u32, String> = [(2, "UDP x".to_string())].into();
    let files: HashSet<u32> = [2, 3].into();
    let q = udp::read_queues(Some(&body), &ids, &files).unwrap();
    assert_eq!(q[&2].len(), 2);
    assert_eq!(
        (q[&2][0].data.as_slice(), q[&2][0].from),
        (&b"one"[..], from)
    );
    let lone: HashSet<u32> = [2].into();
    let err = udp::read_queues(Some(&body), &ids, &lone)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("sk-queues.img") && err.contains("socket id 3"),
        "{err}"
    );
}

#[test]
fn an_impossible_tcp_state_is_refused_naming_image_and_socket() {
    use criu_proto::images::{FdTypes, FileEntry, InetSkEntry};
    let ie = InetSkEntry {
        id: 9,
        family: addr::FAMILY_V4,
        r#type: libc::SOCK_STREAM as u32,
        proto: libc::IPPROTO_TCP as u32,
        state: 42,
        src_port: 80,
        dst_port: 4000,
        src_addr: addr::words_of("127.0.0.1".parse().unwrap()),
        dst_addr: addr::words_of("127.0.0.2".parse().unwrap()),
        ..InetSkEntry::default()
    };
    let mut e = FileEntry {
        r#type: FdTypes::Inetsk as i32,
        id: 9,
        isk: Some(ie),
        ..FileEntry::default()
    };
    let err = crate::validate(&e).unwrap_err().to_string();
    assert!(
        err.contains("files.img") && err.contains("file id 9") && err.contains("127.0.0.1:80"),
        "{err}"
    );
    // A state that exists but is not restored (SYN_SENT) is refused as unsupported.
    e.isk.as_mut().unwrap().state = 2;
    let err = crate::validate(&e).unwrap_err().to_string();
    assert!(err.contains("SYN_SENT"), "{err}");
    for ok in [1, 4, 5, 8, 9, 11] {
        e.isk.as_mut().unwrap().state = ok;
        assert!(crate::validate(&e).is_ok(), "state {ok}");
    }
}
