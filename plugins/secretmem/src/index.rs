//! The plugin's index file ([`INDEX_FILE`]): which secretmem objects the tree held, the fd
//! (file id) of each, which mappings map them, and which ranges of each were dumped into
//! which content files. A text of lines inside the [`crate::seal`] container:
//!
//! ```text
//! criu-rs-secretmem 1
//! dump <32 hex digits: the dump id>
//! object <inode> <size> <file id or ->
//! segment <inode> <offset> <length>
//! vma <pid> <start hex> <end hex> <inode> <pgoff> <prot>
//! ```
//! Segment `(inode, offset)` is stored in `criu-rs-secretmem-<inode>-<offset hex>-<n>.bin`,
//! `n` counting chunks of [`CHUNK`] bytes.

use std::collections::BTreeMap;

/// The index file, in the images directory.
pub const INDEX_FILE: &str = "criu-rs-secretmem.bin";
/// Largest piece of secret criu holds at a time, and the size of a content file's payload.
pub const CHUNK: u64 = 1 << 20;
const HEADER: &str = "criu-rs-secretmem 1";

/// One secretmem inode of the dumped tree.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Object {
    /// Its size (from the fd, or the end of the furthest mapping when no fd is left).
    pub size: u64,
    /// The `files.img` id of its open file description, when a task still holds an fd.
    pub file_id: Option<u32>,
    /// Dumped ranges: offset -> length.
    pub segments: BTreeMap<u64, u64>,
}

/// One mapping of a secretmem object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmaRec {
    /// The task.
    pub pid: i32,
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// The object (dumped inode number).
    pub inode: u64,
    /// Offset in the object, bytes.
    pub pgoff: u64,
    /// `PROT_*`.
    pub prot: u32,
}

/// The whole index.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Index {
    /// Random id of the dump, bound into every sealed file.
    pub dump_id: [u8; 16],
    /// Objects by dumped inode number.
    pub objects: BTreeMap<u64, Object>,
    /// Mappings, in dump order.
    pub vmas: Vec<VmaRec>,
}

/// The content file holding chunk `n` of the segment at `offset` of `inode`.
pub fn chunk_file(inode: u64, offset: u64, n: u64) -> String {
    format!("criu-rs-secretmem-{inode}-{offset:x}-{n}.bin")
}

impl Index {
    /// The mapping of `pid` starting at `start`.
    pub fn vma(&self, pid: i32, start: u64) -> Option<&VmaRec> {
        self.vmas.iter().find(|v| v.pid == pid && v.start == start)
    }

    /// The object whose fd has file id `id`.
    pub fn by_file_id(&self, id: u32) -> Option<(u64, &Object)> {
        self.objects
            .iter()
            .find(|(_, o)| o.file_id == Some(id))
            .map(|(i, o)| (*i, o))
    }

    /// The text form.
    pub fn encode(&self) -> String {
        let mut s = format!("{HEADER}\ndump ");
        for b in self.dump_id {
            s.push_str(&format!("{b:02x}"));
        }
        s.push('\n');
        for (ino, o) in &self.objects {
            let id = o.file_id.map_or("-".to_string(), |i| i.to_string());
            s.push_str(&format!("object {ino} {} {id}\n", o.size));
            for (off, len) in &o.segments {
                s.push_str(&format!("segment {ino} {off} {len}\n"));
            }
        }
        for v in &self.vmas {
            s.push_str(&format!(
                "vma {} {:x} {:x} {} {} {}\n",
                v.pid, v.start, v.end, v.inode, v.pgoff, v.prot
            ));
        }
        s
    }

