//! Unit tests of the anonymiser on images built here, and a property test of the names.

use std::path::Path;

use criu_proto::framing::{encode_messages, parse_as};
use criu_proto::images::{
    CoreEntry, InetSkEntry, InventoryEntry, PipeDataEntry, RegFileEntry, TaskCoreEntry,
    ThreadInfoX86, UnixSkEntry,
};
use criu_proto::{ImageKind, RawEntry, RawImage};
use proptest::prelude::*;
use prost::Message;

use super::*;

fn run<M: Message + Default>(kind: ImageKind, msgs: &[M], ph: &mut Placeholders) -> Vec<M> {
    let data = encode_messages(kind, msgs).unwrap();
    let out = anonymise_image(kind, &data, ph, Path::new("test.img")).unwrap();
    parse_as(kind, &out).unwrap().decode_entries().unwrap()
}

#[test]
fn registers_are_zeroed_and_comm_mapped() {
    let mut ti = ThreadInfoX86 {
        clear_tid_addr: 0x7f00_dead_beef,
        ..Default::default()
    };
    ti.gpregs.ip = 0x401000;
    ti.gpregs.sp = 0x7ffc_0000;
    ti.gpregs.mode = Some(1);
    ti.fpregs.xsave = Some(criu_proto::images::UserX86XsaveEntry {
        xstate_bv: 7,
        ymmh_space: vec![0xaaaa_aaaa; 64],
        ..Default::default()
    });
    let core = CoreEntry {
        mtype: 1,
        thread_info: Some(ti),
        tc: Some(TaskCoreEntry {
            comm: "alice-secret".into(),
            task_state: 1,
            ..Default::default()
        }),
        ..Default::default()
    };
    let got = run(ImageKind::Core, &[core], &mut Placeholders::default()).remove(0);
    assert_eq!(got.mtype, 1, "the architecture is kept");
    let ti = got.thread_info.expect("thread_info kept");
    assert_eq!((ti.clear_tid_addr, ti.gpregs.ip, ti.gpregs.sp), (0, 0, 0));
    assert_eq!(ti.gpregs.mode, Some(1), "enums are structure");
    let xs = ti.fpregs.xsave.expect("xsave kept");
    assert_eq!(xs.ymmh_space, vec![0; 64], "same count, zeroed");
    let tc = got.tc.unwrap();
    assert_eq!(tc.comm, "p1");
    assert_eq!(tc.task_state, 1);
}

#[test]
fn paths_keep_their_structure_and_relations() {
    let names = [
        "/home/alice/x",
        "/home/alice/y",
        "/home/bob",
        "alice",
        "../x",
        "/",
    ];
    let files: Vec<RegFileEntry> = names
        .iter()
        .enumerate()
        .map(|(i, n)| RegFileEntry {
            id: i as u32,
            name: n.to_string(),
            size: Some(4096),
            ..Default::default()
        })
        .collect();
    let got = run(ImageKind::RegFiles, &files, &mut Placeholders::default());
    let got: Vec<&str> = got.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        got,
        ["/p1/p2/p3", "/p1/p2/p4", "/p1/p5", "p2", "../p3", "/"]
    );
}

