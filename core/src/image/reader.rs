//! Reading images back: whole files through the framing codec, big ones entry by entry.

use std::fs::File;
use std::io::{BufReader, ErrorKind, Read};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use criu_proto::framing::{self, FramingError};
use criu_proto::images::{PagemapEntry, PagemapHead};
use criu_proto::{ExtraPayload, Framing};
use prost::Message;

use super::{ImageDir, ImageError, ImageKind, RawImage, Result};

impl ImageDir {
    /// The whole file of `kind` for `id`.
    pub fn read_bytes(&self, kind: ImageKind, id: u64) -> Result<(PathBuf, Vec<u8>)> {
        let path = self.file_path(kind, id);
        let data = std::fs::read(&path).map_err(|source| ImageError::Open {
            path: path.clone(),
            source,
        })?;
        Ok((path, data))
    }

    /// Parses the image of `kind` for `id` into entries and extra payloads.
    pub fn read_raw(&self, kind: ImageKind, id: u64) -> Result<RawImage> {
        let (path, data) = self.read_bytes(kind, id)?;
        framing::parse_as(kind, &data).map_err(|source| ImageError::Corrupt { path, source })
    }

    /// The one entry of a single-entry image (core, mm, fs, ids, inventory, ...).
    pub fn read_single<M: Message + Default>(&self, kind: ImageKind, id: u64) -> Result<M> {
        let mut v = self.read_all::<M>(kind, id)?;
        if v.len() != 1 {
            return Err(ImageError::EntryCount {
                path: self.file_path(kind, id),
                count: v.len(),
            });
        }
        Ok(v.remove(0))
    }

    /// Like [`ImageDir::read_single`], but `None` when the file does not exist.
    pub fn read_single_opt<M: Message + Default>(
        &self,
        kind: ImageKind,
        id: u64,
    ) -> Result<Option<M>> {
        match self.read_single(kind, id) {
            Err(ImageError::Open { source, .. }) if source.kind() == ErrorKind::NotFound => {
                Ok(None)
            }
            other => other.map(Some),
        }
    }

    /// Frames the image of `kind` for `id`; entries are checked when decoded.
    fn read_split(&self, kind: ImageKind, id: u64) -> Result<RawImage> {
        let (path, data) = self.read_bytes(kind, id)?;
        framing::split_as(kind, &data).map_err(|source| ImageError::Corrupt { path, source })
    }

    /// Every entry of an image whose entries are all `M` (not pagemap or ghost files: see
    /// [`ImageDir::read_pagemap`] and [`ImageDir::read_raw`]).
    pub fn read_all<M: Message + Default>(&self, kind: ImageKind, id: u64) -> Result<Vec<M>> {
        self.uniform(kind, id, "read_all")?;
        let img = self.read_split(kind, id)?;
        img.decode_entries().map_err(|source| ImageError::Corrupt {
            path: self.file_path(kind, id),
            source,
        })
    }

    /// `pagemap-<pid>.img`: its head and its entries.
    pub fn read_pagemap(&self, pid: u64) -> Result<(PagemapHead, Vec<PagemapEntry>)> {
        self.read_pagemap_of(ImageKind::Pagemap, pid)
    }

