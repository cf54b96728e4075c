//! Compressed pages files (`criu dump --compress lz4|zstd[:LEVEL]`, CRIU has no such option).
//!
//! The pages of `pages-N.img` go to `pages-N.img.lz4` or `pages-N.img.zst` instead, cut into
//! blocks of 1 MiB of pages, each compressed on its own (so blocks compress in parallel at dump
//! and decompress in parallel at restore). Each block is a skippable frame of ours followed by
//! one standard frame (an LZ4 frame or a zstd frame): skippable frames (magic
//! 0x184D2A50-0x184D2A5F) are defined alike by both formats and skipped by their decoders, so
//! `zstd -d pages-1.img.zst` or `lz4 -d pages-1.img.lz4` gives back CRIU's raw `pages-1.img`.
//!
//! Block header, 20 bytes, little-endian: magic `0x184D2A5C`, frame size 12, tag `CRZ1`,
//! `raw_len` (bytes of pages in the block, whole pages, at most 1 MiB), `comp_len` (bytes of
//! the frame after the header). The pagemap head says which algorithm
//! (`pagemap_head.criu_rs_compression`, README "What we add").

use std::io::{Read, Write};

/// Bytes of pages per block (the last block of a file may hold fewer).
pub const BLOCK: usize = 1 << 20;
/// Length of a block header.
pub const HEADER_LEN: usize = 20;
/// Magic of our skippable frame (one of the 16 values both formats reserve for them).
const SKIP_MAGIC: u32 = 0x184D_2A5C;
/// What follows the skippable frame's size word: our tag and version.
const TAG: [u8; 4] = *b"CRZ1";
/// The largest frame a 1 MiB block can need (both formats store incompressible data raw with
/// a small overhead); anything larger in a header is corruption.
pub const MAX_FRAME: usize = BLOCK + BLOCK / 128 + 1024;
/// zstd level used when `--compress zstd` gives none: fast, as a dump runs with the tree frozen.
pub const ZSTD_DEFAULT_LEVEL: i32 = 1;

/// A compression algorithm of the pages files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algo {
    /// LZ4 frames (lz4_flex): fastest.
    Lz4,
    /// zstd frames (libzstd): smaller.
    Zstd,
}

impl Algo {
    /// The name written in `pagemap_head.criu_rs_compression`.
    pub fn marker(self) -> &'static str {
        match self {
            Algo::Lz4 => "lz4",
            Algo::Zstd => "zstd",
        }
    }

    /// The algorithm a pagemap head's marker names.
    pub fn from_marker(s: &str) -> Option<Algo> {
        match s {
            "lz4" => Some(Algo::Lz4),
            "zstd" => Some(Algo::Zstd),
            _ => None,
        }
    }

    /// What the pages file's name gets appended (`pages-1.img.zst`).
    pub fn suffix(self) -> &'static str {
        match self {
            Algo::Lz4 => ".lz4",
            Algo::Zstd => ".zst",
        }
    }

    /// The algorithm of a pages file name (`None`: a raw `pages-N.img`).
    pub fn from_file_name(name: &str) -> Option<Algo> {
        [Algo::Lz4, Algo::Zstd]
            .into_iter()
            .find(|a| name.ends_with(a.suffix()))
    }
}

/// How a dump compresses its pages files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compression {
    /// The algorithm.
    pub algo: Algo,
    /// zstd's level (ignored by LZ4).
    pub level: i32,
}

impl Compression {
    /// Parses `--compress`'s value: `lz4`, `zstd` or `zstd:LEVEL` (-7..=22).
    pub fn parse(s: &str) -> Result<Compression, String> {
        let (name, level) = match s.split_once(':') {
            Some((n, l)) => (n, Some(l)),
            None => (s, None),
        };
        match (name, level) {
            ("lz4", None) => Ok(Compression {
                algo: Algo::Lz4,
                level: 0,
            }),
            ("lz4", Some(_)) => Err(format!("--compress {s}: lz4 takes no level")),
            ("zstd", None) => Ok(Compression {
                algo: Algo::Zstd,
                level: ZSTD_DEFAULT_LEVEL,
            }),
            ("zstd", Some(l)) => match l.parse::<i32>() {
                Ok(level) if (-7..=22).contains(&level) => Ok(Compression {
                    algo: Algo::Zstd,
                    level,
                }),
                _ => Err(format!("--compress {s}: the zstd level is -7..22")),
            },
            _ => Err(format!("--compress {s}: expected lz4, zstd or zstd:LEVEL")),
        }
    }
}

