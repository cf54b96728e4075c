use std::collections::HashMap;

use criu_proto::images::{FdTypes, FileEntry, PacketRing, PacketSockEntry};
use proptest::prelude::*;

use crate::diag::{self, Desc};
use crate::maps::{self, MapRec};
use crate::restore::{ring_bytes, validate};

fn attr(kind: u16, v: &[u8]) -> Vec<u8> {
    let mut a = ((4 + v.len()) as u16).to_ne_bytes().to_vec();
    a.extend_from_slice(&kind.to_ne_bytes());
    a.extend_from_slice(v);
    a.resize((a.len() + 3) & !3, 0);
    a
}

fn words(w: &[u32]) -> Vec<u8> {
    w.iter().flat_map(|x| x.to_ne_bytes()).collect()
}

/// A `packet_diag_msg` of socket 77 as the kernel writes it.
fn message() -> Vec<u8> {
    let mut m = vec![libc::AF_PACKET as u8, libc::SOCK_DGRAM as u8];
    m.extend_from_slice(&0x0800u16.to_ne_bytes());
    m.extend_from_slice(&77u32.to_ne_bytes());
    m.extend_from_slice(&[0; 8]);
    m.extend(attr(0, &words(&[1, 1, 16, 0, 0, diag::PDI_ORIGDEV])));
    let mut mc = words(&[1, 2]);
    mc.extend_from_slice(&1u16.to_ne_bytes()); // PACKET_MR_MULTICAST
    mc.extend_from_slice(&6u16.to_ne_bytes());
    mc.extend_from_slice(&[1, 0, 0x5e, 0, 0, 1]);
    mc.resize(44, 0);
    m.extend(attr(1, &mc));
    m.extend(attr(3, &words(&[4096, 2, 1024, 8, 0, 0, 0])));
    m.extend(attr(4, &words(&[13 | (1 << 16)])));
    m
}

#[test]
fn diag_message_parses() {
    let (ino, d) = diag::parse_msg(&message()).expect("parse");
    assert_eq!(ino, 77);
    assert_eq!(d.sock_type as i32, libc::SOCK_DGRAM);
    assert_eq!(d.num, 0x0800);
    assert_eq!(d.info.version, 1);
    assert_eq!(d.info.reserve, 16);
    assert_eq!(d.info.flags, diag::PDI_ORIGDEV);
    assert_eq!(d.mclist.len(), 1);
    assert_eq!(d.mclist[0].count, 2);
    assert_eq!(d.mclist[0].addr, [1, 0, 0x5e, 0, 0, 1]);
    assert_eq!(d.rx, None);
    assert_eq!(d.tx.map(|r| r.frame_nr), Some(8));
    assert_eq!(d.fanout, Some(13 | (1 << 16)));
}

#[test]
fn bad_diag_answers_are_errors() {
    let m = message();
    assert!(diag::parse_msg(&m[..10]).is_err());
    // No PACKET_DIAG_INFO.
    assert!(diag::parse_msg(&m[..16]).is_err());
    // An attribute longer than the message.
    let mut cut = m.clone();
    cut.truncate(m.len() - 2);
    assert!(diag::parse_msg(&cut).is_err());
    let mut out: HashMap<u32, Desc> = HashMap::new();
    assert!(diag::parse_batch(&[1, 2, 3], &mut out).is_err());
}

fn ring(block_size: u32, block_nr: u32, frame_size: u32, frame_nr: u32) -> PacketRing {
    PacketRing {
        block_size,
        block_nr,
        frame_size,
        frame_nr,
        ..PacketRing::default()
    }
}

#[test]
fn ring_sizes_are_checked() {
    assert_eq!(ring_bytes(&ring(4096, 2, 1024, 8)), Ok(8192));
    let e = ring_bytes(&ring(1000, 1, 100, 10)).unwrap_err();
    assert!(e.contains("not a multiple of the page size"), "{e}");
    assert!(ring_bytes(&ring(4096, 1, 1024, 5)).is_err());
    assert!(ring_bytes(&ring(4096, 1, 0, 0)).is_err());
}

fn entry(p: PacketSockEntry) -> FileEntry {
    FileEntry {
        r#type: FdTypes::Packetsk as i32,
        id: p.id,
        psk: Some(p),
        ..Default::default()
    }
}

#[test]
fn bad_entries_are_named() {
    let ifs: HashMap<u32, String> = [(1, "lo".to_string())].into();
    let good = PacketSockEntry {
        id: 5,
        r#type: libc::SOCK_RAW as u32,
        ifindex: 1,
        ..Default::default()
    };
    assert!(validate(&entry(good.clone()), &ifs).is_ok());
    let e = validate(
        &entry(PacketSockEntry {
            ifindex: 9999,
            ..good.clone()
        }),
        &ifs,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("files.img") && e.contains("file id 5") && e.contains("9999"),
        "{e}"
    );
    let e = validate(
        &entry(PacketSockEntry {
            rx_ring: Some(ring(3000, 1, 1000, 3)),
            ..good
        }),
        &ifs,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("file id 5") && e.contains("page size"), "{e}");
}

#[test]
fn bad_map_lines_are_named() {
    for bad in [
        "1 2 3",
        "x 1000 2000 3",
        "1 2000 1000 3",
        "1 1000 2000 100000000",
    ] {
        let e = maps::parse(bad).unwrap_err().to_string();
        assert!(e.contains(maps::FILE) && e.contains("line 1"), "{bad}: {e}");
    }
    assert_eq!(maps::socket_ino("socket:[123]"), Some(123));
    assert_eq!(maps::socket_ino("/dev/zero"), None);
}

proptest! {
    #[test]
    fn map_lines_round_trip(recs in proptest::collection::vec(
        (1i32..1 << 22, 1u64..1 << 40, 1u64..1 << 20, any::<u32>()), 0..8)) {
        let recs: Vec<MapRec> = recs
            .into_iter()
            .map(|(pid, start, len, file_id)| MapRec { pid, start, end: start + len, file_id })
            .collect();
        let text: String = recs.iter().map(MapRec::line).collect();
        prop_assert_eq!(maps::parse(&text).unwrap(), recs);
    }
}
