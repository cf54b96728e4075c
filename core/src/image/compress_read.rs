//! Reading compressed pages files ([`super::compress`]): the block index (one small read per
//! block header), and the whole file decompressed in parallel into a memfd that restore uses
//! in place of a raw `pages-N.img` (the tasks `pread` their pages from it, as from the file).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::compress::{self, Algo, HEADER_LEN};
use super::{ImageError, Result};

/// One block of a compressed pages file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRef {
    /// Offset of its frame in the file (after its header).
    pub file_off: u64,
    /// Bytes of the frame.
    pub comp_len: u32,
    /// Offset of its pages in the raw pages (what `pages-N.img` would hold).
    pub raw_off: u64,
    /// Bytes of pages.
    pub raw_len: u32,
}

/// The blocks of a compressed pages file, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockIndex {
    /// Every block.
    pub blocks: Vec<BlockRef>,
    /// Bytes of pages in all (the size of the raw pages file).
    pub raw_len: u64,
}

fn bad(path: &Path, offset: u64, what: impl Into<String>) -> ImageError {
    ImageError::BadBlock {
        path: path.to_path_buf(),
        offset,
        what: what.into(),
    }
}

/// Walks the block headers of `file` (`path` names it in errors).
pub fn read_index(path: &Path, file: &File) -> Result<BlockIndex> {
    let size = file
        .metadata()
        .map_err(|source| ImageError::Open {
            path: path.to_path_buf(),
            source,
        })?
        .len();
    let mut idx = BlockIndex::default();
    let mut at = 0u64;
    let mut h = [0u8; HEADER_LEN];
    while at < size {
        if size - at < HEADER_LEN as u64 {
            return Err(bad(path, at, "truncated block header"));
        }
        file.read_exact_at(&mut h, at)
            .map_err(|source| ImageError::Read {
                path: path.to_path_buf(),
                offset: at,
                source,
            })?;
        let (raw_len, comp_len) = compress::decode_header(&h).map_err(|w| bad(path, at, w))?;
        let file_off = at + HEADER_LEN as u64;
        if size - file_off < u64::from(comp_len) {
            return Err(bad(
                path,
                at,
                format!("frame of {comp_len} bytes runs past the end of the file"),
            ));
        }
        idx.blocks.push(BlockRef {
            file_off,
            comp_len,
            raw_off: idx.raw_len,
            raw_len,
        });
        idx.raw_len += u64::from(raw_len);
        at = file_off + u64::from(comp_len);
    }
    Ok(idx)
}

/// Decompresses block `b` of `file` into `out` (`raw_len` bytes), reusing `frame` as buffer.
pub fn read_block(
    path: &Path,
    file: &File,
    algo: Algo,
    b: &BlockRef,
    frame: &mut Vec<u8>,
    out: &mut [u8],
) -> Result<()> {
    frame.resize(b.comp_len as usize, 0);
    file.read_exact_at(frame, b.file_off)
        .map_err(|source| ImageError::Read {
            path: path.to_path_buf(),
            offset: b.file_off,
            source,
        })?;
    compress::decompress_block(algo, frame, out)
        .map_err(|w| bad(path, b.file_off - HEADER_LEN as u64, w))
}

/// The size of the raw pages a pages file holds: its length, or for a compressed one
/// (named `*.lz4`/`*.zst`) the sum of its blocks.
pub fn pages_len(path: &Path) -> Result<u64> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let open = |source| ImageError::Open {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(open)?;
    match name.as_deref().and_then(Algo::from_file_name) {
        None => Ok(file.metadata().map_err(open)?.len()),
        Some(_) => Ok(read_index(path, &file)?.raw_len),
    }
}

/// Opens a pages file for reading pages at raw offsets: a raw file as it is; a compressed
/// one decompressed (all blocks, on every CPU) into a memfd, which is returned instead.
pub fn open_pages(path: &Path) -> Result<File> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let file = File::open(path).map_err(|source| ImageError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    match name.as_deref().and_then(Algo::from_file_name) {
        None => Ok(file),
        Some(algo) => decompress_to_memfd(path, &file, algo),
    }
}

fn decompress_to_memfd(path: &Path, file: &File, algo: Algo) -> Result<File> {
    let t = std::time::Instant::now();
    let idx = read_index(path, file)?;
    let mem_err = |source: std::io::Error| ImageError::Write {
        path: path.to_path_buf(),
        offset: 0,
        source,
    };
    let fd = nix::sys::memfd::memfd_create(c"criu-pages", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
        .map_err(|e| mem_err(e.into()))?;
    let mem = File::from(fd);
    mem.set_len(idx.raw_len).map_err(mem_err)?;
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(idx.blocks.len())
        .max(1);
    let work = |k: usize| -> Result<()> {
        let (mut frame, mut raw) = (Vec::new(), vec![0u8; compress::BLOCK]);
        for b in idx.blocks.iter().skip(k).step_by(threads) {
            let out = &mut raw[..b.raw_len as usize];
            read_block(path, file, algo, b, &mut frame, out)?;
            mem.write_all_at(out, b.raw_off)
                .map_err(|source| ImageError::Write {
                    path: path.to_path_buf(),
                    offset: b.raw_off,
                    source,
                })?;
        }
        Ok(())
    };
    std::thread::scope(|s| {
        let others: Vec<_> = (1..threads).map(|k| s.spawn(move || work(k))).collect();
        let mine = work(0);
        // The first error in block order would be nicer; any one names file and offset.
        others
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(bad(path, 0, "a decompressing thread panicked")))
            })
            .fold(mine, |acc, r| acc.and(r))
    })?;
    tracing::debug!(
        path = %path.display(),
        bytes = idx.raw_len,
        blocks = idx.blocks.len(),
        us = t.elapsed().as_micros() as u64,
        "pages decompressed"
    );
    Ok(mem)
}

/// The pages file a pagemap head names: `pages-N.img`, with the suffix of the compression its
/// `criu_rs_compression` marker names. An unknown marker is an error (a newer criu-rs's).
pub fn pages_file_name(
    head: &criu_proto::images::PagemapHead,
) -> std::result::Result<String, String> {
    let raw = format!("pages-{}.img", head.pages_id);
    match head.criu_rs_compression.as_deref() {
        None => Ok(raw),
        Some(m) => match Algo::from_marker(m) {
            Some(a) => Ok(format!("{raw}{}", a.suffix())),
            None => Err(format!(
                "pagemap_head.criu_rs_compression {m:?} is not a compression this criu reads (lz4, zstd)"
            )),
        },
    }
}

/// Whether `name` is a compressed pages file name (`pages-N.img.lz4`, `pages-N.img.zst`).
pub fn is_compressed_pages_file(name: &str) -> bool {
    Algo::from_file_name(name).is_some_and(|a| {
        name.strip_suffix(a.suffix())
            .and_then(|r| r.strip_prefix("pages-"))
            .and_then(|r| r.strip_suffix(".img"))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    })
}
