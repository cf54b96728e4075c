//! Integrity of the raw `pages-N.img` files: `criu-rs-pages-digest.bin`, a file of ours that
//! CRIU and crit never open (no CRIU image has that name, and it does not end in `.img`, so
//! tools decoding every `*.img` of a directory skip it too), written at dump beside the pages
//! and checked at restore and by `criu check-images`.
//!
//! Each pages file is cut into chunks of [`CHUNK`] bytes (the last one may be shorter), and
//! each chunk gets an XXH3-128 digest, so a damaged byte is located to one MiB of the file.
//! XXH3 is not cryptographic: it finds accidental damage (disk, copy, truncation), not
//! tampering (whoever can rewrite the pages can rewrite the digest beside them).
//!
//! Format, all integers little-endian:
//!
//! | field | size |
//! |---|---|
//! | magic `CRRSPGD1` | 8 |
//! | format version (1) | u32 |
//! | algorithm (1 = XXH3-128 per chunk) | u32 |
//! | chunk size in bytes (1 MiB) | u64 |
//! | number of files | u32 |
//! | per file: name length, name (UTF-8, a bare file name) | u16 + n |
//! | per file: size in bytes, number of chunks | u64 + u32 |
//! | per file: one digest per chunk | 16 each |
//! | XXH3-128 of every byte above (guards this file itself) | 16 |

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use xxhash_rust::xxh3::{Xxh3, xxh3_128};

/// The digest image's file name in an images directory.
pub const DIGEST_FILE: &str = "criu-rs-pages-digest.bin";
/// Bytes per digested chunk.
pub const CHUNK: u64 = 1 << 20;

const MAGIC: &[u8; 8] = b"CRRSPGD1";
const VERSION: u32 = 1;
const ALGO_XXH3_128: u32 = 1;
/// Bytes read at once when checking a file.
const READ_PIECE: usize = 128 << 10;
/// More files than any dump writes: a count above it is damage, not a reason to allocate.
const MAX_FILES: u32 = 1 << 20;

/// A failed digest operation; each names the file and, where it applies, the byte range.
#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    /// A pages or digest file could not be opened or examined.
    #[error("cannot open {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Reading a pages file failed.
    #[error("cannot read {path} at offset {offset}")]
    Read {
        path: PathBuf,
        offset: u64,
        #[source]
        source: std::io::Error,
    },
    /// The digest image itself is malformed.
    #[error("{path} is damaged at offset {offset}: {what}")]
    Format {
        path: PathBuf,
        offset: u64,
        what: String,
    },
    /// A pages file does not have the size recorded at dump.
    #[error("{path} has {found} bytes, {digest} recorded {expected} at dump")]
    Size {
        path: PathBuf,
        digest: &'static str,
        expected: u64,
        found: u64,
    },
    /// Bytes of a pages file differ from what was dumped.
    #[error(
        "{path} is damaged: bytes {start:#x}-{end:#x} (pages {first_page}-{last_page}) do not match {digest}"
    )]
    Mismatch {
        path: PathBuf,
        digest: &'static str,
        start: u64,
        end: u64,
        first_page: u64,
        last_page: u64,
    },
    /// Pages were to be checked but the directory has no digest image.
    #[error(
        "{path} is missing: these images carry no pages digest (CRIU writes none); restore without --verify-pages"
    )]
    Absent { path: PathBuf },
    /// A pages file of the directory is not in the digest image.
    #[error("{path} has no digest in {digest} (the dump wrote one for every pages file)")]
    Missing { path: PathBuf, digest: &'static str },
}

/// The digests of one pages file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDigest {
    /// Bare file name, e.g. `pages-1.img`.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// One digest per [`CHUNK`] bytes, in order.
    pub chunks: Vec<u128>,
}

/// Digests a byte stream written in pieces of any size, chunk by chunk.
#[derive(Default)]
pub struct ChunkHasher {
    state: Xxh3,
    in_chunk: u64,
    size: u64,
    chunks: Vec<u128>,
}

impl std::fmt::Debug for ChunkHasher {
    // Xxh3's state has no Debug: show where the stream is.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkHasher")
            .field("size", &self.size)
            .field("chunks", &self.chunks.len())
            .finish()
    }
}

impl ChunkHasher {
    /// A hasher at offset 0.
    pub fn new() -> ChunkHasher {
        ChunkHasher::default()
    }

