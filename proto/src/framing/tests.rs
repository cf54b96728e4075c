use super::*;
use crate::images::{PagemapEntry, PagemapHead, PstreeEntry};

fn image_with(kind: ImageKind, entries: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = header_bytes(kind).unwrap();
    for (p, x) in entries {
        out.extend_from_slice(&(p.len() as u32).to_le_bytes());
        out.extend_from_slice(p);
        out.extend_from_slice(x);
    }
    out
}

#[test]
fn headers() {
    assert_eq!(
        header_bytes(ImageKind::Inventory).unwrap(),
        0x5831_3116u32.to_le_bytes()
    );
    let core = header_bytes(ImageKind::Core).unwrap();
    assert_eq!(&core[..4], &IMG_COMMON_MAGIC.to_le_bytes());
    let stats = header_bytes(ImageKind::Stats).unwrap();
    assert_eq!(&stats[..4], &IMG_SERVICE_MAGIC.to_le_bytes());
    assert!(matches!(
        header_bytes(ImageKind::Pages),
        Err(FramingError::NotFramed { .. })
    ));
}

#[test]
fn pstree_round_trip() {
    let msgs = vec![
        PstreeEntry {
            pid: 10,
            ppid: 0,
            pgid: 10,
            sid: 1,
            threads: vec![10, 11],
        },
        PstreeEntry {
            pid: 12,
            ppid: 10,
            pgid: 10,
            sid: 1,
            threads: vec![12],
        },
    ];
    let bytes = encode_messages(ImageKind::Pstree, &msgs).unwrap();
    let img = parse(&bytes).unwrap();
    assert_eq!(img.kind, ImageKind::Pstree);
    assert_eq!(img.entries.len(), 2);
    assert_eq!(img.entries[0].offset, 8);
    assert_eq!(img.decode_entries::<PstreeEntry>().unwrap(), msgs);
    assert_eq!(img.encode().unwrap(), bytes);
}

#[test]
fn pagemap_head_then_entries() {
    let mut bytes = header_bytes(ImageKind::Pagemap).unwrap();
    frame_message(
        &mut bytes,
        &PagemapHead {
            pages_id: 3,
            criu_rs_compression: None,
        },
    )
    .unwrap();
    frame_message(
        &mut bytes,
        &PagemapEntry {
            vaddr: 0x1000,
            compat_nr_pages: 0,
            nr_pages: Some(2),
            flags: Some(4),
            in_parent: None,
        },
    )
    .unwrap();
    let img = parse(&bytes).unwrap();
    assert_eq!(img.kind, ImageKind::Pagemap);
    assert_eq!(img.entries.len(), 2);
    // Same magic, named kind.
    let shm = parse_as(ImageKind::ShmemPagemap, &bytes).unwrap();
    assert_eq!(shm.kind, ImageKind::ShmemPagemap);
}

