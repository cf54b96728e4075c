use std::os::unix::fs::FileExt;

use proptest::prelude::*;

use super::*;
use crate::image::ImageDir;
use crate::image::compress_read::{self, pages_len, read_index};

fn pages(n: usize, seed: u8) -> Vec<u8> {
    // Half compressible (runs), half not (a xorshift stream).
    let mut v = vec![0u8; n * super::super::PAGE_SIZE];
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(seed);
    for (i, c) in v.chunks_mut(8).enumerate() {
        if (i / 512) % 2 == 0 {
            c.fill((i / 512) as u8 ^ seed);
        } else {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            c.copy_from_slice(&x.to_le_bytes()[..c.len()]);
        }
    }
    v
}

fn tmpdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("criu-compress-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Writes `data` in the given pieces through a compressing writer; returns the file.
fn write_compressed(
    dir: &std::path::Path,
    c: Compression,
    data: &[u8],
    cuts: &[usize],
) -> std::path::PathBuf {
    let mut d = ImageDir::open(dir).unwrap();
    d.set_compression(Some(c));
    let mut w = d.pages_writer(1).unwrap();
    assert!(w.take_hasher().is_none());
    let mut at = 0;
    for &cut in cuts.iter().chain([&data.len()]) {
        let cut = cut.min(data.len()) / 4096 * 4096;
        if cut > at {
            w.write_pages(&data[at..cut]).unwrap();
            at = cut;
        }
    }
    assert_eq!(w.offset(), data.len() as u64);
    w.finish().unwrap()
}

#[test]
fn both_algorithms_round_trip_through_the_memfd() {
    let dir = tmpdir("rt");
    let data = pages(700, 3);
    for c in [
        Compression::parse("lz4").unwrap(),
        Compression::parse("zstd:3").unwrap(),
    ] {
        let path = write_compressed(&dir, c, &data, &[4096 * 5, 4096 * 300, 4096 * 301]);
        assert!(path.to_string_lossy().ends_with(c.algo.suffix()));
        assert!(std::fs::metadata(&path).unwrap().len() < data.len() as u64);
        assert_eq!(pages_len(&path).unwrap(), data.len() as u64);
        let mem = compress_read::open_pages(&path).unwrap();
        let mut back = vec![0u8; data.len()];
        mem.read_exact_at(&mut back, 0).unwrap();
        assert!(back == data, "{c:?}");
        let idx = read_index(&path, &std::fs::File::open(&path).unwrap()).unwrap();
        // 700 pages: two full blocks of 256 pages and one of 188.
        let lens: Vec<u32> = idx.blocks.iter().map(|b| b.raw_len).collect();
        assert_eq!(lens, vec![BLOCK as u32, BLOCK as u32, 188 * 4096]);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn standard_decoders_read_the_file_as_the_raw_pages() {
    // The skippable headers are skipped by zstd's own streaming decoder: `zstd -d` works.
    let dir = tmpdir("std");
    let data = pages(600, 9);
    let path = write_compressed(&dir, Compression::parse("zstd").unwrap(), &data, &[]);
    let back = zstd::stream::decode_all(std::fs::File::open(&path).unwrap()).unwrap();
    assert!(back == data);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn damage_is_an_error_naming_file_and_block_offset() {
    let dir = tmpdir("bad");
    let data = pages(600, 1);
    for c in [
        Compression::parse("lz4").unwrap(),
        Compression::parse("zstd").unwrap(),
    ] {
        let path = write_compressed(&dir, c, &data, &[]);
        let good = std::fs::read(&path).unwrap();
        let idx = read_index(&path, &std::fs::File::open(&path).unwrap()).unwrap();
        let second = idx.blocks[1].file_off - HEADER_LEN as u64;
        // A flipped byte inside the second block's frame.
        let mut bytes = good.clone();
        bytes[(idx.blocks[1].file_off + 40) as usize] ^= 0x5a;
        bytes[(idx.blocks[1].file_off + 41) as usize] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let e = compress_read::open_pages(&path).unwrap_err().to_string();
        assert!(e.contains(&path.display().to_string()), "{e}");
        assert!(e.contains(&format!("offset {second}")), "{c:?}: {e}");
        // A damaged header.
        let mut bytes = good.clone();
        bytes[second as usize + 9] = b'X';
        std::fs::write(&path, &bytes).unwrap();
        let e = pages_len(&path).unwrap_err().to_string();
        assert!(
            e.contains(&format!("offset {second}")) && e.contains("header"),
            "{e}"
        );
        // A cut file.
        std::fs::write(&path, &good[..good.len() - 7]).unwrap();
        let e = compress_read::open_pages(&path).unwrap_err().to_string();
        assert!(e.contains("past the end"), "{e}");
        std::fs::remove_file(&path).unwrap();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn options_parse() {
    assert_eq!(
        Compression::parse("zstd").unwrap().level,
        ZSTD_DEFAULT_LEVEL
    );
    assert_eq!(Compression::parse("zstd:-3").unwrap().level, -3);
    assert_eq!(Compression::parse("lz4").unwrap().algo, Algo::Lz4);
    for bad in ["lz4:1", "zstd:23", "zstd:x", "gzip", ""] {
        assert!(Compression::parse(bad).is_err(), "{bad}");
    }
    assert!(compress_read::is_compressed_pages_file("pages-12.img.zst"));
    assert!(!compress_read::is_compressed_pages_file("pages-.img.zst"));
    assert!(!compress_read::is_compressed_pages_file("pages-1.img"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn blocks_round_trip(npages in 1usize..=256, seed in any::<u8>(), zstd in any::<bool>()) {
        let c = Compression::parse(if zstd { "zstd" } else { "lz4" }).unwrap();
        let raw = pages(npages, seed);
        let block = compress_block(c, &raw).unwrap();
        let h: [u8; HEADER_LEN] = block[..HEADER_LEN].try_into().unwrap();
        let (rl, cl) = decode_header(&h).unwrap();
        prop_assert_eq!(rl as usize, raw.len());
        prop_assert_eq!(cl as usize, block.len() - HEADER_LEN);
        let mut out = vec![0u8; raw.len()];
        decompress_block(c.algo, &block[HEADER_LEN..], &mut out).unwrap();
        prop_assert!(out == raw);
    }

    #[test]
    fn garbage_frames_never_panic(frame in proptest::collection::vec(any::<u8>(), 0..600), zstd in any::<bool>()) {
        let algo = if zstd { Algo::Zstd } else { Algo::Lz4 };
        let mut out = vec![0u8; 8192];
        let _ = decompress_block(algo, &frame, &mut out);
    }
}
