//! The memory part of a task's restore plan: validated VMAs and the runs of pages to read
//! from `pages-N.img`, checked against each other and against the pages file size.

use criu_proto::images::{PagemapEntry, VmaEntry};

use super::error::{Result, bad};

pub const PAGE_SIZE: u64 = 4096;
/// Highest user address + 1 with 4-level paging (`TASK_SIZE_MAX`); we refuse VMAs above it
/// except the vsyscall page.
pub const TASK_SIZE: u64 = 0x7fff_ffff_f000;

// vma_entry.status bits (CRIU's VMA_* flags).
pub const VMA_AREA_REGULAR: u32 = 1 << 0;
pub const VMA_AREA_STACK: u32 = 1 << 1;
pub const VMA_AREA_VSYSCALL: u32 = 1 << 2;
pub const VMA_AREA_VDSO: u32 = 1 << 3;
pub const VMA_AREA_HEAP: u32 = 1 << 5;
pub const VMA_FILE_PRIVATE: u32 = 1 << 6;
pub const VMA_FILE_SHARED: u32 = 1 << 7;
pub const VMA_ANON_SHARED: u32 = 1 << 8;
pub const VMA_ANON_PRIVATE: u32 = 1 << 9;
pub const VMA_AREA_VVAR: u32 = 1 << 12;
/// A SysV shm attachment (with `VMA_ANON_SHARED`, `shmid` the segment id).
pub const VMA_AREA_SYSVIPC: u32 = 1 << 10;
/// A memfd mapping (with `VMA_FILE_SHARED`/`VMA_FILE_PRIVATE`, `shmid` its file id): mapped
/// from the file its plugin restores, like any file VMA.
pub const VMA_AREA_MEMFD: u32 = 1 << 14;
/// An AIO ring (alone, as CRIU writes it): its pages go into a private anonymous area
/// that [`super::aio`] replaces with a new ring.
pub const VMA_AREA_AIORING: u32 = 1 << 13;
/// A guard region (`MADV_GUARD_INSTALL`) recorded as CRIU 4.2 does: an extra entry after
/// the real VMAs, inside one of them; left out of the plan, see [`super::guards`].
pub const VMA_AREA_GUARD: u32 = 1 << 16;
/// Kinds we do not restore yet: socket, uprobes, plugin-owned, unsupported. A shadow stack (1 << 15) is mapped as private anonymous memory here and
/// replaced by `crate::shstk` (refused at load time on hosts without shadow stacks).
const VMA_UNHANDLED: u32 = (1 << 11) | (1 << 16) | (1 << 17) | (1 << 27) | (1 << 31);

// pagemap_entry.flags.
pub const PE_PARENT: u32 = 1 << 0;
pub const PE_LAZY: u32 = 1 << 1;
pub const PE_PRESENT: u32 = 1 << 2;

/// What backs a VMA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmaKind {
    /// Private anonymous memory (heap, stack, malloc arenas...).
    AnonPrivate,
    /// Private mapping of the file `files.img` id `file_id` (a regular file, or any file its
    /// plugin opens, e.g. a memfd).
    FilePrivate { file_id: u32 },
    /// Shared mapping of the file `file_id`.
    FileShared { file_id: u32 },
    /// Anonymous shared memory: a window of the shmem object `shmid`, whose contents are in
    /// `pagemap-shmem-<shmid>.img`.
    AnonShared { shmid: u64 },
    /// SysV shared memory segment `shmid`, attached again at restore ([`super::sysv`]).
    SysvShm { shmid: u64 },
    /// `[vvar]` or `[vvar_vclock]`: recreated with the vDSO.
    Vvar,
    /// `[vdso]`.
    Vdso,
    /// `[vsyscall]`: fixed by the kernel, nothing to do.
    Vsyscall,
    /// An AIO ring: a private anonymous area for its dumped pages, replaced by a new ring.
    AioRing,
}

/// One validated VMA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmaPlan {
    pub start: u64,
    pub end: u64,
    pub pgoff: u64,
    pub prot: u32,
    pub flags: u32,
    pub kind: VmaKind,
    /// Bit N set = madvise(N) was in effect.
    pub madv: u64,
    /// Open flags the file was mapped with (file VMAs).
    pub fdflags: u32,
    pub stack: bool,
    pub heap: bool,
}

