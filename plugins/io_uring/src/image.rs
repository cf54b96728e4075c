//! The plugin's image, `criu-rs-io_uring.bin`: CRIU has no format for io_uring, so each
//! ring (setup, counters, ring memory) and each mapping of one lives in a file of ours,
//! not named `*.img` (crit and CRIU skip it). `files.img` holds an EXT entry per ring
//! description (`ext_file_entry.criu_rs_plugin = "io_uring"`), which crit decodes.
//!
//! Format: the 8 bytes [`MAGIC`], then one protobuf [`UringImage`] (the field numbers below
//! are the stable on-disk form).

use criu_plugin_api::PluginError;
use prost::Message as _;

/// The file's name in the images directory.
pub const FILE: &str = "criu-rs-io_uring.bin";

/// The first 8 bytes of [`FILE`]; the last digit is the format version.
pub const MAGIC: &[u8; 8] = b"CRRSURG1";

/// Everything the plugin dumped.
#[derive(Clone, PartialEq, prost::Message)]
pub struct UringImage {
    /// Every ring a task of the tree holds, once.
    #[prost(message, repeated, tag = "1")]
    pub rings: Vec<RingEntry>,
    /// Every mapping of a ring in a task.
    #[prost(message, repeated, tag = "2")]
    pub vmas: Vec<VmaEntry>,
}

/// One ring (one open file description of `anon_inode:[io_uring]`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct RingEntry {
    /// Its `files.img` id.
    #[prost(uint32, tag = "1")]
    pub file_id: u32,
    /// The ring's inode at dump (names its mappings).
    #[prost(uint64, tag = "2")]
    pub inode: u64,
    /// The task that creates it at restore: the SQ thread's process, or the first holder.
    #[prost(int32, tag = "3")]
    pub owner: i32,
    /// `sq_entries`.
    #[prost(uint32, tag = "4")]
    pub sq_entries: u32,
    /// `cq_entries`.
    #[prost(uint32, tag = "5")]
    pub cq_entries: u32,
    /// `IORING_SETUP_*` flags (only those in `uapi::SETUP_KNOWN`).
    #[prost(uint32, tag = "6")]
    pub flags: u32,
    /// `sq_thread_cpu` (with `IORING_SETUP_SQ_AFF`).
    #[prost(uint32, tag = "7")]
    pub sq_thread_cpu: u32,
    /// Kernel's SQ head: SQEs consumed since the setup (mod 2^32).
    #[prost(uint32, tag = "8")]
    pub sq_head: u32,
    /// Kernel's CQ tail: CQEs posted since the setup (mod 2^32).
    #[prost(uint32, tag = "9")]
    pub cq_tail: u32,
    /// The SQ (and CQ) ring memory, `IORING_OFF_SQ_RING` on.
    #[prost(bytes = "vec", tag = "10")]
    pub sq_ring: Vec<u8>,
    /// The CQ ring memory (`IORING_OFF_CQ_RING`), empty with `IORING_FEAT_SINGLE_MMAP`.
    #[prost(bytes = "vec", tag = "11")]
    pub cq_ring: Vec<u8>,
    /// The SQE array (`IORING_OFF_SQES`).
    #[prost(bytes = "vec", tag = "12")]
    pub sqes: Vec<u8>,
    /// Slots of the registered file table (0: none registered).
    #[prost(uint32, tag = "13")]
    pub file_slots: u32,
    /// The occupied file slots.
    #[prost(message, repeated, tag = "14")]
    pub files: Vec<RegFile>,
    /// Slots of the registered buffer table (0: none registered).
    #[prost(uint32, tag = "15")]
    pub buf_slots: u32,
    /// The occupied buffer slots.
    #[prost(message, repeated, tag = "16")]
    pub bufs: Vec<RegBuf>,
    /// For a ring criu restored (`IORING_SETUP_NO_MMAP`): the address of its rings in the
    /// owner, whose memfd mapping the core restores; 0 for a ring mapped from its fd (its
    /// mappings are [`UringImage::vmas`]).
    #[prost(uint64, tag = "17")]
    pub user_rings: u64,
    /// With [`RingEntry::user_rings`]: the address of its SQE array.
    #[prost(uint64, tag = "18")]
    pub user_sqes: u64,
}