    /// Parses the text form; the error names the line.
    pub fn parse(text: &str) -> Result<Index, String> {
        let mut lines = text.lines().enumerate();
        match lines.next() {
            Some((_, HEADER)) => {}
            other => return Err(format!("line 1: expected {HEADER:?}, found {other:?}")),
        }
        let mut ix = Index::default();
        let mut have_id = false;
        for (i, line) in lines.filter(|(_, l)| !l.is_empty()) {
            let bad = |why: &str| format!("line {}: {why}: {line:?}", i + 1);
            let w: Vec<&str> = line.split(' ').collect();
            let num = |k: usize| -> Result<u64, String> {
                w.get(k)
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| bad("bad number"))
            };
            let hex = |k: usize| -> Result<u64, String> {
                w.get(k)
                    .and_then(|s| u64::from_str_radix(s, 16).ok())
                    .ok_or_else(|| bad("bad hex number"))
            };
            match (w[0], w.len()) {
                ("dump", 2) if w[1].len() == 32 => {
                    for (k, b) in ix.dump_id.iter_mut().enumerate() {
                        *b = u8::from_str_radix(&w[1][2 * k..2 * k + 2], 16)
                            .map_err(|_| bad("bad dump id"))?;
                    }
                    have_id = true;
                }
                ("object", 4) => {
                    let file_id = match w[3] {
                        "-" => None,
                        s => Some(s.parse().map_err(|_| bad("bad file id"))?),
                    };
                    let o = Object {
                        size: num(2)?,
                        file_id,
                        segments: BTreeMap::new(),
                    };
                    if ix.objects.insert(num(1)?, o).is_some() {
                        return Err(bad("object listed twice"));
                    }
                }
                ("segment", 4) => {
                    let (off, len) = (num(2)?, num(3)?);
                    let o = ix
                        .objects
                        .get_mut(&num(1)?)
                        .ok_or_else(|| bad("segment of an unknown object"))?;
                    if len == 0 || off.checked_add(len).is_none_or(|e| e > o.size) {
                        return Err(bad("segment empty or beyond the object's size"));
                    }
                    o.segments.insert(off, len);
                }
                ("vma", 7) => {
                    let v = VmaRec {
                        pid: i32::try_from(num(1)?).map_err(|_| bad("bad pid"))?,
                        start: hex(2)?,
                        end: hex(3)?,
                        inode: num(4)?,
                        pgoff: num(5)?,
                        prot: u32::try_from(num(6)?).map_err(|_| bad("bad prot"))?,
                    };
                    if v.end <= v.start || !ix.objects.contains_key(&v.inode) {
                        return Err(bad("empty mapping, or of an unknown object"));
                    }
                    ix.vmas.push(v);
                }
                _ => return Err(bad("unknown line")),
            }
        }
        if !have_id {
            return Err("no dump id".into());
        }
        Ok(ix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bad_lines_are_named() {
        let ok = format!("{HEADER}\ndump {}\nobject 5 8192 3\n", "00".repeat(16));
        assert!(Index::parse(&ok).is_ok());
        for bad in [
            "segment 6 0 4096",
            "segment 5 4096 8192",
            "vma 1 2000 1000 5 0 3",
            "vma 1 1000 2000 9 0 3",
            "object 5 1 -",
            "frob",
        ] {
            let e = Index::parse(&format!("{ok}{bad}\n")).unwrap_err();
            assert!(e.starts_with("line 4"), "{bad}: {e}");
        }
        assert!(Index::parse("nope").is_err());
        assert!(Index::parse(HEADER).is_err());
    }

    proptest! {
        #[test]
        fn round_trip(id in any::<[u8; 16]>(), objs in proptest::collection::btree_map(any::<u64>(), (1u64..1 << 40, any::<Option<u32>>()), 0..4), pid in 1i32..1 << 22, start in 1u64..1 << 30) {
            let mut ix = Index { dump_id: id, ..Default::default() };
            for (ino, (size, file_id)) in objs {
                let mut o = Object { size, file_id, ..Default::default() };
                o.segments.insert(0, size);
                ix.objects.insert(ino, o);
                ix.vmas.push(VmaRec { pid, start: start << 12, end: (start + 1) << 12, inode: ino, pgoff: 0, prot: 3 });
            }
            prop_assert_eq!(Index::parse(&ix.encode()).unwrap(), ix);
        }
    }
}