impl VmaPlan {
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    /// Whether a shared file mapping needs its file open for writing: it is writable, or
    /// its file was open for writing when mapped (then the mapping may become writable
    /// with `mprotect` later, which a read-only open would refuse with EACCES).
    pub fn maps_file_writable(&self) -> bool {
        self.prot & libc::PROT_WRITE as u32 != 0
            || self.fdflags & libc::O_ACCMODE as u32 != libc::O_RDONLY as u32
    }

    /// Whether restore writes page contents into it (needs a private, writable mapping).
    pub fn takes_pages(&self) -> bool {
        matches!(
            self.kind,
            VmaKind::AnonPrivate | VmaKind::FilePrivate { .. } | VmaKind::AioRing
        )
    }
}

/// A contiguous run of pages: `len` bytes at `vaddr` come from `file_off` of the pages file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRun {
    pub vaddr: u64,
    pub len: u64,
    pub file_off: u64,
}

/// Validates the dumped VMAs (image `mm`): page-aligned, in user range, sorted, disjoint,
/// of a kind we can restore.
pub fn plan_vmas(image: &str, vmas: &[VmaEntry]) -> Result<Vec<VmaPlan>> {
    let mut out: Vec<VmaPlan> = Vec::with_capacity(vmas.len());
    for (i, v) in vmas.iter().enumerate() {
        let e = Some(i);
        if v.status == VMA_AREA_GUARD {
            continue;
        }
        if v.start % PAGE_SIZE != 0 || v.end % PAGE_SIZE != 0 || v.start >= v.end {
            return Err(bad(
                image,
                e,
                format!("vma {:#x}-{:#x} not page-aligned or empty", v.start, v.end),
            ));
        }
        let vsyscall = v.status & VMA_AREA_VSYSCALL != 0;
        if !vsyscall && v.end > TASK_SIZE {
            return Err(bad(
                image,
                e,
                format!(
                    "vma {:#x}-{:#x} above the user address range",
                    v.start, v.end
                ),
            ));
        }
        if v.status & VMA_UNHANDLED != 0 {
            return Err(bad(
                image,
                e,
                format!(
                    "vma {:#x}-{:#x} has status {:#x}, a kind this restore cannot recreate",
                    v.start, v.end, v.status
                ),
            ));
        }
        if let Some(prev) = out.last()
            && prev.end > v.start
        {
            return Err(bad(
                image,
                e,
                format!(
                    "vma {:#x}-{:#x} overlaps or is out of order",
                    v.start, v.end
                ),
            ));
        }
        if v.status & VMA_AREA_MEMFD != 0 && v.status & (VMA_FILE_PRIVATE | VMA_FILE_SHARED) == 0 {
            return Err(bad(
                image,
                e,
                format!(
                    "memfd vma {:#x}-{:#x} is neither a shared nor a private file mapping",
                    v.start, v.end
                ),
            ));
        }
        let file_id = || {
            u32::try_from(v.shmid)
                .map_err(|_| bad(image, e, format!("file id {} too big", v.shmid)))
        };
        let kind = if vsyscall {
            VmaKind::Vsyscall
        } else if v.status & VMA_AREA_AIORING != 0 {
            VmaKind::AioRing
        } else if v.status & VMA_AREA_VVAR != 0 {
            VmaKind::Vvar
        } else if v.status & VMA_AREA_VDSO != 0 {
            VmaKind::Vdso
        } else if v.status & VMA_FILE_PRIVATE != 0 {
            VmaKind::FilePrivate {
                file_id: file_id()?,
            }
        } else if v.status & VMA_FILE_SHARED != 0 {
            VmaKind::FileShared {
                file_id: file_id()?,
            }
        } else if v.status & VMA_AREA_SYSVIPC != 0 {
            VmaKind::SysvShm { shmid: v.shmid }
        } else if v.status & VMA_ANON_SHARED != 0 {
            VmaKind::AnonShared { shmid: v.shmid }
        } else if v.status & VMA_ANON_PRIVATE != 0 {
            VmaKind::AnonPrivate
        } else {
            return Err(bad(
                image,
                e,
                format!(
                    "vma {:#x}-{:#x}: unknown status {:#x}",
                    v.start, v.end, v.status
                ),
            ));
        };
        if v.pgoff % PAGE_SIZE != 0 {
            return Err(bad(
                image,
                e,
                format!("pgoff {:#x} not page-aligned", v.pgoff),
            ));
        }
        if v.prot & !(libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC) as u32 != 0 {
            return Err(bad(image, e, format!("unknown prot bits {:#x}", v.prot)));
        }
        out.push(VmaPlan {
            start: v.start,
            end: v.end,
            pgoff: v.pgoff,
            prot: v.prot,
            flags: v.flags,
            kind,
            madv: v.madv.unwrap_or(0),
            fdflags: v.fdflags.unwrap_or(0),
            stack: v.status & VMA_AREA_STACK != 0,
            heap: v.status & VMA_AREA_HEAP != 0,
        });
    }
    Ok(out)
}