    /// Adds the next bytes of the stream.
    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let room = (CHUNK - self.in_chunk) as usize;
            let n = room.min(data.len());
            if self.in_chunk == 0 && n == CHUNK as usize {
                // A whole chunk at once: the one-shot function skips the streaming buffer.
                self.chunks.push(xxh3_128(&data[..n]));
            } else {
                self.state.update(&data[..n]);
                self.in_chunk += n as u64;
                if self.in_chunk == CHUNK {
                    self.chunks.push(self.state.digest128());
                    self.state.reset();
                    self.in_chunk = 0;
                }
            }
            self.size += n as u64;
            data = &data[n..];
        }
    }

    /// The digests of the file named `name`.
    pub fn finish(mut self, name: String) -> FileDigest {
        if self.in_chunk > 0 {
            self.chunks.push(self.state.digest128());
        }
        FileDigest {
            name,
            size: self.size,
            chunks: self.chunks,
        }
    }
}

/// Encodes the digest image of `files`.
pub fn encode(files: &[FileDigest]) -> Vec<u8> {
    let digests: usize = files.iter().map(|f| f.chunks.len()).sum();
    let mut out = Vec::with_capacity(64 + files.len() * 32 + digests * 16);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&ALGO_XXH3_128.to_le_bytes());
    out.extend_from_slice(&CHUNK.to_le_bytes());
    out.extend_from_slice(&(files.len() as u32).to_le_bytes());
    for f in files {
        // Names are ours (`pages-N.img`): far below u16::MAX.
        out.extend_from_slice(&(f.name.len() as u16).to_le_bytes());
        out.extend_from_slice(f.name.as_bytes());
        out.extend_from_slice(&f.size.to_le_bytes());
        out.extend_from_slice(&(f.chunks.len() as u32).to_le_bytes());
        for c in &f.chunks {
            out.extend_from_slice(&c.to_le_bytes());
        }
    }
    let sum = xxh3_128(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

/// A bounds-checked reader over the digest image's bytes.
struct Cursor<'a> {
    path: &'a Path,
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn bad(&self, what: impl Into<String>) -> DigestError {
        DigestError::Format {
            path: self.path.to_path_buf(),
            offset: self.at as u64,
            what: what.into(),
        }
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&[u8], DigestError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(self.bad(format!("file ends inside the {what}")));
        };
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], DigestError> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u16(&mut self, what: &str) -> Result<u16, DigestError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &str) -> Result<u32, DigestError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, DigestError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
}

/// Decodes a digest image read from `path` (named in errors). Never panics on bad input.
pub fn decode(path: &Path, bytes: &[u8]) -> Result<Vec<FileDigest>, DigestError> {
    let mut c = Cursor { path, bytes, at: 0 };
    if c.take(MAGIC.len(), "magic")? != MAGIC {
        c.at = 0;
        return Err(c.bad("not a criu-rs pages digest (bad magic)"));
    }
    let body_len = bytes.len().saturating_sub(16);
    if body_len < MAGIC.len() {
        return Err(c.bad("no room for the trailing checksum"));
    }
    let stored = u128::from_le_bytes(bytes[body_len..].try_into().unwrap_or([0; 16]));
    if xxh3_128(&bytes[..body_len]) != stored {
        c.at = body_len;
        return Err(c.bad("the checksum of the digest image itself does not match"));
    }
    c.bytes = &bytes[..body_len];
    let version = c.u32("version")?;
    if version != VERSION {
        return Err(c.bad(format!(
            "format version {version}, this criu reads {VERSION}"
        )));
    }
    let algo = c.u32("algorithm")?;
    if algo != ALGO_XXH3_128 {
        return Err(c.bad(format!("unknown digest algorithm {algo}")));
    }
    let chunk = c.u64("chunk size")?;
    if chunk != CHUNK {
        return Err(c.bad(format!("chunk size {chunk}, this criu uses {CHUNK}")));
    }
    let n = c.u32("file count")?;
    if n > MAX_FILES {
        return Err(c.bad(format!("{n} files")));
    }
    let mut files = Vec::new();
    for _ in 0..n {
        let len = c.u16("name length")? as usize;
        let name = String::from_utf8(c.take(len, "name")?.to_vec())
            .map_err(|_| c.bad("a file name is not UTF-8"))?;
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(c.bad(format!("{name:?} is not a bare pages file name")));
        }
        let size = c.u64("file size")?;
        let count = c.u32("chunk count")?;
        if u64::from(count) != size.div_ceil(CHUNK) {
            return Err(c.bad(format!(
                "{name}: {count} chunks for {size} bytes, expected {}",
                size.div_ceil(CHUNK)
            )));
        }
        // Bounded by the bytes left, so a huge count cannot allocate before failing.
        let raw = c.take(count as usize * 16, "digests")?;
        let chunks = raw
            .chunks_exact(16)
            .map(|d| u128::from_le_bytes(d.try_into().unwrap_or([0; 16])))
            .collect();
        files.push(FileDigest { name, size, chunks });
    }
    if c.at != c.bytes.len() {
        return Err(c.bad("trailing bytes after the last file"));
    }
    Ok(files)
}

