//! AIO rings (`io_setup`): the ring is a shared mapping of the kernel's aio inode, shown as
//! `/[aio] (deleted)`. As CRIU, it is recorded as a `VMA_AREA_AIORING` VMA whose pages are
//! all dumped (the kernel writes completions there, unseen by soft-dirty), plus an
//! `aio_ring_entry` in `mm.img` giving the ring's address, length and the `nr_events` to
//! pass to `io_setup` so that the kernel makes a ring of the same size again.

use criu_proto::images::{AioRingEntry, VmaEntry};
use nix::unistd::Pid;

use crate::proc::maps::MapsEntry;
use crate::sys::vm;

use super::DumpError;
use super::memory::{PAGE_SIZE, VMA_AREA_AIORING, Vma};

/// The `/proc/PID/maps` name of an AIO ring (CRIU's `AIO_FNAME`, followed by " (deleted)").
const AIO_NAME: &str = "/[aio]";

/// Bytes of the ring header (`struct aio_ring`, 8 u32) and of one `struct io_event`.
pub const RING_HEADER: u64 = 32;
pub const IO_EVENT: u64 = 32;
/// The kernel's `AIO_RING_MAGIC`, `AIO_RING_COMPAT_FEATURES`, `AIO_RING_INCOMPAT_FEATURES`.
const RING_MAGIC: u32 = 0xa10a_10a1;
const COMPAT_FEATURES: u32 = 1;
const INCOMPAT_FEATURES: u32 = 0;

/// The ring header fields criu reads and writes (`struct aio_ring`, all u32).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingHeader {
    pub id: u32,
    pub nr: u32,
    pub head: u32,
    pub tail: u32,
    pub magic: u32,
    pub compat_features: u32,
    pub incompat_features: u32,
    pub header_length: u32,
}

impl RingHeader {
    /// Decodes the first [`RING_HEADER`] bytes of a ring.
    pub fn parse(b: &[u8; RING_HEADER as usize]) -> RingHeader {
        let w = |i: usize| u32::from_ne_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]);
        RingHeader {
            id: w(0),
            nr: w(1),
            head: w(2),
            tail: w(3),
            magic: w(4),
            compat_features: w(5),
            incompat_features: w(6),
            header_length: w(7),
        }
    }

    /// What is wrong with this header for a ring of `len` bytes, if anything (the kernel's
    /// own values, as CRIU's parasite checks them before trusting the ring).
    pub fn insane(&self, len: u64) -> Option<String> {
        let nr = events_in(len);
        if self.magic != RING_MAGIC
            || self.compat_features != COMPAT_FEATURES
            || self.incompat_features != INCOMPAT_FEATURES
            || u64::from(self.header_length) != RING_HEADER
            || u64::from(self.nr) != nr
        {
            return Some(format!(
                "magic {:#x}, features {}/{}, header length {}, nr {} (expected nr {nr})",
                self.magic,
                self.compat_features,
                self.incompat_features,
                self.header_length,
                self.nr
            ));
        }
        if self.head >= self.nr || self.tail >= self.nr {
            return Some(format!(
                "head {} / tail {} beyond nr {}",
                self.head, self.tail, self.nr
            ));
        }
        None
    }
}

/// Events a ring of `len` bytes holds.
pub fn events_in(len: u64) -> u64 {
    len.saturating_sub(RING_HEADER) / IO_EVENT
}

/// The `nr_events` that makes `io_setup` build a ring of `len` bytes again (CRIU's
/// `aio_estimate_nr_reqs`): the kernel doubles the request (at least 4 per CPU), adds 2
/// and rounds the ring up to whole pages; this inverts that for the ring's event count.
/// `None` when `len` is not a whole number of pages or too small for a ring.
pub fn estimate_nr_req(len: u64) -> Option<u32> {
    if len == 0 || !len.is_multiple_of(PAGE_SIZE) {
        return None;
    }
    let k_max = events_in(len);
    if k_max < 4 {
        return None;
    }
    u32::try_from((k_max - 2) / 2).ok()
}

/// An AIO ring mapping as CRIU records it: status `VMA_AREA_AIORING` alone, no madvise bits
/// (the kernel sets the ring's flags itself).
pub fn ring_vma(m: &MapsEntry, e: &VmaEntry) -> Option<Vma> {
    if !m.shared || !m.path.starts_with(AIO_NAME) {
        return None;
    }
    let entry = VmaEntry {
        status: VMA_AREA_AIORING,
        flags: libc::MAP_SHARED as u32,
        madv: None,
        ..e.clone()
    };
    Some(Vma {
        entry,
        file: None,
        shmem: None,
        plugin_only: None,
    })
}

/// The `aio_ring_entry`s of `pid`'s AIO ring VMAs, each ring's header checked. Requests
/// still in flight are not seen (as in CRIU): their completions would be lost.
pub fn ring_entries(pid: i32, vmas: &[Vma]) -> Result<Vec<AioRingEntry>, DumpError> {
    let mut out = Vec::new();
    for v in vmas.iter().filter(|v| v.has(VMA_AREA_AIORING)) {
        let (start, len) = (v.entry.start, v.entry.end - v.entry.start);
        let bad = |what: String| DumpError::Unexpected {
            pid,
            step: "memory",
            what: format!("AIO ring {start:#x}-{:#x}: {what}", v.entry.end),
        };
        let mut hdr = [0u8; RING_HEADER as usize];
        vm::read_exact(Pid::from_raw(pid), start, &mut hdr).map_err(|source| {
            DumpError::Memory {
                pid,
                step: "memory",
                source,
            }
        })?;
        let h = RingHeader::parse(&hdr);
        if let Some(why) = h.insane(len) {
            return Err(bad(why));
        }
        let nr_req = estimate_nr_req(len).ok_or_else(|| bad(format!("length {len:#x}")))?;
        let ring_len = u32::try_from(len).map_err(|_| bad(format!("length {len:#x}")))?;
        out.push(AioRingEntry {
            id: start,
            nr_req,
            ring_len,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nr_req_inverts_the_kernel_sizing() {
        // The kernel's ioctx_alloc + aio_setup_ring for nr_events on a host of `cpus` CPUs.
        fn ring_len(nr_events: u64, cpus: u64) -> u64 {
            let nr = nr_events.max(cpus * 4) * 2 + 2;
            (RING_HEADER + nr * IO_EVENT).div_ceil(PAGE_SIZE) * PAGE_SIZE
        }
        for cpus in [1, 2, 8, 64] {
            for req in [1u64, 16, 64, 128, 1000, 4096] {
                let len = ring_len(req, cpus);
                let est = u64::from(estimate_nr_req(len).unwrap());
                assert_eq!(ring_len(est, cpus), len, "req {req} cpus {cpus}");
            }
        }
        assert_eq!(estimate_nr_req(4095), None);
        assert_eq!(estimate_nr_req(0), None);
    }

    #[test]
    fn header_checks() {
        let mut b = [0u8; 32];
        for (i, w) in [7u32, 127, 3, 5, RING_MAGIC, 1, 0, 32].iter().enumerate() {
            b[4 * i..4 * i + 4].copy_from_slice(&w.to_ne_bytes());
        }
        let h = RingHeader::parse(&b);
        assert_eq!((h.nr, h.head, h.tail), (127, 3, 5));
        assert_eq!(h.insane(4096), None);
        assert!(h.insane(8192).is_some());
        let wrong = RingHeader { magic: 1, ..h };
        assert!(wrong.insane(4096).unwrap().contains("magic"));
        let far = RingHeader { tail: 127, ..h };
        assert!(far.insane(4096).unwrap().contains("tail"));
    }
}