/// The header of a block of `raw_len` bytes of pages compressed into `comp_len` bytes.
pub fn encode_header(raw_len: u32, comp_len: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..4].copy_from_slice(&SKIP_MAGIC.to_le_bytes());
    h[4..8].copy_from_slice(&12u32.to_le_bytes());
    h[8..12].copy_from_slice(&TAG);
    h[12..16].copy_from_slice(&raw_len.to_le_bytes());
    h[16..20].copy_from_slice(&comp_len.to_le_bytes());
    h
}

/// Parses a block header into (raw_len, comp_len), checked against the format's bounds.
pub fn decode_header(h: &[u8; HEADER_LEN]) -> Result<(u32, u32), String> {
    let word = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    if word(0) != SKIP_MAGIC || word(4) != 12 || h[8..12] != TAG {
        return Err("not a criu-rs block header (magic 0x184D2A5C, size 12, tag CRZ1)".into());
    }
    let (raw, comp) = (word(12), word(16));
    if raw == 0 || raw as usize > BLOCK || !(raw as usize).is_multiple_of(super::PAGE_SIZE) {
        return Err(format!(
            "block of {raw} bytes of pages (whole pages, at most {BLOCK})"
        ));
    }
    if comp == 0 || comp as usize > MAX_FRAME {
        return Err(format!(
            "compressed frame of {comp} bytes (at most {MAX_FRAME})"
        ));
    }
    Ok((raw, comp))
}

/// Compresses one block: its header followed by its frame.
pub fn compress_block(c: Compression, raw: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(HEADER_LEN + raw.len() / 2);
    out.extend_from_slice(&[0u8; HEADER_LEN]);
    match c.algo {
        Algo::Lz4 => {
            use lz4_flex::frame::{BlockSize, FrameEncoder, FrameInfo};
            // The content checksum (xxh32) makes a damaged frame an error, not wrong pages.
            let info = FrameInfo::new()
                .block_size(BlockSize::Max1MB)
                .content_size(Some(raw.len() as u64))
                .content_checksum(true);
            let mut enc = FrameEncoder::with_frame_info(info, out);
            enc.write_all(raw)?;
            out = enc.finish().map_err(std::io::Error::other)?;
        }
        Algo::Zstd => {
            let frame = zstd_compress(raw, c.level)?;
            out.extend_from_slice(&frame);
        }
    }
    let comp_len = out.len() - HEADER_LEN;
    if raw.len() > BLOCK || comp_len > MAX_FRAME {
        return Err(std::io::Error::other(format!(
            "block of {} bytes compressed to {comp_len}",
            raw.len()
        )));
    }
    out[..HEADER_LEN].copy_from_slice(&encode_header(raw.len() as u32, comp_len as u32));
    Ok(out)
}

/// zstd with its frame checksum (xxh64: a damaged frame is an error, not wrong pages), one
/// compression context per thread and level (a context costs more to make than a block).
fn zstd_compress(raw: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    use std::cell::RefCell;
    thread_local! {
        static CTX: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
            const { RefCell::new(None) };
    }
    CTX.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|(l, _)| *l != level) {
            let mut z = zstd::bulk::Compressor::new(level)?;
            z.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))?;
            *slot = Some((level, z));
        }
        match slot.as_mut() {
            Some((_, z)) => z.compress(raw),
            None => Err(std::io::Error::other("no zstd context")),
        }
    })
}

/// Decompresses one frame into `out`, which must come out exactly full (its length is the
/// header's `raw_len`). Never panics on bad input: the error says what was wrong.
pub fn decompress_block(algo: Algo, frame: &[u8], out: &mut [u8]) -> Result<(), String> {
    match algo {
        Algo::Lz4 => {
            let mut dec = lz4_flex::frame::FrameDecoder::new(frame);
            dec.read_exact(out).map_err(|e| format!("lz4 frame: {e}"))?;
            let mut extra = [0u8; 1];
            match dec.read(&mut extra) {
                Ok(0) => {}
                Ok(_) => return Err("lz4 frame holds more than its block's bytes".into()),
                Err(e) => return Err(format!("lz4 frame: {e}")),
            }
            if dec.get_ref().is_empty() {
                Ok(())
            } else {
                Err("bytes after the lz4 frame".into())
            }
        }
        Algo::Zstd => {
            let n = zstd::bulk::decompress_to_buffer(frame, out)
                .map_err(|e| format!("zstd frame: {e}"))?;
            if n != out.len() {
                return Err(format!(
                    "zstd frame gave {n} bytes, the header says {}",
                    out.len()
                ));
            }
            Ok(())
        }
    }
}

#[cfg(test)]
#[path = "compress_tests.rs"]
mod tests;
