//! Compressed pages blocks (`--compress`): arbitrary bytes through the block header parser
//! and both frame decoders. Damage is an error, never a panic; an accepted header is within
//! the format's bounds, and a block compressed from the decoded pages decodes back to them.
//!
//! The first byte picks the algorithm (even: LZ4, odd: zstd); then a 20-byte header and the
//! frame.
#![no_main]

use criu_core::image::compress::{
    Algo, BLOCK, Compression, HEADER_LEN, MAX_FRAME, compress_block, decode_header,
    decompress_block,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let algo = if which % 2 == 0 { Algo::Lz4 } else { Algo::Zstd };
    if rest.len() < HEADER_LEN {
        // Too short for a header: still a frame to try, into one page.
        let mut out = vec![0u8; 4096];
        let _ = decompress_block(algo, rest, &mut out);
        return;
    }
    let (head, frame) = rest.split_at(HEADER_LEN);
    let head: [u8; HEADER_LEN] = head.try_into().expect("20 bytes");
    let Ok((raw_len, comp_len)) = decode_header(&head) else {
        return;
    };
    assert!(raw_len as usize <= BLOCK && raw_len % 4096 == 0 && raw_len > 0);
    assert!(comp_len as usize <= MAX_FRAME && comp_len > 0);
    let frame = &frame[..frame.len().min(comp_len as usize)];
    let mut out = vec![0u8; raw_len as usize];
    if decompress_block(algo, frame, &mut out).is_ok() {
        let c = Compression { algo, level: 1 };
        let again = compress_block(c, &out).expect("compress decoded pages");
        let mut back = vec![0u8; raw_len as usize];
        decompress_block(algo, &again[HEADER_LEN..], &mut back).expect("round trip");
        assert!(back == out);
    }
});