/// Reads and decodes `dir`'s digest image; `Ok(None)` when it has none (images of CRIU, or
/// of a criu-rs before digests).
pub fn read(dir: &Path) -> Result<Option<Vec<FileDigest>>, DigestError> {
    let path = dir.join(DIGEST_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => decode(&path, &bytes).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(DigestError::Open { path, source }),
    }
}

/// Checks the pages file `dir/<d.name>` against `d`, reading it in chunks (no mapping, one
/// reused buffer); the first damaged chunk is the error. Returns early, with `Ok`, once
/// `stop` is set (the caller gave up).
pub fn verify_file(dir: &Path, d: &FileDigest, stop: &AtomicBool) -> Result<(), DigestError> {
    let path = dir.join(&d.name);
    let open = |source| DigestError::Open {
        path: path.clone(),
        source,
    };
    let file = File::open(&path).map_err(open)?;
    let found = file.metadata().map_err(open)?.len();
    if found != d.size {
        return Err(DigestError::Size {
            path,
            digest: DIGEST_FILE,
            expected: d.size,
            found,
        });
    }
    // Reads of 128 KiB land in a buffer that stays in the CPU's cache for the hash: the
    // pass costs about one read of the file from the page cache.
    let mut buf = vec![0u8; READ_PIECE];
    for (i, want) in d.chunks.iter().enumerate() {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let start = i as u64 * CHUNK;
        let len = (d.size - start).min(CHUNK);
        let mut state = Xxh3::new();
        let mut at = 0;
        while at < len {
            let n = (len - at).min(READ_PIECE as u64) as usize;
            file.read_exact_at(&mut buf[..n], start + at)
                .map_err(|source| DigestError::Read {
                    path: path.clone(),
                    offset: start + at,
                    source,
                })?;
            state.update(&buf[..n]);
            at += n as u64;
        }
        if state.digest128() != *want {
            let end = start + len;
            return Err(DigestError::Mismatch {
                path,
                digest: DIGEST_FILE,
                start,
                end: end - 1,
                first_page: start / super::PAGE_SIZE as u64,
                last_page: (end - 1) / super::PAGE_SIZE as u64,
            });
        }
    }
    Ok(())
}

/// Whether `name` is a pages file name (`pages-N.img`, or compressed `pages-N.img.lz4` /
/// `pages-N.img.zst`, digested as stored).
pub fn is_pages_file(name: &str) -> bool {
    super::compress_read::is_compressed_pages_file(name) || is_raw_pages_file(name)
}

fn is_raw_pages_file(name: &str) -> bool {
    name.strip_prefix("pages-")
        .and_then(|r| r.strip_suffix(".img"))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// What [`verify_dir`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirDigest {
    /// The directory has no digest image: nothing was checked.
    Absent,
    /// Every pages file matched: how many files and bytes.
    Verified { files: usize, bytes: u64 },
}

/// Checks every pages file of `dir` against its digest image: each listed file must match,
/// and each `pages-N.img` of the directory must be listed.
pub fn verify_dir(dir: &Path) -> Result<DirDigest, DigestError> {
    let Some(files) = read(dir)? else {
        return Ok(DirDigest::Absent);
    };
    all_listed(dir, &files)?;
    let never = AtomicBool::new(false);
    let mut bytes = 0;
    for f in &files {
        verify_file(dir, f, &never)?;
        bytes += f.size;
    }
    Ok(DirDigest::Verified {
        files: files.len(),
        bytes,
    })
}

/// Every `pages-N.img` of `dir` must be in `files` (the dump digests all it writes).
pub fn all_listed(dir: &Path, files: &[FileDigest]) -> Result<(), DigestError> {
    let entries = std::fs::read_dir(dir).map_err(|source| DigestError::Open {
        path: dir.to_path_buf(),
        source,
    })?;
    for e in entries {
        let e = e.map_err(|source| DigestError::Open {
            path: dir.to_path_buf(),
            source,
        })?;
        let name = e.file_name();
        let name = name.to_string_lossy();
        if is_pages_file(&name) && !files.iter().any(|f| f.name == name) {
            return Err(DigestError::Missing {
                path: e.path(),
                digest: DIGEST_FILE,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "digest_tests.rs"]
mod tests;
