//! Page contents: pagemap tells which pages of each private VMA hold data (present or
//! swapped, not the shared zero page, not an untouched file page); they are copied with
//! process_vm_readv in large batches (many iovecs, one multi-MiB buffer) and written out
//! with large writes. Unreadable VMAs (PROT_NONE...) go through /proc/PID/mem.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use criu_proto::images::PagemapEntry;
use nix::unistd::Pid;

use crate::proc::pagemap::{PageEntry, Pagemap};
use crate::sys::vm::{self, ProcMem, RemoteRange};

use super::DumpError;
use super::memory::{
    PAGE_SIZE, VMA_AREA_VDSO, VMA_AREA_VSYSCALL, VMA_AREA_VVAR, VMA_FILE_PRIVATE, Vma,
    privately_dumped,
};

pub const PE_LAZY: u32 = 1 << 1;
pub const PE_PRESENT: u32 = 1 << 2;

/// Bytes gathered per batch before they are written.
const BATCH_BYTES: usize = 16 << 20;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PageStats {
    pub scanned: u64,
    pub written: u64,
}

/// Never written: three pages of zeros in .bss, the middle one only ever read, so it maps
/// the kernel's shared zero page.
static ZERO_PROBE: [AtomicU64; 3 * 512] = [const { AtomicU64::new(0) }; 3 * 512];

/// PFN of the shared zero page (0 when it cannot be learned: then zero pages get dumped).
pub fn zero_page_pfn() -> u64 {
    static PFN: OnceLock<u64> = OnceLock::new();
    *PFN.get_or_init(|| {
        let base = ZERO_PROBE.as_ptr() as u64;
        let page = base.div_ceil(PAGE_SIZE) * PAGE_SIZE;
        let idx = ((page - base) / 8) as usize;
        let Some(word) = ZERO_PROBE.get(idx) else {
            return 0;
        };
        std::hint::black_box(word.load(Ordering::Relaxed));
        let mut out = Vec::new();
        match Pagemap::open(std::process::id() as i32)
            .and_then(|mut pm| pm.read_range(page, page + PAGE_SIZE, PAGE_SIZE, &mut out))
        {
            Ok(()) => out
                .first()
                .filter(|e| e.present() && !e.file_or_shared())
                .map(|e| e.pfn())
                .unwrap_or(0),
            Err(_) => 0,
        }
    })
}

/// CRIU's rule for one page of a privately dumped VMA.
pub fn should_dump(v: &Vma, pme: PageEntry, zero_pfn: u64) -> bool {
    // The kernel writes an AIO ring's completions without the task touching the pages,
    // so they may look absent: the whole ring is dumped, as CRIU.
    if v.has(VMA_AREA_VDSO) || v.has(super::memory::VMA_AREA_AIORING) {
        return true;
    }
    // The kernel may drop MAP_DROPPABLE pages at any time (they read back as zeros), so
    // they are not dumped, as CRIU: the mapping comes back empty.
    if v.has(VMA_AREA_VVAR) || v.entry.flags & libc::MAP_DROPPABLE as u32 != 0 {
        return false;
    }
    if v.has(VMA_FILE_PRIVATE) && pme.file_or_shared() {
        return false;
    }
    if pme.guard() {
        return false;
    }
    if pme.present() && zero_pfn != 0 && pme.pfn() == zero_pfn {
        return false;
    }
    pme.present() || pme.swapped()
}

/// CRIU's `vma_entry_can_be_lazy`.
pub fn can_be_lazy(v: &Vma) -> bool {
    let f = v.entry.flags;
    f & libc::MAP_ANONYMOUS as u32 != 0
        && f & libc::MAP_PRIVATE as u32 != 0
        && f & libc::MAP_LOCKED as u32 == 0
        && v.entry.status & (VMA_AREA_VDSO | VMA_AREA_VSYSCALL) == 0
}

/// Runs of pages to dump in one VMA: (first page address, page count).
pub fn runs(v: &Vma, pmes: &[PageEntry], zero_pfn: u64) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (i, &pme) in pmes.iter().enumerate() {
        if !should_dump(v, pme, zero_pfn) {
            continue;
        }
        let addr = v.entry.start + i as u64 * PAGE_SIZE;
        match out.last_mut() {
            Some((s, n)) if *s + *n * PAGE_SIZE == addr => *n += 1,
            _ => out.push((addr, 1)),
        }
    }
    out
}

/// Where full page buffers go: the sink takes the buffer (exactly the bytes to write) and
/// gives back an empty one to fill next, so a writer thread can work on one buffer while
/// the next is being read.
pub type PageSink<'a> = dyn FnMut(Vec<u8>) -> Result<Vec<u8>, DumpError> + 'a;

/// Gathers page contents into a big buffer and hands full buffers to `sink`.
struct Batcher<'a> {
    pid: i32,
    buf: Vec<u8>,
    ranges: Vec<RemoteRange>,
    mem: Option<ProcMem>,
    sink: &'a mut PageSink<'a>,
}