    /// A pagemap image of `kind` ([`ImageKind::Pagemap`] or [`ImageKind::ShmemPagemap`]) for
    /// `id`: its head and its entries.
    pub fn read_pagemap_of(
        &self,
        kind: ImageKind,
        id: u64,
    ) -> Result<(PagemapHead, Vec<PagemapEntry>)> {
        let pid = id;
        let path = self.file_path(kind, pid);
        let img = self.read_split(kind, pid)?;
        let corrupt = |source| ImageError::Corrupt {
            path: path.clone(),
            source,
        };
        let Some((head, rest)) = img.entries.split_first() else {
            return Err(ImageError::NoPagemapHead { path });
        };
        let head = PagemapHead::decode(head.payload.as_slice()).map_err(|source| {
            corrupt(FramingError::Decode {
                offset: head.offset,
                message: "pagemap_head",
                source,
            })
        })?;
        let entries = rest
            .iter()
            .map(|e| {
                PagemapEntry::decode(e.payload.as_slice()).map_err(|source| {
                    corrupt(FramingError::Decode {
                        offset: e.offset,
                        message: "pagemap_entry",
                        source,
                    })
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((head, entries))
    }

    /// Streams the entries of a big image without loading it whole. Only for kinds whose
    /// entries are all `M` and carry no extra payload.
    pub fn iter<M: Message + Default>(&self, kind: ImageKind, id: u64) -> Result<EntryIter<M>> {
        self.uniform(kind, id, "iter")?;
        if kind.extra_payload() != ExtraPayload::None {
            return Err(ImageError::WrongKind {
                kind,
                what: "iter (entries carry extra payloads; use read_raw)",
                path: self.file_path(kind, id),
            });
        }
        EntryIter::open(kind, self.file_path(kind, id))
    }

    /// Streams a pagemap: the head, then an iterator over its entries.
    pub fn iter_pagemap(&self, pid: u64) -> Result<(PagemapHead, EntryIter<PagemapEntry>)> {
        let mut it = EntryIter::<PagemapHead>::open(
            ImageKind::Pagemap,
            self.file_path(ImageKind::Pagemap, pid),
        )?;
        let head = match it.next() {
            Some(h) => h?,
            None => {
                return Err(ImageError::NoPagemapHead {
                    path: it.path.clone(),
                });
            }
        };
        Ok((head, it.retype()))
    }

    fn uniform(&self, kind: ImageKind, id: u64, what: &'static str) -> Result<()> {
        let bad = matches!(
            kind,
            ImageKind::Pagemap | ImageKind::ShmemPagemap | ImageKind::GhostFile
        ) || matches!(kind.framing(), Framing::Raw | Framing::Legacy);
        if bad {
            return Err(ImageError::WrongKind {
                kind,
                what,
                path: self.file_path(kind, id),
            });
        }
        Ok(())
    }
}

/// Iterator over the entries of one image file, read through a buffer.
#[derive(Debug)]
pub struct EntryIter<M> {
    kind: ImageKind,
    path: PathBuf,
    input: BufReader<File>,
    offset: u64,
    size: u64,
    done: bool,
    _msg: PhantomData<fn() -> M>,
}

impl<M: Message + Default> EntryIter<M> {
    fn open(kind: ImageKind, path: PathBuf) -> Result<EntryIter<M>> {
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
        let mut it = EntryIter {
            kind,
            path,
            input: BufReader::with_capacity(128 * 1024, file),
            offset: 0,
            size,
            done: false,
            _msg: PhantomData,
        };
        let hlen = framing::header_bytes(kind).map(|h| h.len()).unwrap_or(0);
        let mut header = vec![0u8; hlen];
        let got = it.fill(&mut header)?;
        framing::check_header(kind, &header[..got]).map_err(|source| ImageError::Corrupt {
            path: it.path.clone(),
            source,
        })?;
        Ok(it)
    }

    /// The file being read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn retype<N>(self) -> EntryIter<N> {
        EntryIter {
            kind: self.kind,
            path: self.path,
            input: self.input,
            offset: self.offset,
            size: self.size,
            done: self.done,
            _msg: PhantomData,
        }
    }

    /// Reads up to `buf.len()` bytes, stopping early only at end of file.
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize> {
        let mut got = 0;
        while got < buf.len() {
            match self.input.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(ImageError::Read {
                        path: self.path.clone(),
                        offset: self.offset + got as u64,
                        source,
                    });
                }
            }
        }
        self.offset += got as u64;
        Ok(got)
    }

    fn truncated(&self, what: &'static str, needed: u64, available: u64) -> ImageError {
        ImageError::Corrupt {
            path: self.path.clone(),
            source: FramingError::Truncated {
                offset: self.offset,
                what,
                needed,
                available,
            },
        }
    }

    fn next_entry(&mut self) -> Result<Option<M>> {
        let start = self.offset;
        let mut len = [0u8; 4];
        match self.fill(&mut len)? {
            0 => return Ok(None),
            4 => {}
            n => return Err(self.truncated("entry length", 4, n as u64)),
        }
        let len = u64::from(u32::from_le_bytes(len));
        let left = self.size.saturating_sub(self.offset);
        if len > left {
            return Err(self.truncated("entry", len, left));
        }
        let mut payload = vec![0u8; len as usize];
        let got = self.fill(&mut payload)?;
        if got as u64 != len {
            return Err(self.truncated("entry", len, got as u64));
        }
        M::decode(payload.as_slice())
            .map(Some)
            .map_err(|source| ImageError::Corrupt {
                path: self.path.clone(),
                source: FramingError::Decode {
                    offset: start,
                    message: self.kind.message_name(),
                    source,
                },
            })
    }
}

impl<M: Message + Default> Iterator for EntryIter<M> {
    type Item = Result<M>;

    fn next(&mut self) -> Option<Result<M>> {
        if self.done {
            return None;
        }
        let r = self.next_entry();
        if !matches!(r, Ok(Some(_))) {
            self.done = true;
        }
        r.transpose()
    }
}
