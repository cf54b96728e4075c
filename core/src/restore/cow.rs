//! Private memory inherited copy-on-write, as CRIU keeps it: a child is forked from its
//! parent after the parent's memory is restored, so a private VMA the child has at the same
//! place as its parent (same range, flags and protection; for a private file mapping also
//! the same file and offset) is kept instead of re-mapped. Only the pages whose dumped
//! content differs from the inherited one are written (through `/proc/PID/mem`, which
//! breaks sharing for those pages alone); pages absent from the child's image are dropped
//! (`MADV_DONTNEED`: anonymous pages read as zeros again, a file mapping's pages read the
//! file again, as they did in the dumped child). The others stay shared with the parent, as
//! before the dump.

use std::fs::File;
use std::os::unix::fs::FileExt;

use super::error::{RestoreError, Result};
use super::mem::{PAGE_SIZE, PageRun, VmaKind, VmaPlan};
use super::plan::TaskPlan;
use super::rexec::RemoteThread;

/// madvise bits that stop a VMA from reaching the child as it is in the parent.
const NOT_INHERITED: u64 = (1 << libc::MADV_DONTFORK) | (1 << libc::MADV_WIPEONFORK);

/// Hugetlb memory is left out: dropping the pages absent from the image takes ranges
/// aligned to huge pages (`MADV_DONTNEED` refuses others).
fn inheritable(v: &VmaPlan) -> bool {
    matches!(v.kind, VmaKind::AnonPrivate | VmaKind::FilePrivate { .. })
        && v.madv & NOT_INHERITED == 0
        && v.flags & (libc::MAP_LOCKED | libc::MAP_HUGETLB) as u32 == 0
}

/// Whether the child's `v` is what it got from the parent's `p` at fork: same range, flags,
/// protection and backing (a file mapping: the same file at the same offset; anonymous
/// memory has no offset that matters).
fn same_area(v: &VmaPlan, p: &VmaPlan) -> bool {
    inheritable(v)
        && inheritable(p)
        && (p.start, p.end, p.flags, p.prot) == (v.start, v.end, v.flags, v.prot)
        && p.kind == v.kind
        && (v.kind == VmaKind::AnonPrivate || p.pgoff == v.pgoff)
}

/// The (start, end) of `t`'s VMAs it inherits from `parent` (sorted).
pub fn inherited(t: &TaskPlan, parent: Option<&TaskPlan>) -> Vec<(u64, u64)> {
    let Some(parent) = parent else {
        return Vec::new();
    };
    t.vmas
        .iter()
        .filter(|v| {
            parent
                .vmas
                .binary_search_by_key(&v.start, |p| p.start)
                .ok()
                .is_some_and(|i| same_area(v, &parent.vmas[i]))
        })
        .map(|v| (v.start, v.end))
        .collect()
}

/// Splits `run` into (vaddr, len, file_off, kept) pieces along the kept ranges.
fn pieces(run: &PageRun, kept: &[(u64, u64)]) -> Vec<(u64, u64, u64, bool)> {
    let mut out = Vec::new();
    let (mut a, end) = (run.vaddr, run.vaddr + run.len);
    while a < end {
        let inside = kept.iter().find(|(s, e)| *s <= a && a < *e);
        let b = match inside {
            Some(&(_, e)) => e.min(end),
            None => kept
                .iter()
                .map(|(s, _)| *s)
                .filter(|s| *s > a)
                .min()
                .unwrap_or(end)
                .min(end),
        };
        out.push((a, b - a, run.file_off + (a - run.vaddr), inside.is_some()));
        a = b;
    }
    out
}