/// Turns the pagemap entries (image `pagemap`, entries after the head) into page runs in
/// the pages file, coalescing adjacent ones, and checks that each lies inside a VMA that
/// takes pages and that the pages file (`pages_size` bytes) holds them all.
pub fn plan_pages(
    image: &str,
    entries: &[PagemapEntry],
    vmas: &[VmaPlan],
    pages_size: u64,
) -> Result<Vec<PageRun>> {
    let mut runs: Vec<PageRun> = Vec::new();
    let mut file_off = 0u64;
    for (i, pe) in entries.iter().enumerate() {
        // Entry 0 of the file is the head; report file entry numbers.
        let e = Some(i + 1);
        let flags = pe.flags.unwrap_or(if pe.in_parent == Some(true) {
            PE_PARENT
        } else {
            PE_PRESENT
        });
        let nr = pe.nr_pages.unwrap_or(u64::from(pe.compat_nr_pages));
        if flags & PE_PARENT != 0 {
            return Err(bad(
                image,
                e,
                "pages in a parent image (incremental dump) are not supported",
            ));
        }
        if flags & PE_PRESENT == 0 {
            if flags & PE_LAZY != 0 {
                return Err(bad(
                    image,
                    e,
                    "lazy pages (no --lazy-pages server) are not supported",
                ));
            }
            continue;
        }
        let len = nr
            .checked_mul(PAGE_SIZE)
            .filter(|l| *l > 0 && *l <= TASK_SIZE)
            .ok_or_else(|| bad(image, e, format!("bad page count {nr}")))?;
        let end = pe
            .vaddr
            .checked_add(len)
            .filter(|end| *end <= TASK_SIZE && pe.vaddr % PAGE_SIZE == 0)
            .ok_or_else(|| {
                bad(
                    image,
                    e,
                    format!("run at {:#x} of {nr} pages out of range", pe.vaddr),
                )
            })?;
        if in_vdso(pe.vaddr, end, vmas) {
            // CRIU dumps the vDSO text; restore maps the running kernel's vDSO instead.
            file_off += len;
            continue;
        }
        check_covered(image, e, pe.vaddr, end, vmas)?;
        match runs.last_mut() {
            Some(last)
                if last.vaddr + last.len == pe.vaddr && last.file_off + last.len == file_off =>
            {
                last.len += len;
            }
            Some(last) if last.vaddr + last.len > pe.vaddr => {
                return Err(bad(
                    image,
                    e,
                    format!("run at {:#x} overlaps or is out of order", pe.vaddr),
                ));
            }
            _ => runs.push(PageRun {
                vaddr: pe.vaddr,
                len,
                file_off,
            }),
        }
        file_off += len;
    }
    if file_off > pages_size {
        return Err(bad(
            image,
            None,
            format!("pagemap names {file_off} bytes of pages but the pages file has {pages_size}"),
        ));
    }
    Ok(runs)
}