impl Batcher<'_> {
    fn pending(&self) -> usize {
        self.ranges.iter().map(|r| r.len).sum()
    }

    fn proc_mem(&mut self) -> Result<&ProcMem, DumpError> {
        if self.mem.is_none() {
            let m = ProcMem::open(Pid::from_raw(self.pid), false).map_err(|source| {
                DumpError::Memory {
                    pid: self.pid,
                    step: "memory",
                    source,
                }
            })?;
            self.mem = Some(m);
        }
        self.mem.as_ref().ok_or(DumpError::Unexpected {
            pid: self.pid,
            step: "memory",
            what: "no /proc/PID/mem".into(),
        })
    }

    fn flush(&mut self) -> Result<(), DumpError> {
        let len = self.pending();
        if len == 0 {
            return Ok(());
        }
        self.buf.resize(len, 0);
        let pid = Pid::from_raw(self.pid);
        if vm::read_ranges(pid, &self.ranges, &mut self.buf[..len]).is_err() {
            // Some page refused process_vm_readv (protection, guard, uffd): /proc/PID/mem
            // reads through protections.
            let ranges = std::mem::take(&mut self.ranges);
            let mut off = 0;
            let mut buf = std::mem::take(&mut self.buf);
            let res = (|| {
                for r in &ranges {
                    let mem = self.proc_mem()?;
                    mem.read_exact(r.addr, &mut buf[off..off + r.len])
                        .map_err(|source| DumpError::Memory {
                            pid: self.pid,
                            step: "memory",
                            source,
                        })?;
                    off += r.len;
                }
                Ok(())
            })();
            self.buf = buf;
            res?;
        }
        self.buf.truncate(len);
        let full = std::mem::take(&mut self.buf);
        self.buf = (self.sink)(full)?;
        self.buf.clear();
        self.ranges.clear();
        Ok(())
    }

    fn add(&mut self, addr: u64, len: usize, readable: bool) -> Result<(), DumpError> {
        if !readable {
            // Kept in order: flush what is gathered, then read this range directly.
            self.flush()?;
            let mut tmp = vec![0u8; len];
            let pid = self.pid;
            self.proc_mem()?
                .read_exact(addr, &mut tmp)
                .map_err(|source| DumpError::Memory {
                    pid,
                    step: "memory",
                    source,
                })?;
            (self.sink)(tmp)?;
            return Ok(());
        }
        let mut addr = addr;
        let mut left = len;
        while left > 0 {
            let room = BATCH_BYTES - self.pending();
            let n = left.min(room);
            self.ranges.push(RemoteRange { addr, len: n });
            addr += n as u64;
            left -= n;
            if self.pending() >= BATCH_BYTES {
                self.flush()?;
            }
        }
        Ok(())
    }
}

