//! [`ImageWriter`]: streams length-prefixed entries (and their extra payloads) to one file.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use criu_proto::framing;
use prost::Message;

use super::{ImageError, ImageKind, Result};

/// Buffer size for entry streams: large enough that big images go out in few writes.
const BUF_SIZE: usize = 256 * 1024;

/// Writes one image file entry by entry. Call [`ImageWriter::finish`] to flush and learn of
/// write errors; a writer that failed refuses further entries.
#[derive(Debug)]
pub struct ImageWriter {
    kind: ImageKind,
    path: PathBuf,
    out: BufWriter<File>,
    offset: u64,
    entries: usize,
    poisoned: bool,
    scratch: Vec<u8>,
}

impl ImageWriter {
    pub(crate) fn new(kind: ImageKind, file: File, path: PathBuf) -> Result<ImageWriter> {
        let header = framing::header_bytes(kind).map_err(|source| ImageError::Corrupt {
            path: path.clone(),
            source,
        })?;
        let mut w = ImageWriter {
            kind,
            path,
            out: BufWriter::with_capacity(BUF_SIZE, file),
            offset: 0,
            entries: 0,
            poisoned: false,
            scratch: Vec::new(),
        };
        w.put(&header)?;
        Ok(w)
    }

    /// The image kind being written.
    pub fn kind(&self) -> ImageKind {
        self.kind
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Entries written so far.
    pub fn entries(&self) -> usize {
        self.entries
    }

    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        if self.poisoned {
            return Err(ImageError::Poisoned {
                path: self.path.clone(),
            });
        }
        if let Err(source) = self.out.write_all(bytes) {
            self.poisoned = true;
            return Err(ImageError::Write {
                path: self.path.clone(),
                offset: self.offset,
                source,
            });
        }
        self.offset += bytes.len() as u64;
        Ok(())
    }

    /// Appends one entry.
    pub fn write_entry<M: Message>(&mut self, msg: &M) -> Result<()> {
        self.write_entry_with_extra(msg, &[])
    }

    /// Appends one entry followed by raw bytes (pipe data, socket queue, ...); the entry
    /// must state their size the way its kind expects.
    pub fn write_entry_with_extra<M: Message>(&mut self, msg: &M, extra: &[u8]) -> Result<()> {
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        let framed = framing::frame_message(&mut buf, msg);
        let res = match framed {
            Ok(()) => self.put(&buf).and_then(|()| self.put(extra)),
            Err(source) => Err(ImageError::Corrupt {
                path: self.path.clone(),
                source,
            }),
        };
        self.scratch = buf;
        res?;
        self.entries += 1;
        Ok(())
    }

    /// Appends an already encoded entry and its extra bytes.
    pub fn write_raw_entry(&mut self, payload: &[u8], extra: &[u8]) -> Result<()> {
        let len = u32::try_from(payload.len()).map_err(|_| ImageError::Corrupt {
            path: self.path.clone(),
            source: criu_proto::FramingError::TooLarge {
                index: self.entries,
                len: payload.len(),
            },
        })?;
        self.put(&len.to_le_bytes())?;
        self.put(payload)?;
        self.put(extra)?;
        self.entries += 1;
        Ok(())
    }

    /// Flushes the file and returns its path.
    pub fn finish(mut self) -> Result<PathBuf> {
        if self.poisoned {
            return Err(ImageError::Poisoned { path: self.path });
        }
        self.out.flush().map_err(|source| ImageError::Write {
            path: self.path.clone(),
            offset: self.offset,
            source,
        })?;
        Ok(self.path)
    }
}
