use super::*;
use crate::images::{PstreeEntry, VmaEntry};

#[test]
fn pretty_vma_rendering() {
    let vma = VmaEntry {
        start: 0x1000,
        end: 0x3000,
        pgoff: 0,
        shmid: 0,
        prot: 3,
        flags: 0x22,
        status: 0x201,
        fd: -1,
        madv: None,
        fdflags: None,
        criu_rs_plugin: None,
        criu_rs_name: None,
    };
    let desc = descriptor("vma_entry").unwrap();
    let dm = DynamicMessage::decode(desc.clone(), vma.encode_to_vec().as_slice()).unwrap();
    let j = message_to_json(&dm, true);
    assert_eq!(j["start"], "0x1000");
    assert_eq!(j["prot"], "PROT_READ | PROT_WRITE");
    assert_eq!(j["flags"], "MAP_PRIVATE | MAP_ANON");
    assert_eq!(j["status"], "VMA_AREA_REGULAR | VMA_ANON_PRIVATE");
    assert_eq!(j["fd"], -1);
    let back = json_to_message(&desc, &j, "vma").unwrap();
    assert_eq!(back.encode_to_vec(), vma.encode_to_vec());
    let plain = message_to_json(&dm, false);
    assert_eq!(plain["start"], 4096);
}

#[test]
fn unknown_fields_survive() {
    let mut bytes = framing::header_bytes(ImageKind::Pstree).unwrap();
    let mut payload = PstreeEntry {
        pid: 1,
        ppid: 0,
        pgid: 1,
        sid: 1,
        threads: vec![1],
    }
    .encode_to_vec();
    // Field 99, varint 7: unknown to the schema.
    payload.extend_from_slice(&[0x98, 0x06, 0x07]);
    bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&payload);
    let j = decode(&bytes, DecodeOptions::default()).unwrap();
    assert!(j["entries"][0].get(UNKNOWN_FIELDS_KEY).is_some());
    assert_eq!(encode(&j).unwrap(), bytes);
}

#[test]
fn missing_required_is_an_error() {
    let doc: Json =
        serde_json::from_str(r#"{"magic": "PSTREE", "entries": [{"pid": 1}]}"#).unwrap();
    assert!(matches!(
        encode(&doc),
        Err(JsonError::MissingRequired { .. })
    ));
    let doc: Json = serde_json::from_str(r#"{"magic": "NOPE", "entries": []}"#).unwrap();
    assert!(matches!(encode(&doc), Err(JsonError::UnknownMagic(_))));
}

#[test]
fn missing_payload_is_refused() {
    let doc: Json =
        serde_json::from_str(r#"{"magic": "PIPES_DATA", "entries": [{"pipe_id": 1, "bytes": 9}]}"#)
            .unwrap();
    assert!(matches!(encode(&doc), Err(JsonError::Inconsistent(_))));
}

#[test]
fn crit_317_view_folds_newer_vma_flags_into_the_remainder() {
    let vma = VmaEntry {
        start: 0x1000,
        end: 0x3000,
        pgoff: 0,
        shmid: 3,
        prot: 3,
        flags: 0x01,
        // REGULAR | FILE_SHARED | MEMFD | bit 20 (no name anywhere).
        status: 0x1 | 0x80 | 0x4000 | 0x10_0000,
        fd: -1,
        madv: None,
        fdflags: Some(2),
        criu_rs_plugin: None,
        criu_rs_name: None,
    };
    let desc = descriptor("vma_entry").unwrap();
    let dm = DynamicMessage::decode(desc.clone(), vma.encode_to_vec().as_slice()).unwrap();
    let mut j = message_to_json(&dm, true);
    assert_eq!(
        j["status"],
        "VMA_AREA_REGULAR | VMA_FILE_SHARED | VMA_AREA_MEMFD | 0x100000"
    );
    compat::message_to_317(&desc, &mut j);
    assert_eq!(j["status"], "VMA_AREA_REGULAR | VMA_FILE_SHARED | 0x104000");
    assert_eq!(j["flags"], "MAP_SHARED");
}
