//! Reading images for restore by CRIU file name, through the image layer
//! ([`crate::image::ImageDir`]); [`decode_entries`] parses an image held in memory (tests and
//! tools rewrite images with it). Every read is bounded by the file size; a short or
//! oversized entry is an error naming the file and entry.

use std::path::{Path, PathBuf};

use criu_proto::images::{PagemapEntry, PagemapHead};
use prost::Message;

use crate::image::{ImageDir, ImageKind};

use super::error::{RestoreError, Result, bad};

/// First word of every image but inventory.
pub const IMG_COMMON_MAGIC: u32 = 0x5456_4319;
pub const INVENTORY_MAGIC: u32 = 0x5831_3116;
pub const PSTREE_MAGIC: u32 = 0x5027_3030;
pub const CORE_MAGIC: u32 = 0x5505_3847;
pub const MM_MAGIC: u32 = 0x5749_2820;
pub const PAGEMAP_MAGIC: u32 = 0x5608_4025;
pub const FDINFO_MAGIC: u32 = 0x5621_3732;
pub const FILES_MAGIC: u32 = 0x5630_3138;
pub const FS_MAGIC: u32 = 0x5140_3912;
pub const IDS_MAGIC: u32 = 0x5443_2030;
pub const SECCOMP_MAGIC: u32 = 0x6441_3049;
pub const REMAP_FPATH_MAGIC: u32 = 0x5913_3954;

/// One images directory, read-only, addressed by CRIU file names. Reading goes through
/// [`ImageDir`] (the crate's image layer); names map to kinds with
/// `ImageKind::from_file_name`, and the expected magic is checked against the kind's.
#[derive(Debug)]
pub struct Images {
    dir: ImageDir,
}

impl Images {
    /// Opens `dir`, which must be an existing directory.
    pub fn open(dir: &Path) -> Result<Images> {
        let dir = ImageDir::open(dir).map_err(|source| RestoreError::Image { source })?;
        Ok(Images { dir })
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn exists(&self, name: &str) -> bool {
        self.path(name).exists()
    }

    /// The kind and id a file name stands for, checked against the magic the caller expects.
    fn kind_of(name: &str, magic: u32) -> Result<(ImageKind, u64)> {
        let (kind, id) = ImageKind::from_file_name(name)
            .ok_or_else(|| bad(name, None, "not a CRIU image file name"))?;
        if kind.magic() != magic {
            return Err(bad(
                name,
                None,
                format!(
                    "kind {kind:?} has magic {:#x}, expected {magic:#x}",
                    kind.magic()
                ),
            ));
        }
        Ok((kind, id.unwrap_or(0)))
    }

    /// All entries of `name`, which must carry `magic`.
    pub fn entries<M: Message + Default>(&self, name: &str, magic: u32) -> Result<Vec<M>> {
        let (kind, id) = Self::kind_of(name, magic)?;
        self.dir
            .read_all(kind, id)
            .map_err(|source| RestoreError::Image { source })
    }

    /// The single entry of `name` (core, mm, fs, ids, inventory).
    pub fn single<M: Message + Default>(&self, name: &str, magic: u32) -> Result<M> {
        let (kind, id) = Self::kind_of(name, magic)?;
        self.dir
            .read_single(kind, id)
            .map_err(|source| RestoreError::Image { source })
    }

    /// A pagemap image (`pagemap-<pid>.img` or `pagemap-shmem-<shmid>.img`): its head and
    /// its entries.
    pub fn pagemap(&self, name: &str) -> Result<(PagemapHead, Vec<PagemapEntry>)> {
        let (kind, id) = Self::kind_of(name, PAGEMAP_MAGIC)?;
        let raw = self
            .dir
            .read_raw(kind, id)
            .map_err(|source| RestoreError::Image { source })?;
        let decode = |i: usize, payload: &[u8]| -> Result<PagemapEntry> {
            PagemapEntry::decode(payload).map_err(|source| RestoreError::Decode {
                image: name.to_string(),
                entry: i,
                source,
            })
        };
        let (head, rest) = raw
            .entries
            .split_first()
            .ok_or_else(|| bad(name, None, "no pagemap head"))?;
        let head = PagemapHead::decode(head.payload.as_slice()).map_err(|source| {
            RestoreError::Decode {
                image: name.to_string(),
                entry: 0,
                source,
            }
        })?;
        let entries = rest
            .iter()
            .enumerate()
            .map(|(i, e)| decode(i + 1, &e.payload))
            .collect::<Result<Vec<_>>>()?;
        Ok((head, entries))
    }
}

/// Parses an image body: header words, then `u32 length + message` entries.
pub fn decode_entries<M: Message + Default>(name: &str, magic: u32, data: &[u8]) -> Result<Vec<M>> {
    let word = |off: usize| -> Option<u32> {
        data.get(off..off + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let mut off = if magic == INVENTORY_MAGIC {
        if word(0) != Some(INVENTORY_MAGIC) {
            return Err(bad(name, None, "bad inventory magic"));
        }
        4
    } else {
        if word(0) != Some(IMG_COMMON_MAGIC) {
            return Err(bad(name, None, "bad common magic"));
        }
        match word(4) {
            Some(m) if m == magic => 8,
            Some(m) => {
                return Err(bad(
                    name,
                    None,
                    format!("magic {m:#x}, expected {magic:#x}"),
                ));
            }
            None => return Err(bad(name, None, "truncated header")),
        }
    };
    let mut out = Vec::new();
    while off < data.len() {
        let idx = out.len();
        let len = word(off).ok_or_else(|| bad(name, Some(idx), "truncated length"))? as usize;
        off += 4;
        let body = data.get(off..off + len).ok_or_else(|| {
            bad(
                name,
                Some(idx),
                format!("entry of {len} bytes past end of file"),
            )
        })?;
        let msg = M::decode(body).map_err(|source| RestoreError::Decode {
            image: name.to_string(),
            entry: idx,
            source,
        })?;
        out.push(msg);
        off += len;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use criu_proto::images::PstreeEntry;

    fn frame(magic: u32, entries: &[Vec<u8>]) -> Vec<u8> {
        let mut v = IMG_COMMON_MAGIC.to_le_bytes().to_vec();
        v.extend(magic.to_le_bytes());
        for e in entries {
            v.extend((e.len() as u32).to_le_bytes());
            v.extend(e);
        }
        v
    }

    #[test]
    fn round_trip_and_errors() {
        let e = PstreeEntry {
            pid: 5,
            ppid: 1,
            pgid: 5,
            sid: 5,
            threads: vec![5, 6],
        };
        let data = frame(PSTREE_MAGIC, &[e.encode_to_vec()]);
        let got: Vec<PstreeEntry> = decode_entries("pstree.img", PSTREE_MAGIC, &data).unwrap();
        assert_eq!(got, vec![e]);
        assert!(decode_entries::<PstreeEntry>("x", CORE_MAGIC, &data).is_err());
        let mut cut = data.clone();
        cut.truncate(data.len() - 1);
        assert!(decode_entries::<PstreeEntry>("x", PSTREE_MAGIC, &cut).is_err());
    }
}