/// A registered file: a slot of the ring's file table and the open file in it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RegFile {
    /// The slot.
    #[prost(uint32, tag = "1")]
    pub slot: u32,
    /// The file's `files.img` id.
    #[prost(uint32, tag = "2")]
    pub file_id: u32,
}

/// A registered buffer: a slot of the ring's buffer table and the task memory in it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RegBuf {
    /// The slot.
    #[prost(uint32, tag = "1")]
    pub slot: u32,
    /// First address in the task.
    #[prost(uint64, tag = "2")]
    pub addr: u64,
    /// Length in bytes.
    #[prost(uint64, tag = "3")]
    pub len: u64,
}

/// The most slots a registered table may have here (the kernel's limit on files is
/// `IORING_MAX_FIXED_FILES`, 1 << 20; on buffers `IORING_MAX_REG_BUFFERS`, 1 << 14).
pub const MAX_SLOTS: u32 = 1 << 20;

/// One mapping of a ring.
#[derive(Clone, PartialEq, prost::Message)]
pub struct VmaEntry {
    /// The task.
    #[prost(int32, tag = "1")]
    pub pid: i32,
    /// First address.
    #[prost(uint64, tag = "2")]
    pub start: u64,
    /// One past the last address.
    #[prost(uint64, tag = "3")]
    pub end: u64,
    /// mmap offset (`IORING_OFF_*`).
    #[prost(uint64, tag = "4")]
    pub pgoff: u64,
    /// `PROT_*`.
    #[prost(uint32, tag = "5")]
    pub prot: u32,
    /// The ring's inode at dump ([`RingEntry::inode`]).
    #[prost(uint64, tag = "6")]
    pub inode: u64,
}

impl UringImage {
    /// The file's bytes.
    pub fn encode_file(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend(self.encode_to_vec());
        out
    }

    /// Parses and checks the file; every problem names [`FILE`] and the entry.
    pub fn decode_file(bytes: &[u8]) -> Result<UringImage, PluginError> {
        let body = bytes.strip_prefix(MAGIC.as_slice()).ok_or_else(|| {
            PluginError::bad_image(FILE, "bad magic (not a criu-rs io_uring image)")
        })?;
        let img = UringImage::decode(body)
            .map_err(|e| PluginError::bad_image(FILE, format!("undecodable: {e}")))?;
        img.check()?;
        Ok(img)
    }

    /// The ring whose file id is `id`.
    pub fn ring_by_id(&self, id: u32) -> Option<&RingEntry> {
        self.rings.iter().find(|r| r.file_id == id)
    }