#[test]
fn socket_names_and_addresses_are_mapped_across_images() {
    let mut ph = Placeholders::default();
    let unix = [
        UnixSkEntry {
            name: b"\0secret-abstract".to_vec(),
            ..Default::default()
        },
        UnixSkEntry {
            name: b"/run/alice/sock".to_vec(),
            ..Default::default()
        },
    ];
    let got = run(ImageKind::Unixsk, &unix, &mut ph);
    assert_eq!(got[0].name, b"\0p1");
    assert_eq!(got[1].name, b"/p2/p3/p4");
    let reg = RegFileEntry {
        name: "/run/alice".into(),
        ..Default::default()
    };
    assert_eq!(run(ImageKind::RegFiles, &[reg], &mut ph)[0].name, "/p2/p3");

    let v4 = |a: [u8; 4]| vec![u32::from_ne_bytes(a)];
    let inet = [
        InetSkEntry {
            src_addr: v4([192, 168, 1, 7]),
            dst_addr: v4([127, 0, 0, 1]),
            ..Default::default()
        },
        InetSkEntry {
            src_addr: v4([0, 0, 0, 0]),
            dst_addr: v4([192, 168, 1, 7]),
            ..Default::default()
        },
        InetSkEntry {
            src_addr: vec![0x2a01, 0, 0, 5],
            ..Default::default()
        },
    ];
    let got = run(ImageKind::Inetsk, &inet, &mut ph);
    assert_eq!(got[0].src_addr, v4([10, 0, 0, 1]));
    assert_eq!(got[0].dst_addr, v4([127, 0, 0, 1]), "loopback kept");
    assert_eq!(got[1].src_addr, v4([0, 0, 0, 0]), "any kept");
    assert_eq!(
        got[1].dst_addr, got[0].src_addr,
        "same address, same placeholder"
    );
    assert_eq!(got[2].src_addr.len(), 4);
    assert_eq!(got[2].src_addr[0].to_ne_bytes()[0], 0xfd);
}

#[test]
fn queued_data_is_zeroed_and_the_framing_kept() {
    let entry = PipeDataEntry {
        pipe_id: 3,
        bytes: 11,
        size: Some(65536),
    };
    let img = RawImage {
        kind: ImageKind::PipesData,
        entries: vec![RawEntry {
            offset: 0,
            payload: entry.encode_to_vec(),
            extra: b"secret data".to_vec(),
        }],
    };
    let data = img.encode().unwrap();
    let mut ph = Placeholders::default();
    let out = anonymise_image(ImageKind::PipesData, &data, &mut ph, Path::new("p")).unwrap();
    assert_eq!(out.len(), data.len());
    let back = parse_as(ImageKind::PipesData, &out).unwrap();
    assert_eq!(back.entries[0].extra, vec![0u8; 11]);
    assert_eq!(back.decode_entries::<PipeDataEntry>().unwrap(), [entry]);
}

#[test]
fn the_inventory_is_marked() {
    let inv = InventoryEntry {
        img_version: 2,
        ..Default::default()
    };
    let got = run(ImageKind::Inventory, &[inv], &mut Placeholders::default()).remove(0);
    assert_eq!(got.criu_rs_anonymised, Some(true));
    assert_eq!(got.img_version, 2);
}

#[test]
fn a_bad_entry_is_named() {
    let mut data = framing::header_bytes(ImageKind::RegFiles).unwrap();
    data.extend_from_slice(&3u32.to_le_bytes());
    data.extend_from_slice(&[0xff, 0xff, 0xff]);
    let err = anonymise_image(
        ImageKind::RegFiles,
        &data,
        &mut Placeholders::default(),
        Path::new("/x/reg-files.img"),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "image /x/reg-files.img: entry 0 is not a valid reg_file_entry"
    );
}

proptest! {
    /// Paths map injectively, component by component: equal components stay equal, different
    /// ones stay different, and no original component of 3+ bytes survives.
    #[test]
    fn names_map_one_to_one(paths in proptest::collection::vec("(/?[a-z]{3,6}){1,4}", 1..8)) {
        let mut ph = Placeholders::default();
        let mapped: Vec<String> = paths.iter().map(|p| ph.name_str(p)).collect();
        for (a, ma) in paths.iter().zip(&mapped) {
            let ca: Vec<&str> = a.split('/').collect();
            let cm: Vec<&str> = ma.split('/').collect();
            prop_assert_eq!(ca.len(), cm.len());
            for c in ma.split('/').filter(|c| !c.is_empty()) {
                prop_assert!(c.starts_with('p') && c[1..].parse::<usize>().is_ok(), "{}", c);
            }
            for (b, mb) in paths.iter().zip(&mapped) {
                prop_assert_eq!(a == b, ma == mb);
                let cb: Vec<&str> = b.split('/').collect();
                let mbc: Vec<&str> = mb.split('/').collect();
                for (i, j) in (0..ca.len()).flat_map(|i| (0..cb.len()).map(move |j| (i, j))) {
                    prop_assert_eq!(ca[i] == cb[j], cm[i] == mbc[j]);
                }
            }
        }
    }
}
