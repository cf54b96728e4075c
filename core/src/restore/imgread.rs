//! Reading CRIU-framed images for restore: header check, then length-prefixed protobuf
//! entries. Every read is bounded by the file size; a short or oversized entry is an error
//! naming the file and entry.

use std::path::{Path, PathBuf};

use prost::Message;

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

/// One images directory, read-only.
#[derive(Debug, Clone)]
pub struct Images {
    dir: PathBuf,
}

impl Images {
    pub fn new(dir: &Path) -> Images {
        Images {
            dir: dir.to_path_buf(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn exists(&self, name: &str) -> bool {
        self.path(name).exists()
    }

    /// All entries of `name`, which must carry `magic`.
    pub fn entries<M: Message + Default>(&self, name: &str, magic: u32) -> Result<Vec<M>> {
        let path = self.path(name);
        let data = std::fs::read(&path).map_err(|source| RestoreError::ImageIo {
            path: path.clone(),
            source,
        })?;
        decode_entries(name, magic, &data)
    }

    /// The single entry of `name` (core, mm, fs, ids, inventory).
    pub fn single<M: Message + Default>(&self, name: &str, magic: u32) -> Result<M> {
        let mut v = self.entries::<M>(name, magic)?;
        match v.len() {
            1 => Ok(v.remove(0)),
            n => Err(bad(name, None, format!("expected one entry, found {n}"))),
        }
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