    /// Sanity of every entry (sizes the restore relies on).
    pub fn check(&self) -> Result<(), PluginError> {
        for r in &self.rings {
            let bad = |why: String| {
                PluginError::bad_image(FILE, format!("ring of file id {}: {why}", r.file_id))
            };
            let pow2 = |n: u32| n != 0 && n.is_power_of_two() && n <= 1 << 16;
            if !pow2(r.sq_entries) || !pow2(r.cq_entries) || r.cq_entries < r.sq_entries {
                return Err(bad(format!(
                    "bad sizes sq {} cq {}",
                    r.sq_entries, r.cq_entries
                )));
            }
            if r.flags & !crate::uapi::SETUP_KNOWN != 0 {
                return Err(bad(format!("unknown setup flags {:#x}", r.flags)));
            }
            let slots_ok = |n: u32, slots: Vec<u32>| {
                let mut seen = std::collections::BTreeSet::new();
                n <= MAX_SLOTS && slots.into_iter().all(|s| s < n && seen.insert(s))
            };
            if !slots_ok(r.file_slots, r.files.iter().map(|f| f.slot).collect())
                || !slots_ok(r.buf_slots, r.bufs.iter().map(|b| b.slot).collect())
            {
                return Err(bad(format!(
                    "registered slots out of their tables ({} files in {} slots, {} buffers in {})",
                    r.files.len(),
                    r.file_slots,
                    r.bufs.len(),
                    r.buf_slots
                )));
            }
            if (r.user_rings == 0) != (r.user_sqes == 0)
                || r.user_rings % 4096 != 0
                || r.user_sqes % 4096 != 0
            {
                return Err(bad(format!(
                    "bad ring memory addresses {:#x} and {:#x}",
                    r.user_rings, r.user_sqes
                )));
            }
            if r.sq_ring.is_empty()
                || (r.sqes.len() as u64) < u64::from(r.sq_entries) * crate::uapi::SQE_SIZE
            {
                return Err(bad("ring memory missing or short".into()));
            }
        }
        for v in &self.vmas {
            if v.end <= v.start || !self.rings.iter().any(|r| r.inode == v.inode) {
                return Err(PluginError::bad_image(
                    FILE,
                    format!(
                        "mapping {:#x}-{:#x} of pid {}: no ring dumped for it",
                        v.start, v.end, v.pid
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ring(id: u32, sq: u32, flags: u32, head: u32, mem: Vec<u8>) -> RingEntry {
        RingEntry {
            file_id: id,
            inode: u64::from(id) + 100,
            owner: 7,
            sq_entries: sq,
            cq_entries: sq * 2,
            flags,
            sq_thread_cpu: 0,
            sq_head: head,
            cq_tail: head,
            sq_ring: mem.clone(),
            cq_ring: Vec::new(),
            sqes: vec![0; sq as usize * 64],
            file_slots: 3,
            files: vec![RegFile {
                slot: 2,
                file_id: 9,
            }],
            buf_slots: 1,
            bufs: vec![RegBuf {
                slot: 0,
                addr: 0x1000,
                len: 77,
            }],
            user_rings: 0,
            user_sqes: 0,
        }
    }

    proptest! {
        #[test]
        fn round_trips(shift in 0u32..10, head: u32, mem in proptest::collection::vec(any::<u8>(), 1..512), flags in 0u32..32) {
            let flags = flags & crate::uapi::SETUP_KNOWN;
            let img = UringImage {
                rings: vec![ring(3, 1 << shift, flags, head, mem)],
                vmas: vec![VmaEntry { pid: 7, start: 4096, end: 8192, pgoff: 0, prot: 3, inode: 103 }],
            };
            prop_assert_eq!(UringImage::decode_file(&img.encode_file()).unwrap(), img);
        }
    }

    #[test]
    fn bad_files_name_the_file_and_entry() {
        let e = UringImage::decode_file(b"CRRSMQ01")
            .unwrap_err()
            .to_string();
        assert!(e.contains(FILE), "{e}");
        let mut img = UringImage {
            rings: vec![ring(3, 6, 0, 0, vec![1])],
            vmas: vec![],
        };
        let e = UringImage::decode_file(&img.encode_file())
            .unwrap_err()
            .to_string();
        assert!(e.contains("file id 3") && e.contains("bad sizes"), "{e}");
        img.rings[0].sq_entries = 8;
        img.rings[0].cq_entries = 16;
        img.rings[0].sqes = vec![0; 512];
        img.rings[0].files.push(RegFile {
            slot: 3,
            file_id: 4,
        });
        let e = UringImage::decode_file(&img.encode_file())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("file id 3") && e.contains("registered slots"),
            "{e}"
        );
        img.rings[0].files.pop();
        img.rings[0].sq_entries = 8;
        img.rings[0].cq_entries = 16;
        img.rings[0].sqes = vec![0; 512];
        img.vmas.push(VmaEntry {
            pid: 9,
            start: 8192,
            end: 4096,
            pgoff: 0,
            prot: 3,
            inode: 103,
        });
        let e = UringImage::decode_file(&img.encode_file())
            .unwrap_err()
            .to_string();
        assert!(e.contains("pid 9"), "{e}");
        let mut cut = img.encode_file();
        cut.truncate(20);
        assert!(UringImage::decode_file(&cut).is_err());
    }
}
