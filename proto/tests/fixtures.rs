//! Every image CRIU 4.2 wrote for the sample program decodes into our prost types and
//! re-encodes byte for byte (field order, required fields, unknown fields).

use std::path::{Path, PathBuf};

use criu_proto::images::*;
use criu_proto::{ImageKind, framing};
use prost::Message;
use prost_reflect::DynamicMessage;

pub fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/criu-4.2-sample")
}

fn image_files() -> Vec<PathBuf> {
    let dir = fixture_dir();
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.ends_with(".img") || n == "stats-dump"
        })
        .collect();
    v.sort();
    assert!(v.len() >= 15, "fixture set incomplete: {v:?}");
    v
}

fn typed_round_trip<M: Message + Default>(payload: &[u8]) -> Vec<u8> {
    M::decode(payload).expect("typed decode").encode_to_vec()
}

fn typed(message: &str, payload: &[u8]) -> Vec<u8> {
    match message {
        "core_entry" => typed_round_trip::<CoreEntry>(payload),
        "fdinfo_entry" => typed_round_trip::<FdinfoEntry>(payload),
        "file_entry" => typed_round_trip::<FileEntry>(payload),
        "fs_entry" => typed_round_trip::<FsEntry>(payload),
        "task_kobj_ids_entry" => typed_round_trip::<TaskKobjIdsEntry>(payload),
        "inventory_entry" => typed_round_trip::<InventoryEntry>(payload),
        "mm_entry" => typed_round_trip::<MmEntry>(payload),
        "pagemap_head" => typed_round_trip::<PagemapHead>(payload),
        "pagemap_entry" => typed_round_trip::<PagemapEntry>(payload),
        "pipe_data_entry" => typed_round_trip::<PipeDataEntry>(payload),
        "pstree_entry" => typed_round_trip::<PstreeEntry>(payload),
        "seccomp_entry" => typed_round_trip::<SeccompEntry>(payload),
        "timens_entry" => typed_round_trip::<TimensEntry>(payload),
        "stats_entry" => typed_round_trip::<StatsEntry>(payload),
        other => panic!("no typed mapping for {other}"),
    }
}

#[test]
fn every_fixture_round_trips_byte_for_byte() {
    let pool = criu_proto::descriptor_pool();
    for path in image_files() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let data = std::fs::read(&path).unwrap();
        let (kind, _) = ImageKind::from_file_name(&name).unwrap();
        if kind.is_raw() {
            assert_eq!(kind, ImageKind::Pages, "{name}");
            assert_eq!(data.len() % 4096, 0, "{name}: pages are whole pages");
            continue;
        }
        let img = framing::parse(&data).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(img.kind, kind, "{name}");
        assert_eq!(img.encode().unwrap(), data, "{name}: framing round trip");
        for (i, e) in img.entries.iter().enumerate() {
            let msg = kind.entry_message_name(i);
            assert_eq!(
                typed(msg, &e.payload),
                e.payload,
                "{name} entry {i}: prost round trip"
            );
            let desc = pool.get_message_by_name(msg).unwrap();
            let dynamic = DynamicMessage::decode(desc, e.payload.as_slice()).unwrap();
            assert_eq!(
                dynamic.encode_to_vec(),
                e.payload,
                "{name} entry {i}: dynamic"
            );
        }
    }
}