#[test]
fn pipe_data_extra() {
    let e = PipeDataEntry {
        pipe_id: 5,
        bytes: 3,
        size: None,
    };
    let bytes = image_with(ImageKind::PipesData, &[(&e.encode_to_vec(), b"abc")]);
    let img = parse(&bytes).unwrap();
    assert_eq!(img.entries[0].extra, b"abc");
    assert_eq!(img.encode().unwrap(), bytes);
    // One byte short of the payload.
    let err = parse(&bytes[..bytes.len() - 1]).unwrap_err();
    assert!(
        matches!(
            err,
            FramingError::Truncated {
                what: "entry payload",
                needed: 3,
                available: 2,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn ipc_sem_and_shm_padding() {
    let sem = IpcSemEntry {
        desc: Default::default(),
        nsems: 3,
    };
    let bytes = image_with(
        ImageKind::IpcnsSem,
        &[(&sem.encode_to_vec(), &[1, 0, 2, 0, 3, 0, 0, 0])],
    );
    let img = parse(&bytes).unwrap();
    assert_eq!(img.entries[0].extra.len(), 8);
    let shm = IpcShmEntry {
        desc: Default::default(),
        size: 5,
        in_pagemaps: None,
        hugetlb_flag: None,
    };
    let bytes = image_with(
        ImageKind::IpcnsShm,
        &[(&shm.encode_to_vec(), b"hello\0\0\0")],
    );
    assert_eq!(parse(&bytes).unwrap().entries[0].extra.len(), 8);
}

#[test]
fn ipc_msg_nested() {
    let q = IpcMsgEntry {
        desc: Default::default(),
        qbytes: 0,
        qnum: 2,
    };
    let mut extra = Vec::new();
    for body in [&b"hi"[..], &b"twelve bytes"[..]] {
        frame_message(
            &mut extra,
            &IpcMsg {
                mtype: 1,
                msize: body.len() as u32,
            },
        )
        .unwrap();
        extra.extend_from_slice(body);
        extra.resize(extra.len() + (8 - body.len() % 8) % 8, 0);
    }
    let bytes = image_with(ImageKind::IpcnsMsg, &[(&q.encode_to_vec(), &extra)]);
    let img = parse(&bytes).unwrap();
    assert_eq!(img.entries.len(), 1);
    assert_eq!(img.entries[0].extra, extra);
}

#[test]
fn ghost_file_without_chunks_takes_the_rest() {
    let g = GhostFileEntry {
        uid: 0,
        gid: 0,
        mode: 0o100644,
        ..Default::default()
    };
    let bytes = image_with(
        ImageKind::GhostFile,
        &[(&g.encode_to_vec(), b"file contents")],
    );
    let img = parse(&bytes).unwrap();
    assert_eq!(img.entries.len(), 1);
    assert_eq!(img.entries[0].extra, b"file contents");
}

#[test]
fn ghost_file_with_chunks() {
    let g = GhostFileEntry {
        chunks: Some(true),
        ..Default::default()
    };
    let c = GhostChunkEntry { len: 4, off: 8192 };
    let bytes = image_with(
        ImageKind::GhostFile,
        &[(&g.encode_to_vec(), b""), (&c.encode_to_vec(), b"data")],
    );
    let img = parse(&bytes).unwrap();
    assert_eq!(img.entries.len(), 2);
    assert_eq!(img.entries[1].extra, b"data");
}

#[test]
fn errors_name_offsets() {
    assert!(matches!(
        parse(&[1, 2]),
        Err(FramingError::Truncated { offset: 0, .. })
    ));
    assert!(matches!(
        parse(&[0, 0, 0, 0]),
        Err(FramingError::UnknownMagic {
            offset: 0,
            magic: 0
        })
    ));
    let mut b = IMG_COMMON_MAGIC.to_le_bytes().to_vec();
    b.extend_from_slice(&0x1234u32.to_le_bytes());
    assert!(matches!(
        parse(&b),
        Err(FramingError::UnknownMagic {
            offset: 4,
            magic: 0x1234
        })
    ));
    // Service magic on a common kind.
    let mut b = IMG_SERVICE_MAGIC.to_le_bytes().to_vec();
    b.extend_from_slice(&ImageKind::Core.magic().to_le_bytes());
    assert!(matches!(parse(&b), Err(FramingError::WrongMagic { .. })));
    // Length prefix cut short.
    let mut b = header_bytes(ImageKind::Pstree).unwrap();
    b.extend_from_slice(&[5, 0]);
    assert!(matches!(
        parse(&b),
        Err(FramingError::Truncated {
            offset: 8,
            what: "entry length",
            ..
        })
    ));
    // Garbage protobuf.
    let bytes = image_with(ImageKind::Pstree, &[(&[0xff, 0xff], b"")]);
    let err = parse(&bytes).unwrap_err();
    assert!(
        matches!(
            err,
            FramingError::Decode {
                offset: 8,
                message: "pstree_entry",
                ..
            }
        ),
        "{err}"
    );
    // Wrong kind asked for.
    let core = header_bytes(ImageKind::Core).unwrap();
    assert!(matches!(
        parse_as(ImageKind::Mm, &core),
        Err(FramingError::WrongMagic { offset: 4, .. })
    ));
}

#[test]
fn huge_lengths_do_not_panic() {
    let mut b = header_bytes(ImageKind::PipesData).unwrap();
    b.extend_from_slice(&u32::MAX.to_le_bytes());
    assert!(parse(&b).is_err());
    let e = PipeDataEntry {
        pipe_id: 1,
        bytes: u32::MAX,
        size: None,
    };
    let bytes = image_with(ImageKind::PipesData, &[(&e.encode_to_vec(), b"")]);
    assert!(matches!(parse(&bytes), Err(FramingError::Truncated { .. })));
}

/// Found by the `image_parse` fuzz target: the inventory's magic behind the common one
/// parsed as an inventory that encodes without it.
#[test]
fn inventory_magic_behind_the_common_magic_is_refused() {
    let mut data = IMG_COMMON_MAGIC.to_le_bytes().to_vec();
    data.extend_from_slice(&ImageKind::Inventory.magic().to_le_bytes());
    assert!(matches!(
        parse(&data),
        Err(FramingError::UnknownMagic { offset: 4, .. })
    ));
}
