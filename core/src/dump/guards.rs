//! Guard regions (`madvise(MADV_GUARD_INSTALL)`, Linux 6.13+): page table markers that
//! fault on access, inside ordinary VMAs. As CRIU 4.2, they are found with the
//! `PAGEMAP_SCAN` ioctl (`PAGE_IS_GUARD`) and recorded as extra `vma_entry`s with status
//! `VMA_AREA_GUARD` alone, after the task's real VMAs; their pages are never read (the
//! pagemap shows them as swap entries that cannot be copied).

use std::fs::File;

use criu_proto::images::VmaEntry;
use nix::errno::Errno;

use crate::sys::{kabi, probe};

use super::DumpError;
use super::memory::{TASK_SIZE, VMA_AREA_GUARD};

/// Regions asked for per ioctl.
const REGIONS_PER_CALL: usize = 512;

/// The guard regions of `pid` as CRIU's `vma_entry`s, in address order. A kernel whose
/// `PAGEMAP_SCAN` does not know `PAGE_IS_GUARD` (EINVAL) or lacks the ioctl (ENOTTY) has
/// no guard regions to report: none are returned, as CRIU does.
pub fn collect(pid: i32) -> Result<Vec<VmaEntry>, DumpError> {
    let path = format!("/proc/{pid}/pagemap");
    let pagemap = File::open(&path).map_err(|e| DumpError::Sys {
        pid,
        step: "memory",
        what: format!("open {path}"),
        source: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
    })?;
    let mut regions = vec![kabi::page_region::default(); REGIONS_PER_CALL];
    let mut out: Vec<VmaEntry> = Vec::new();
    let mut at = 0u64;
    while at < TASK_SIZE {
        let scanned = probe::pagemap_scan(
            &pagemap,
            at,
            TASK_SIZE,
            kabi::PAGE_IS_GUARD,
            0,
            kabi::PAGE_IS_GUARD,
            &mut regions,
        );
        let (n, walk_end) = match scanned {
            Ok(r) => r,
            Err(e) if at == 0 && matches!(e.errno, Errno::EINVAL | Errno::ENOTTY) => {
                return Ok(Vec::new());
            }
            Err(e) => {
                return Err(DumpError::Sys {
                    pid,
                    step: "memory",
                    what: format!("ioctl(PAGEMAP_SCAN, PAGE_IS_GUARD) on {path} from {at:#x}"),
                    source: e.errno,
                });
            }
        };
        for r in &regions[..n] {
            push_region(&mut out, r.start, r.end);
        }
        if walk_end <= at {
            return Err(DumpError::Unexpected {
                pid,
                step: "memory",
                what: format!("PAGEMAP_SCAN on {path} made no progress at {at:#x}"),
            });
        }
        at = walk_end;
    }
    Ok(out)
}

/// Appends `[start, end)` as a guard entry, merged with the previous one when they touch
/// (a region cut by a full result buffer comes back in two pieces).
fn push_region(out: &mut Vec<VmaEntry>, start: u64, end: u64) {
    if let Some(last) = out.last_mut()
        && last.end == start
    {
        last.end = end;
        return;
    }
    out.push(VmaEntry {
        start,
        end,
        status: VMA_AREA_GUARD,
        fd: -1,
        ..Default::default()
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_merge_when_they_touch() {
        let mut v = Vec::new();
        push_region(&mut v, 0x1000, 0x2000);
        push_region(&mut v, 0x2000, 0x4000);
        push_region(&mut v, 0x8000, 0x9000);
        let got: Vec<(u64, u64, u32)> = v.iter().map(|e| (e.start, e.end, e.status)).collect();
        assert_eq!(
            got,
            [
                (0x1000, 0x4000, VMA_AREA_GUARD),
                (0x8000, 0x9000, VMA_AREA_GUARD)
            ]
        );
    }

    /// A guard page of our own is found, and only it.
    #[test]
    fn finds_a_guard_page_of_this_process() {
        let m = probe::AnonMap::new(3).unwrap();
        if let Err(e) = m.madvise(4096, 4096, kabi::MADV_GUARD_INSTALL) {
            eprintln!("skipping: this kernel has no MADV_GUARD_INSTALL ({e})");
            return;
        }
        let got = collect(std::process::id() as i32).unwrap();
        let want = m.addr() + 4096;
        assert!(
            got.iter().any(|e| e.start == want && e.end == want + 4096),
            "{got:?}"
        );
    }
}
