//! [`ImageDir`]: one images directory, its files created 0600 and tracked for cleanup.

use std::fs::{File, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use criu_proto::framing;
use criu_proto::images::{InventoryEntry, PagemapHead};
use prost::Message;

use super::{ImageError, ImageKind, ImageWriter, PagesReader, PagesWriter, RawImage, Result};

/// Mode of every file we create: images hold memory contents and credentials.
pub(crate) const IMAGE_MODE: u32 = 0o600;

/// A directory of CRIU images.
#[derive(Debug)]
pub struct ImageDir {
    path: PathBuf,
    written: Mutex<Written>,
    /// Digests of the pages files written so far, for `criu-rs-pages-digest.bin`.
    digests: super::pages::DigestSink,
    /// How pages files are written (`--compress`); `None`: raw, as CRIU.
    compression: Option<super::compress::Compression>,
}

/// Files created, in order, with a set beside for O(1) membership (a 1000-task dump writes
/// thousands of files; a linear `contains` per file showed up in profiles).
#[derive(Debug, Default)]
struct Written {
    order: Vec<PathBuf>,
    set: std::collections::HashSet<PathBuf>,
}

impl Written {
    fn add(&mut self, path: PathBuf) {
        if self.set.insert(path.clone()) {
            self.order.push(path);
        }
    }
}

impl ImageDir {
    /// Opens an existing images directory.
    pub fn open(path: impl AsRef<Path>) -> Result<ImageDir> {
        let path = path.as_ref().to_path_buf();
        let meta = std::fs::metadata(&path).map_err(|source| ImageError::Dir {
            path: path.clone(),
            source,
        })?;
        if !meta.is_dir() {
            return Err(ImageError::Dir {
                path,
                source: std::io::Error::from_raw_os_error(libc::ENOTDIR),
            });
        }
        Ok(ImageDir {
            path,
            written: Mutex::new(Written::default()),
            digests: Default::default(),
            compression: None,
        })
    }

    /// Opens an images directory, creating it (mode 0700) and its parents if missing.
    pub fn create(path: impl AsRef<Path>) -> Result<ImageDir> {
        let p = path.as_ref();
        if !p.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(p)
                .map_err(|source| ImageError::Dir {
                    path: p.to_path_buf(),
                    source,
                })?;
        }
        ImageDir::open(p)
    }

    /// Writes the pages files from now on compressed with `c` (`None`: raw, as CRIU), and
    /// marks the pagemap heads written after this accordingly.
    pub fn set_compression(&mut self, c: Option<super::compress::Compression>) {
        self.compression = c;
    }

    /// The `pagemap_head` of a pagemap whose pages are in pages file `pages_id`, naming the
    /// compression of the pages files this directory writes.
    pub fn pagemap_head(&self, pages_id: u32) -> PagemapHead {
        PagemapHead {
            pages_id,
            criu_rs_compression: self.compression.map(|c| c.algo.marker().to_string()),
        }
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Path of the image of `kind` for `id` (ignored by kinds without an id).
    pub fn file_path(&self, kind: ImageKind, id: u64) -> PathBuf {
        self.path.join(kind.file_name(id))
    }

    /// Whether the image of `kind` for `id` exists.
    pub fn exists(&self, kind: ImageKind, id: u64) -> bool {
        self.file_path(kind, id).exists()
    }

    /// Creates (or truncates) `name` with mode 0600 and records it as written.
    pub(crate) fn create_file(&self, name: &str) -> Result<(File, PathBuf)> {
        let path = self.path.join(name);
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(IMAGE_MODE)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(|source| ImageError::Open {
                path: path.clone(),
                source,
            })?;
        // The umask may have narrowed the mode and an old file keeps its own: force 0600.
        file.set_permissions(Permissions::from_mode(IMAGE_MODE))
            .map_err(|source| ImageError::Open {
                path: path.clone(),
                source,
            })?;
        self.record(path.clone());
        Ok((file, path))
    }

    fn record(&self, path: PathBuf) {
        let mut w = self.written.lock().unwrap_or_else(|e| e.into_inner());
        w.add(path);
    }

    /// Writes whole-file bytes to `name` (created 0600, recorded).
    fn write_bytes(&self, name: &str, bytes: &[u8]) -> Result<PathBuf> {
        let (mut file, path) = self.create_file(name)?;
        file.write_all(bytes).map_err(|source| ImageError::Write {
            path: path.clone(),
            offset: 0,
            source,
        })?;
        Ok(path)
    }

    fn framed(&self, kind: ImageKind, id: u64, what: &'static str) -> Result<()> {
        if kind.is_raw() || kind.framing() == criu_proto::Framing::Legacy {
            return Err(ImageError::WrongKind {
                kind,
                what,
                path: self.file_path(kind, id),
            });
        }
        Ok(())
    }

    /// Writes a single-entry image (core, mm, fs, ids, ...). For `inventory.img` prefer
    /// [`ImageDir::write_inventory`], which this defers to.
    pub fn write_single<M: Message>(&self, kind: ImageKind, id: u64, msg: &M) -> Result<()> {
        self.write_image(kind, id, std::slice::from_ref(msg))
    }

    /// Writes an image holding `msgs` (no extra payloads).
    pub fn write_image<M: Message>(&self, kind: ImageKind, id: u64, msgs: &[M]) -> Result<()> {
        self.framed(kind, id, "write_image")?;
        let bytes = framing::encode_messages(kind, msgs).map_err(|source| ImageError::Corrupt {
            path: self.file_path(kind, id),
            source,
        })?;
        if kind == ImageKind::Inventory {
            return self.write_atomic(&kind.file_name(id), &bytes);
        }
        self.write_bytes(&kind.file_name(id), &bytes).map(|_| ())
    }

    /// Writes a parsed image (entries and extra payloads) as the file for `id`.
    pub fn write_raw_image(&self, image: &RawImage, id: u64) -> Result<()> {
        self.framed(image.kind, id, "write_raw_image")?;
        let bytes = image.encode().map_err(|source| ImageError::Corrupt {
            path: self.file_path(image.kind, id),
            source,
        })?;
        self.write_bytes(&image.kind.file_name(id), &bytes)
            .map(|_| ())
    }

    /// Writes the image of `kind` for `to` as a byte copy of the one for `from` (both in
    /// this directory), e.g. the mm and pagemap of a process sharing another's address space.
    pub fn copy_image(&self, kind: ImageKind, from: u64, to: u64) -> Result<()> {
        let src = self.file_path(kind, from);
        let bytes = std::fs::read(&src).map_err(|source| ImageError::Open { path: src, source })?;
        self.write_bytes(&kind.file_name(to), &bytes).map(|_| ())
    }

    /// Writes `inventory.img`: call it last. It goes through a temporary file and a rename,
    /// so the inventory exists only once complete. The digests of the pages files written
    /// through this `ImageDir` go to [`super::digest::DIGEST_FILE`] just before.
    pub fn write_inventory(&self, inv: &InventoryEntry) -> Result<()> {
        let mut digests = self
            .digests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if !digests.is_empty() {
            digests.sort_by(|a, b| a.name.cmp(&b.name));
            self.write_bytes(super::digest::DIGEST_FILE, &super::digest::encode(&digests))?;
        }
        self.write_single(ImageKind::Inventory, 0, inv)
    }

    fn write_atomic(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let tmp_name = format!(".{name}.tmp");
        let tmp = self.write_bytes(&tmp_name, bytes)?;
        let path = self.path.join(name);
        std::fs::rename(&tmp, &path).map_err(|source| ImageError::Write {
            path: path.clone(),
            offset: 0,
            source,
        })?;
        let mut w = self.written.lock().unwrap_or_else(|e| e.into_inner());
        if w.set.remove(&tmp) {
            w.order.retain(|p| p != &tmp);
        }
        w.add(path);
        Ok(())
    }

    /// A streaming writer for an image of repeated entries.
    pub fn writer(&self, kind: ImageKind, id: u64) -> Result<ImageWriter> {
        self.framed(kind, id, "writer")?;
        let (file, path) = self.create_file(&kind.file_name(id))?;
        ImageWriter::new(kind, file, path)
    }

    /// A writer for `pagemap-<pid>.img` whose `pagemap_head` (naming `pages-<pages_id>.img`)
    /// is already written; add `pagemap_entry`s.
    pub fn pagemap_writer(&self, pid: u64, pages_id: u32) -> Result<ImageWriter> {
        let mut w = self.writer(ImageKind::Pagemap, pid)?;
        w.write_entry(&self.pagemap_head(pages_id))?;
        Ok(w)
    }

    /// A writer for the raw `pages-<id>.img`, or `pages-<id>.img.lz4`/`.zst` when this
    /// directory compresses ([`ImageDir::set_compression`]).
    pub fn pages_writer(&self, id: u64) -> Result<PagesWriter> {
        let name = ImageKind::Pages.file_name(id);
        let Some(c) = self.compression else {
            let (file, path) = self.create_file(&name)?;
            return Ok(PagesWriter::new(file, path, self.digests.clone()));
        };
        let (file, path) = self.create_file(&format!("{name}{}", c.algo.suffix()))?;
        PagesWriter::compressed(file, path, self.digests.clone(), c)
    }

    /// A reader for the raw `pages-<id>.img`.
    pub fn pages_reader(&self, id: u64) -> Result<PagesReader> {
        PagesReader::open(self.file_path(ImageKind::Pages, id))
    }

    /// Every file this `ImageDir` created so far.
    pub fn written(&self) -> Vec<PathBuf> {
        self.written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .order
            .clone()
    }

    /// Removes every file this `ImageDir` created (after a failed dump). Files already gone
    /// are fine; the first other failure is returned after trying all of them.
    pub fn discard_written(&self) -> Result<usize> {
        let paths: Vec<PathBuf> =
            std::mem::take(&mut *self.written.lock().unwrap_or_else(|e| e.into_inner())).order;
        let mut first_err = None;
        let mut removed = 0;
        for path in paths {
            match std::fs::remove_file(&path) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    tracing::warn!(path = %path.display(), error = %source, "cannot remove image");
                    first_err.get_or_insert(ImageError::Write {
                        path,
                        offset: 0,
                        source,
                    });
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(removed),
        }
    }
}
