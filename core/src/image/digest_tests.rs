use super::*;

use proptest::prelude::*;

fn scratch(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("criu-digest-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    p
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 4096) as u8).collect()
}

#[test]
fn pieces_of_any_size_give_the_one_shot_digests() {
    let d = data(3 * CHUNK as usize + 5 * 4096);
    let mut whole = ChunkHasher::new();
    whole.update(&d);
    let whole = whole.finish("pages-1.img".into());
    assert_eq!(whole.size, d.len() as u64);
    assert_eq!(whole.chunks.len(), 4);
    assert_eq!(whole.chunks[0], xxh3_128(&d[..CHUNK as usize]));
    assert_eq!(whole.chunks[3], xxh3_128(&d[3 * CHUNK as usize..]));
    for piece in [4096, 12288, 3 * 65536, 16 << 20] {
        let mut h = ChunkHasher::new();
        for p in d.chunks(piece) {
            h.update(p);
        }
        assert_eq!(h.finish("pages-1.img".into()), whole, "pieces of {piece}");
    }
    let empty = ChunkHasher::new().finish("pages-2.img".into());
    assert_eq!((empty.size, empty.chunks.len()), (0, 0));
}

#[test]
fn encode_decode_round_trip_and_damage_is_refused() {
    let files = vec![ChunkHasher::new().finish("pages-2.img".into()), {
        let mut h = ChunkHasher::new();
        h.update(&data(CHUNK as usize + 4096));
        h.finish("pages-1.img".into())
    }];
    let bytes = encode(&files);
    let p = Path::new("d.img");
    assert_eq!(decode(p, &bytes).unwrap(), files);
    // Every single flipped byte and every truncation is an error, never a panic.
    for i in 0..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0x40;
        assert!(decode(p, &b).is_err(), "flip at {i}");
        assert!(decode(p, &bytes[..i]).is_err(), "cut at {i}");
    }
    let err = decode(p, b"NOTADIGESTFILE..........").unwrap_err();
    assert!(err.to_string().contains("bad magic"), "{err}");
}

proptest! {
    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode(Path::new("x"), &bytes);
        let mut framed = MAGIC.to_vec();
        framed.extend_from_slice(&bytes);
        let sum = xxh3_128(&framed);
        framed.extend_from_slice(&sum.to_le_bytes());
        let _ = decode(Path::new("x"), &framed);
    }
}

#[test]
fn verify_names_file_and_damaged_range() {
    let dir = scratch("verify");
    let d = data(2 * CHUNK as usize + 8192);
    std::fs::write(dir.join("pages-1.img"), &d).unwrap();
    assert_eq!(verify_dir(&dir).unwrap(), DirDigest::Absent);
    let mut h = ChunkHasher::new();
    h.update(&d);
    std::fs::write(
        dir.join(DIGEST_FILE),
        encode(&[h.finish("pages-1.img".into())]),
    )
    .unwrap();
    assert_eq!(
        verify_dir(&dir).unwrap(),
        DirDigest::Verified {
            files: 1,
            bytes: d.len() as u64
        }
    );

    let mut bad = d.clone();
    bad[CHUNK as usize + 77] ^= 1;
    std::fs::write(dir.join("pages-1.img"), &bad).unwrap();
    let e = verify_dir(&dir).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("pages-1.img")
            && msg.contains("bytes 0x100000-0x1fffff")
            && msg.contains("pages 256-511"),
        "{msg}"
    );

    std::fs::write(dir.join("pages-1.img"), &d[..4096]).unwrap();
    let msg = verify_dir(&dir).unwrap_err().to_string();
    assert!(msg.contains("has 4096 bytes"), "{msg}");

    std::fs::write(dir.join("pages-1.img"), &d).unwrap();
    std::fs::write(dir.join("pages-7.img"), [0u8; 4096]).unwrap();
    let msg = verify_dir(&dir).unwrap_err().to_string();
    assert!(msg.contains("pages-7.img has no digest"), "{msg}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn pages_file_names() {
    assert!(is_pages_file("pages-1.img"));
    assert!(is_pages_file("pages-123.img"));
    assert!(!is_pages_file("pages-.img"));
    assert!(!is_pages_file("pages-shmem-1.img"));
    assert!(!is_pages_file("pagemap-1.img"));
}
