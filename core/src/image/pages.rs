//! Raw `pages-N.img` files: page contents back to back, 4 KiB each, indexed by the
//! `pagemap_entry` runs of `pagemap-<pid>.img` in order.

use std::fs::File;
use std::io::{BufWriter, IoSlice, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use std::sync::{Arc, Mutex};

use criu_proto::images::PagemapEntry;

use super::digest::{ChunkHasher, FileDigest};
use super::{ImageError, Result};

/// Where finished pages writers leave their digests (shared with their [`super::ImageDir`]).
pub(crate) type DigestSink = Arc<Mutex<Vec<FileDigest>>>;

/// Page size of the image format on x86_64.
pub const PAGE_SIZE: usize = 4096;
/// The run's pages are in the parent image (incremental dumps).
pub const PE_PARENT: u32 = 1 << 0;
/// The run's pages are served later by lazy-pages.
pub const PE_LAZY: u32 = 1 << 1;
/// The run's pages are in this pages file.
pub const PE_PRESENT: u32 = 1 << 2;

/// Buffer for page streams: few large writes.
const BUF_SIZE: usize = 4 << 20;

/// A pagemap entry as CRIU 4.x writes it: the count in the 64-bit `nr_pages`,
/// `compat_nr_pages` zero.
pub fn new_pagemap_entry(vaddr: u64, nr_pages: u64, flags: u32) -> PagemapEntry {
    PagemapEntry {
        vaddr,
        compat_nr_pages: 0,
        in_parent: None,
        flags: Some(flags),
        nr_pages: Some(nr_pages),
    }
}

/// Number of pages of an entry, from the 64-bit field or, in older images, the 32-bit one.
pub fn pagemap_nr_pages(e: &PagemapEntry) -> u64 {
    e.nr_pages.unwrap_or(u64::from(e.compat_nr_pages))
}

/// Flags of an entry; images older than the flags field only had `in_parent`.
pub fn pagemap_flags(e: &PagemapEntry) -> u32 {
    match e.flags {
        Some(f) => f,
        None if e.in_parent.unwrap_or(false) => PE_PARENT,
        None => PE_PRESENT,
    }
}

/// Byte offset in the pages file of each entry's data (`None` for entries whose pages are
/// not in this file, e.g. in the parent image).
pub fn page_offsets(entries: &[PagemapEntry]) -> Vec<Option<u64>> {
    let mut off = 0u64;
    entries
        .iter()
        .map(|e| {
            if pagemap_flags(e) & PE_PRESENT == 0 {
                return None;
            }
            let here = off;
            off = off.saturating_add(pagemap_nr_pages(e).saturating_mul(PAGE_SIZE as u64));
            Some(here)
        })
        .collect()
}

/// Writes a pages file with large buffered writes, digesting what it writes (the bytes are
/// hot in the cache: no second pass over the file). With compression
/// ([`PagesWriter::compressed`]) the pages are cut into blocks compressed on a pool of threads
/// and the digest covers the compressed file as stored.
#[derive(Debug)]
pub struct PagesWriter {
    path: PathBuf,
    out: BufWriter<File>,
    /// Bytes of pages written so far (of the raw pages, also when compressing).
    offset: u64,
    /// `None` once the caller took it to hash on its own thread ([`PagesWriter::take_hasher`]).
    hasher: Option<ChunkHasher>,
    digests: DigestSink,
    zip: Option<Zip>,
}

/// The compressing side of a [`PagesWriter`].
#[derive(Debug)]
struct Zip {
    pool: super::compress_pool::Pool,
    /// The block being filled (up to [`super::compress::BLOCK`] bytes).
    block: Vec<u8>,
    /// Bytes written to the file (headers and frames).
    stored: u64,
    /// Digest of the stored bytes (the caller's hasher sees raw pages, not these).
    hasher: ChunkHasher,
}

impl PagesWriter {
    pub(crate) fn new(file: File, path: PathBuf, digests: DigestSink) -> PagesWriter {
        PagesWriter {
            path,
            out: BufWriter::with_capacity(BUF_SIZE, file),
            offset: 0,
            hasher: Some(ChunkHasher::new()),
            digests,
            zip: None,
        }
    }

    /// A writer that compresses with `c` (the file's name carries the algorithm's suffix).
    pub(crate) fn compressed(
        file: File,
        path: PathBuf,
        digests: DigestSink,
        c: super::compress::Compression,
    ) -> Result<PagesWriter> {
        let pool = super::compress_pool::Pool::new(c).map_err(|source| ImageError::Write {
            path: path.clone(),
            offset: 0,
            source,
        })?;
        let mut w = PagesWriter::new(file, path, digests);
        w.zip = Some(Zip {
            pool,
            block: Vec::with_capacity(super::compress::BLOCK),
            stored: 0,
            hasher: ChunkHasher::new(),
        });
        Ok(w)
    }

    /// Feeds pages to the compressing pool, whole blocks at a time.
    fn zip_pages(&mut self, mut data: &[u8]) -> Result<()> {
        let Some(z) = &mut self.zip else {
            return Ok(());
        };
        let (out, path) = (&mut self.out, &self.path);
        while !data.is_empty() {
            let n = (super::compress::BLOCK - z.block.len()).min(data.len());
            z.block.extend_from_slice(&data[..n]);
            data = &data[n..];
            if z.block.len() == super::compress::BLOCK {
                let full =
                    std::mem::replace(&mut z.block, Vec::with_capacity(super::compress::BLOCK));
                let (stored, hasher) = (&mut z.stored, &mut z.hasher);
                z.pool
                    .submit(full, &mut |b| store(out, stored, hasher, b))
                    .map_err(|source| ImageError::Write {
                        path: path.clone(),
                        offset: *stored,
                        source,
                    })?;
            }
        }
        Ok(())
    }

    /// The last partial block, then every block still being compressed.
    fn zip_finish(&mut self) -> Result<()> {
        let Some(z) = &mut self.zip else {
            return Ok(());
        };
        let out = &mut self.out;
        let (stored, hasher) = (&mut z.stored, &mut z.hasher);
        let mut res = Ok(());
        if !z.block.is_empty() {
            let last = std::mem::take(&mut z.block);
            res = z.pool.submit(last, &mut |b| store(out, stored, hasher, b));
        }
        res.and_then(|()| z.pool.drain(&mut |b| store(out, stored, hasher, b)))
            .map_err(|source| ImageError::Write {
                path: self.path.clone(),
                offset: *stored,
                source,
            })
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes written so far (the offset the next page lands at).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Pages written so far.
    pub fn pages_written(&self) -> u64 {
        self.offset / PAGE_SIZE as u64
    }

    fn check_len(&self, len: usize) -> Result<()> {
        if !len.is_multiple_of(PAGE_SIZE) {
            return Err(ImageError::Unaligned {
                path: self.path.clone(),
                offset: self.offset,
                len: len as u64,
            });
        }
        Ok(())
    }

    /// Appends whole pages; returns the byte offset they start at.
    pub fn write_pages(&mut self, data: &[u8]) -> Result<u64> {
        self.check_len(data.len())?;
        let at = self.offset;
        if self.zip.is_some() {
            self.zip_pages(data)?;
            self.offset += data.len() as u64;
            return Ok(at);
        }
        if let Some(h) = &mut self.hasher {
            h.update(data);
        }
        self.out
            .write_all(data)
            .map_err(|source| ImageError::Write {
                path: self.path.clone(),
                offset: at,
                source,
            })?;
        self.offset += data.len() as u64;
        Ok(at)
    }

    /// Appends whole pages gathered from several buffers with writev (bypassing the
    /// buffer for large batches); returns the byte offset they start at.
    pub fn write_pages_vectored(&mut self, bufs: &[IoSlice<'_>]) -> Result<u64> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        self.check_len(total)?;
        let at = self.offset;
        if self.zip.is_some() {
            for b in bufs {
                self.zip_pages(b)?;
            }
            self.offset += total as u64;
            return Ok(at);
        }
        if let Some(h) = &mut self.hasher {
            for b in bufs {
                h.update(b);
            }
        }
        let werr = |source| ImageError::Write {
            path: self.path.clone(),
            offset: at,
            source,
        };
        if total < BUF_SIZE {
            for b in bufs {
                self.out.write_all(b).map_err(werr)?;
            }
        } else {
            self.out.flush().map_err(werr)?;
            let mut owned: Vec<IoSlice<'_>> = bufs.to_vec();
            let mut slices: &mut [IoSlice<'_>] = &mut owned;
            let file = self.out.get_mut();
            while !slices.is_empty() {
                match file.write_vectored(slices) {
                    Ok(0) => return Err(werr(std::io::ErrorKind::WriteZero.into())),
                    Ok(n) => IoSlice::advance_slices(&mut slices, n),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(werr(e)),
                }
            }
        }
        self.offset += total as u64;
        Ok(at)
    }

    /// Takes the digesting over: the caller feeds the returned hasher every byte it writes,
    /// in order (e.g. on the thread that gathers them, off the writing thread's critical
    /// path), and ends with [`PagesWriter::finish_with`].
    /// A compressing writer digests what it stores itself and gives no hasher.
    pub fn take_hasher(&mut self) -> Option<ChunkHasher> {
        if self.zip.is_some() {
            return None;
        }
        self.hasher.take()
    }

    /// Flushes the file, hands its digest to the images directory (written with the
    /// inventory) and returns its path.
    pub fn finish(mut self) -> Result<PathBuf> {
        let hasher = self.hasher.take();
        self.finish_inner(hasher)
    }

    /// [`PagesWriter::finish`] with the hasher given by [`PagesWriter::take_hasher`].
    pub fn finish_with(self, hasher: ChunkHasher) -> Result<PathBuf> {
        self.finish_inner(Some(hasher))
    }

    fn finish_inner(mut self, hasher: Option<ChunkHasher>) -> Result<PathBuf> {
        self.zip_finish()?;
        // A compressed file's digest is of its stored bytes, whatever the caller hashed.
        let hasher = match self.zip.take() {
            Some(z) => Some(z.hasher),
            None => hasher,
        };
        self.out.flush().map_err(|source| ImageError::Write {
            path: self.path.clone(),
            offset: self.offset,
            source,
        })?;
        // A taken hasher not given back: no digest, and restore then refuses the file as
        // undigested rather than trusting it.
        let Some(hasher) = hasher else {
            return Ok(self.path);
        };
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let digest = hasher.finish(name);
        let mut all = self.digests.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|d| d.name != digest.name);
        all.push(digest);
        Ok(self.path)
    }
}

/// Writes one compressed block (header and frame) and digests it.
fn store(
    out: &mut BufWriter<File>,
    stored: &mut u64,
    hasher: &mut ChunkHasher,
    b: &[u8],
) -> std::io::Result<()> {
    out.write_all(b)?;
    hasher.update(b);
    *stored += b.len() as u64;
    Ok(())
}

/// Reads a pages file at given offsets. Restore may instead hand [`PagesReader::path`] to the
/// restored task, which reads its pages itself from the offsets of [`page_offsets`].
#[derive(Debug)]
pub struct PagesReader {
    path: PathBuf,
    file: File,
    size: u64,
}

impl PagesReader {
    pub(crate) fn open(path: PathBuf) -> Result<PagesReader> {
        let file = File::open(&path).map_err(|source| ImageError::Open {
            path: path.clone(),
            source,
        })?;
        let size = file
            .metadata()
            .map_err(|source| ImageError::Open {
                path: path.clone(),
                source,
            })?
            .len();
        if !size.is_multiple_of(PAGE_SIZE as u64) {
            return Err(ImageError::Unaligned {
                path,
                offset: 0,
                len: size,
            });
        }
        Ok(PagesReader { path, file, size })
    }

    /// The pages file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open file (to pass its fd on).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Fills `buf` (whole pages) from byte `offset`.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        if !buf.len().is_multiple_of(PAGE_SIZE) || !offset.is_multiple_of(PAGE_SIZE as u64) {
            return Err(ImageError::Unaligned {
                path: self.path.clone(),
                offset,
                len: buf.len() as u64,
            });
        }
        self.file
            .read_exact_at(buf, offset)
            .map_err(|source| ImageError::Read {
                path: self.path.clone(),
                offset,
                source,
            })
    }
}