/// Dump the pages of every privately dumped VMA of `pid`: pagemap entries go to
/// `entry_sink`, page bytes (in the same order) to `page_sink`.
pub fn dump_pages(
    pid: i32,
    vmas: &[Vma],
    entry_sink: &mut dyn FnMut(&PagemapEntry) -> Result<(), DumpError>,
    page_sink: &mut PageSink<'_>,
) -> Result<PageStats, DumpError> {
    let mut pm = Pagemap::open(pid).map_err(|e| DumpError::proc(pid, "memory", e))?;
    let zero_pfn = zero_page_pfn();
    let mut stats = PageStats::default();
    let mut pmes = Vec::new();
    let mut b = Batcher {
        pid,
        buf: Vec::new(),
        ranges: Vec::new(),
        mem: None,
        sink: page_sink,
    };
    for v in vmas.iter().filter(|v| privately_dumped(v)) {
        pmes.clear();
        pm.read_range(v.entry.start, v.entry.end, PAGE_SIZE, &mut pmes)
            .map_err(|e| DumpError::proc(pid, "memory", e))?;
        stats.scanned += pmes.len() as u64;
        let flags = PE_PRESENT | if can_be_lazy(v) { PE_LAZY } else { 0 };
        let readable = v.entry.prot & libc::PROT_READ as u32 != 0;
        for (addr, n) in runs(v, &pmes, zero_pfn) {
            entry_sink(&PagemapEntry {
                vaddr: addr,
                compat_nr_pages: 0,
                in_parent: None,
                flags: Some(flags),
                nr_pages: Some(n),
            })?;
            b.add(addr, (n * PAGE_SIZE) as usize, readable)?;
            stats.written += n;
        }
    }
    b.flush()?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use criu_proto::images::VmaEntry;

    fn vma(status: u32, flags: u32) -> Vma {
        Vma {
            entry: VmaEntry {
                start: 0x10000,
                end: 0x10000 + 8 * PAGE_SIZE,
                status,
                flags,
                fd: -1,
                ..Default::default()
            },
            file: None,
            shmem: None,
            plugin_only: None,
        }
    }

    #[test]
    fn selection_and_runs() {
        use super::super::memory::{VMA_ANON_PRIVATE, VMA_AREA_REGULAR};
        let anon = vma(
            VMA_AREA_REGULAR | VMA_ANON_PRIVATE,
            (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u32,
        );
        let p = PageEntry(PageEntry::PRESENT | 5);
        let s = PageEntry(PageEntry::SWAPPED);
        let z = PageEntry(PageEntry::PRESENT | 99);
        let n = PageEntry(0);
        let pmes = [p, p, n, s, z, p, p, p];
        assert_eq!(
            runs(&anon, &pmes, 99),
            vec![(0x10000, 2), (0x13000, 1), (0x15000, 3)]
        );
        assert!(can_be_lazy(&anon));
        let droppable = vma(
            VMA_AREA_REGULAR | VMA_ANON_PRIVATE,
            (libc::MAP_DROPPABLE | libc::MAP_ANONYMOUS) as u32,
        );
        assert!(runs(&droppable, &pmes, 99).is_empty());
        let file = vma(
            VMA_AREA_REGULAR | VMA_FILE_PRIVATE,
            libc::MAP_PRIVATE as u32,
        );
        let f = PageEntry(PageEntry::PRESENT | PageEntry::FILE_OR_SHARED | 7);
        assert!(!should_dump(&file, f, 99));
        assert!(should_dump(&file, p, 99));
        assert!(!can_be_lazy(&file));
        let vdso = vma(
            VMA_AREA_REGULAR | VMA_AREA_VDSO | VMA_ANON_PRIVATE,
            (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u32,
        );
        assert!(should_dump(&vdso, n, 99));
        assert!(!can_be_lazy(&vdso));
    }

    #[test]
    fn dumps_own_pages_in_order_and_propagates_sink_errors() {
        use super::super::memory::{VMA_ANON_PRIVATE, VMA_AREA_REGULAR};
        // 40 pages, every other one touched: runs of one page each, all in one batch.
        let mut data = vec![0u8; 42 * PAGE_SIZE as usize];
        let start = (data.as_ptr() as u64).div_ceil(PAGE_SIZE) * PAGE_SIZE;
        let off = (start - data.as_ptr() as u64) as usize;
        for p in (0..40).step_by(2) {
            let at = off + p * PAGE_SIZE as usize;
            data[at..at + PAGE_SIZE as usize].fill(p as u8 + 1);
        }
        let mut v = vma(
            VMA_AREA_REGULAR | VMA_ANON_PRIVATE,
            (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u32,
        );
        v.entry.start = start;
        v.entry.end = start + 40 * PAGE_SIZE;
        v.entry.prot = (libc::PROT_READ | libc::PROT_WRITE) as u32;
        let me = std::process::id() as i32;
        let mut entries = Vec::new();
        let mut bytes = Vec::new();
        let st = dump_pages(
            me,
            std::slice::from_ref(&v),
            &mut |e| {
                entries.push(*e);
                Ok(())
            },
            &mut |b| {
                bytes.extend_from_slice(&b);
                Ok(b)
            },
        )
        .unwrap();
        assert_eq!(st.scanned, 40);
        // Untouched pages of a fresh Vec may or may not be present (zero page or not
        // faulted); every touched page must be there, in address order, with its bytes.
        let mut pos = 0usize;
        let mut seen = 0;
        for e in &entries {
            for k in 0..e.nr_pages.unwrap() {
                let page = ((e.vaddr - start) / PAGE_SIZE + k) as usize;
                let got = &bytes[pos..pos + PAGE_SIZE as usize];
                let want = if page.is_multiple_of(2) {
                    page as u8 + 1
                } else {
                    0
                };
                assert!(got.iter().all(|&b| b == want), "page {page}");
                if page.is_multiple_of(2) {
                    seen += 1;
                }
                pos += PAGE_SIZE as usize;
            }
        }
        assert_eq!(seen, 20);
        assert_eq!(pos, bytes.len());
        let err = dump_pages(me, std::slice::from_ref(&v), &mut |_| Ok(()), &mut |_| {
            Err(DumpError::Injected {
                pid: me,
                step: "memory",
            })
        });
        assert!(matches!(err, Err(DumpError::Injected { .. })));
        std::hint::black_box(&data);
    }

    #[test]
    fn zero_pfn_found() {
        // As root with CAP_SYS_ADMIN pagemap shows PFNs; otherwise the probe gives 0.
        let pfn = zero_page_pfn();
        let caps = crate::proc::status::read_status(std::process::id() as i32).unwrap();
        if caps.cap_eff & (1 << 21) != 0 {
            assert_ne!(pfn, 0);
        } else {
            eprintln!("skipped: no CAP_SYS_ADMIN, PFNs hidden");
        }
    }
}