/// Whether `[start, end)` lies inside the vDSO/vvar VMAs.
fn in_vdso(start: u64, end: u64, vmas: &[VmaPlan]) -> bool {
    vmas.iter().any(|v| {
        matches!(v.kind, VmaKind::Vdso | VmaKind::Vvar) && v.start <= start && end <= v.end
    })
}

/// `[start, end)` must lie in VMAs that take pages, without gaps.
fn check_covered(
    image: &str,
    e: Option<usize>,
    start: u64,
    end: u64,
    vmas: &[VmaPlan],
) -> Result<()> {
    let mut at = start;
    let first = vmas.partition_point(|v| v.end <= start);
    for v in &vmas[first..] {
        if at >= end {
            break;
        }
        if v.start > at || !v.takes_pages() {
            break;
        }
        at = v.end;
    }
    if at < end {
        return Err(bad(
            image,
            e,
            format!("pages {start:#x}-{end:#x} are not inside private VMAs (stuck at {at:#x})"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vma(start: u64, end: u64, status: u32) -> VmaEntry {
        VmaEntry {
            start,
            end,
            pgoff: 0,
            shmid: 0,
            prot: 3,
            flags: 0x22,
            status,
            fd: -1,
            madv: None,
            fdflags: None,
            ..Default::default()
        }
    }

    fn pe(vaddr: u64, nr: u64) -> PagemapEntry {
        PagemapEntry {
            vaddr,
            compat_nr_pages: 0,
            in_parent: None,
            flags: Some(PE_PRESENT),
            nr_pages: Some(nr),
        }
    }

    #[test]
    fn vmas_validate() {
        let anon = VMA_AREA_REGULAR | VMA_ANON_PRIVATE;
        assert!(
            plan_vmas(
                "mm",
                &[vma(0x1000, 0x3000, anon), vma(0x3000, 0x4000, anon)]
            )
            .is_ok()
        );
        assert!(
            plan_vmas(
                "mm",
                &[vma(0x1000, 0x3000, anon), vma(0x2000, 0x4000, anon)]
            )
            .is_err()
        );
        assert!(plan_vmas("mm", &[vma(0x1001, 0x3000, anon)]).is_err());
        assert!(plan_vmas("mm", &[vma(0x1000, 0x1000, anon)]).is_err());
        // A socket mapping (VMA_AREA_SOCKET) is not restored.
        assert!(plan_vmas("mm", &[vma(0x1000, 0x2000, anon | (1 << 11))]).is_err());
        // An AIO ring is, as its own kind.
        let aio = plan_vmas("mm", &[vma(0x1000, 0x2000, VMA_AREA_AIORING)]).unwrap();
        assert_eq!(aio[0].kind, VmaKind::AioRing);
        assert!(plan_vmas("mm", &[vma(TASK_SIZE, TASK_SIZE + 0x1000, anon)]).is_err());
    }

    #[test]
    fn pages_coalesce_and_check() {
        let anon = VMA_AREA_REGULAR | VMA_ANON_PRIVATE;
        let v = plan_vmas(
            "mm",
            &[vma(0x1000, 0x3000, anon), vma(0x3000, 0x8000, anon)],
        )
        .unwrap();
        let runs = plan_pages(
            "pm",
            &[pe(0x1000, 2), pe(0x3000, 1), pe(0x6000, 1)],
            &v,
            4 * 4096,
        )
        .unwrap();
        assert_eq!(
            runs,
            vec![
                PageRun {
                    vaddr: 0x1000,
                    len: 0x3000,
                    file_off: 0
                },
                PageRun {
                    vaddr: 0x6000,
                    len: 0x1000,
                    file_off: 0x3000
                },
            ]
        );
        // Pages file too small.
        assert!(plan_pages("pm", &[pe(0x1000, 2)], &v, 4096).is_err());
        // Outside any VMA.
        assert!(plan_pages("pm", &[pe(0x8000, 1)], &v, 4096).is_err());
        // Parent pages.
        let mut p = pe(0x1000, 1);
        p.flags = Some(PE_PARENT);
        assert!(plan_pages("pm", &[p], &v, 4096).is_err());
    }
}
