//! `/proc/PID/pagemap`: one u64 per virtual page, read in large batches with pread.

use std::fs::File;
use std::os::unix::fs::FileExt;

use super::{ProcError, pid_path};

/// One pagemap entry (see Documentation/admin-guide/mm/pagemap.rst).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PageEntry(pub u64);

impl PageEntry {
    pub const PRESENT: u64 = 1 << 63;
    pub const SWAPPED: u64 = 1 << 62;
    /// Page is file-backed or shared anonymous (not a private anonymous copy).
    pub const FILE_OR_SHARED: u64 = 1 << 61;
    /// A guard region's marker (`MADV_GUARD_INSTALL`, Linux 6.14+): shown as swapped too,
    /// but there is no page to read.
    pub const GUARD: u64 = 1 << 58;
    pub const EXCLUSIVE: u64 = 1 << 56;
    /// Meaningless on this machine (no CONFIG_MEM_SOFT_DIRTY).
    pub const SOFT_DIRTY: u64 = 1 << 55;
    pub const PFN_MASK: u64 = (1 << 55) - 1;

    pub fn present(self) -> bool {
        self.0 & Self::PRESENT != 0
    }
    pub fn swapped(self) -> bool {
        self.0 & Self::SWAPPED != 0
    }
    pub fn file_or_shared(self) -> bool {
        self.0 & Self::FILE_OR_SHARED != 0
    }
    pub fn guard(self) -> bool {
        self.0 & Self::GUARD != 0
    }
    pub fn exclusive(self) -> bool {
        self.0 & Self::EXCLUSIVE != 0
    }
    /// The page frame number (0 unless the reader has CAP_SYS_ADMIN, and for swapped pages
    /// the swap type/offset instead).
    pub fn pfn(self) -> u64 {
        self.0 & Self::PFN_MASK
    }
}

/// Decode native-endian u64 entries from a byte buffer (trailing partial entry ignored).
pub fn parse_entries(bytes: &[u8], out: &mut Vec<PageEntry>) {
    out.extend(bytes.chunks_exact(8).map(|c| {
        let mut a = [0u8; 8];
        a.copy_from_slice(c);
        PageEntry(u64::from_ne_bytes(a))
    }));
}

/// An open pagemap file of one task.
#[derive(Debug)]
pub struct Pagemap {
    pid: i32,
    file: File,
    buf: Vec<u8>,
}

/// Entries read per pread (64 Ki pages = 256 MiB of address space, 512 KiB of buffer).
const BATCH_PAGES: u64 = 64 * 1024;

impl Pagemap {
    pub fn open(pid: i32) -> Result<Self, ProcError> {
        let path = pid_path(pid, "pagemap");
        let file = File::open(&path).map_err(|source| ProcError::Read { path, source })?;
        Ok(Self {
            pid,
            file,
            buf: Vec::new(),
        })
    }

    /// Entries for the pages of `[start, end)` (page-aligned), appended to `out`.
    pub fn read_range(
        &mut self,
        start: u64,
        end: u64,
        page_size: u64,
        out: &mut Vec<PageEntry>,
    ) -> Result<(), ProcError> {
        let mut page = start / page_size;
        let last = end / page_size;
        while page < last {
            let n = (last - page).min(BATCH_PAGES);
            let want = (n * 8) as usize;
            self.buf.resize(want, 0);
            let mut got = 0usize;
            while got < want {
                match self
                    .file
                    .read_at(&mut self.buf[got..want], page * 8 + got as u64)
                {
                    Ok(0) => break,
                    Ok(k) => got += k,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(source) => {
                        return Err(ProcError::Read {
                            path: pid_path(self.pid, "pagemap"),
                            source,
                        });
                    }
                }
            }
            if got < want {
                return Err(ProcError::Read {
                    path: pid_path(self.pid, "pagemap"),
                    source: std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("short read at page {page:#x}"),
                    ),
                });
            }
            parse_entries(&self.buf[..want], out);
            page += n;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits() {
        let e = PageEntry((1 << 63) | (1 << 56) | 0x1234);
        assert!(e.present() && e.exclusive() && !e.swapped() && !e.file_or_shared());
        assert_eq!(e.pfn(), 0x1234);
        let mut v = Vec::new();
        parse_entries(&[1, 0, 0, 0, 0, 0, 0, 0x80, 9], &mut v);
        assert_eq!(v, vec![PageEntry(0x8000_0000_0000_0001)]);
    }

    #[test]
    fn own_touched_page_is_present() {
        let data = vec![7u8; 64 * 4096];
        let page = 4096u64;
        let start = (data.as_ptr() as u64).div_ceil(page) * page;
        let mut pm = Pagemap::open(std::process::id() as i32).unwrap();
        let mut out = Vec::new();
        pm.read_range(start, start + 16 * page, page, &mut out)
            .unwrap();
        assert_eq!(out.len(), 16);
        assert!(out.iter().all(|e| e.present()));
        assert!(std::hint::black_box(&data)[0] == 7);
    }
}