/// Page runs outside kept ranges, for the usual read into fresh mappings; the parts inside
/// are compared with the inherited memory and written where they differ.
pub fn fill_kept(
    rt: &mut RemoteThread,
    runs: &[PageRun],
    kept: &[(u64, u64)],
    pages_fd: i32,
) -> Result<Vec<PageRun>> {
    let mut rest = Vec::new();
    if kept.is_empty() {
        rest.extend_from_slice(runs);
        return Ok(rest);
    }
    let pid = rt.pid;
    let err = |what: String, e: std::io::Error| RestoreError::Task {
        pid,
        tid: pid,
        step: "filling inherited copy-on-write memory".into(),
        reason: format!("{what}: {e}"),
    };
    // Its pid in criu's namespace for /proc (they differ in a new pid namespace).
    let host = rt.tid.as_raw();
    let image = File::open(format!("/proc/{host}/fd/{pages_fd}"))
        .map_err(|e| err("opening the pages image".into(), e))?;
    let mem = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/proc/{host}/mem"))
        .map_err(|e| err("opening its memory".into(), e))?;
    const CHUNK: u64 = 1 << 20;
    let mut want = vec![0u8; CHUNK as usize];
    let mut have = vec![0u8; CHUNK as usize];
    let mut covered: Vec<(u64, u64)> = Vec::new();
    let mut written = 0u64;
    for run in runs {
        for (vaddr, len, off, is_kept) in pieces(run, kept) {
            if !is_kept {
                rest.push(PageRun {
                    vaddr,
                    len,
                    file_off: off,
                });
                continue;
            }
            covered.push((vaddr, vaddr + len));
            let mut done = 0;
            while done < len {
                let n = (len - done).min(CHUNK) as usize;
                let (w, h) = (&mut want[..n], &mut have[..n]);
                image
                    .read_exact_at(w, off + done)
                    .map_err(|e| err(format!("reading the image at {}", off + done), e))?;
                mem.read_exact_at(h, vaddr + done)
                    .map_err(|e| err(format!("reading {:#x}", vaddr + done), e))?;
                for (i, (pw, ph)) in w
                    .chunks(PAGE_SIZE as usize)
                    .zip(h.chunks(PAGE_SIZE as usize))
                    .enumerate()
                {
                    if pw != ph {
                        let at = vaddr + done + (i as u64) * PAGE_SIZE;
                        mem.write_all_at(pw, at)
                            .map_err(|e| err(format!("writing {at:#x}"), e))?;
                        written += 1;
                    }
                }
                done += n as u64;
            }
        }
    }
    tracing::debug!(pid, written, "inherited pages rewritten");
    // Pages of a kept range the child's image lacks were not present in it: zero them.
    covered.sort_unstable();
    rt.step = "dropping inherited pages absent from the image".into();
    for &(s, e) in kept {
        let mut at = s;
        for &(cs, ce) in covered.iter().filter(|(cs, ce)| *ce > s && *cs < e) {
            if cs > at {
                rt.call(
                    "madvise(MADV_DONTNEED)",
                    libc::SYS_madvise,
                    [at, cs - at, libc::MADV_DONTNEED as u64, 0, 0, 0],
                )?;
            }
            at = at.max(ce);
        }
        if at < e {
            rt.call(
                "madvise(MADV_DONTNEED)",
                libc::SYS_madvise,
                [at, e - at, libc::MADV_DONTNEED as u64, 0, 0, 0],
            )?;
        }
    }
    Ok(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn area(kind: VmaKind, pgoff: u64) -> VmaPlan {
        VmaPlan {
            start: 0x10000,
            end: 0x20000,
            pgoff,
            prot: (libc::PROT_READ | libc::PROT_WRITE) as u32,
            flags: libc::MAP_PRIVATE as u32,
            kind,
            madv: 0,
            fdflags: 0,
            stack: false,
            heap: false,
        }
    }

    #[test]
    fn which_areas_are_inherited() {
        let file = area(VmaKind::FilePrivate { file_id: 3 }, 0x2000);
        assert!(same_area(&file, &file.clone()));
        // Another offset or another file: not what fork gave the child.
        assert!(!same_area(
            &file,
            &area(VmaKind::FilePrivate { file_id: 3 }, 0)
        ));
        assert!(!same_area(
            &file,
            &area(VmaKind::FilePrivate { file_id: 4 }, 0x2000)
        ));
        let anon = area(VmaKind::AnonPrivate, 0x10);
        assert!(same_area(&anon, &area(VmaKind::AnonPrivate, 0x99)));
        assert!(!same_area(&anon, &file));
        let mut ro = anon.clone();
        ro.prot = libc::PROT_READ as u32;
        assert!(!same_area(&anon, &ro));
        let mut dontfork = anon.clone();
        dontfork.madv = 1 << libc::MADV_DONTFORK;
        assert!(!same_area(&dontfork, &dontfork.clone()));
        let shared = area(VmaKind::FileShared { file_id: 3 }, 0x2000);
        assert!(!same_area(&shared, &shared.clone()));
    }

    #[test]
    fn runs_split_along_kept_ranges() {
        let run = PageRun {
            vaddr: 0x1000,
            len: 0x5000,
            file_off: 0x10000,
        };
        let got = pieces(&run, &[(0x2000, 0x3000), (0x4000, 0x9000)]);
        assert_eq!(
            got,
            vec![
                (0x1000, 0x1000, 0x10000, false),
                (0x2000, 0x1000, 0x11000, true),
                (0x3000, 0x1000, 0x12000, false),
                (0x4000, 0x2000, 0x13000, true),
            ]
        );
        assert_eq!(pieces(&run, &[]), vec![(0x1000, 0x5000, 0x10000, false)]);
    }
}
