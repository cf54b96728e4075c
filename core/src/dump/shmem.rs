//! Anonymous shared memory (MAP_SHARED|MAP_ANONYMOUS): each shmem object (vma_entry.shmid =
//! its inode) is dumped once into `pagemap-shmem-<shmid>.img` + its own `pages-<id>.img`,
//! as CRIU does: pagemap `vaddr` is the offset inside the object, only its data segments
//! (SEEK_DATA/SEEK_HOLE) are written, holes read back as zeros.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;

use criu_proto::images::PagemapEntry;
use nix::unistd::{Whence, lseek};

use crate::image::{ImageDir, ImageKind};

use super::DumpError;
use super::memory::{PAGE_SIZE, Vma};
use super::pages::{PE_PRESENT, PageStats};

const CHUNK: u64 = 16 << 20;

/// Data segments `[start, end)` (page-aligned) of a file of `size` bytes.
fn data_segments(f: &File, size: u64) -> Result<Vec<(u64, u64)>, nix::errno::Errno> {
    let mut out = Vec::new();
    let mut off = 0u64;
    while off < size {
        let d = match lseek(f.as_fd(), off as i64, Whence::SeekData) {
            Ok(d) => d as u64,
            Err(nix::errno::Errno::ENXIO) => break,
            Err(e) => return Err(e),
        };
        let h = (lseek(f.as_fd(), d as i64, Whence::SeekHole)? as u64).min(size);
        let start = d / PAGE_SIZE * PAGE_SIZE;
        let end = h.div_ceil(PAGE_SIZE) * PAGE_SIZE;
        if end > start {
            out.push((start, end));
        }
        off = end.max(d + 1);
    }
    Ok(out)
}

/// The shmem objects of one dump: which are written, the pages-file counter (shared with
/// the tasks' own pages files) and the page counts for `stats-dump`. Anonymous shared memory
/// and the plugins' [`criu_plugin_api::DumpContext::dump_shmem`] (memfd contents) share it:
/// both key objects by inode number, on the one shmem device.
#[derive(Debug)]
pub struct ShmemState {
    pub next_pages_id: u32,
    pub done: HashSet<u64>,
    pub stats: PageStats,
}

impl Default for ShmemState {
    fn default() -> Self {
        ShmemState {
            next_pages_id: 1,
            done: HashSet::new(),
            stats: PageStats::default(),
        }
    }
}

impl ShmemState {
    /// A fresh pages-file id.
    pub fn pages_id(&mut self) -> u32 {
        let id = self.next_pages_id;
        self.next_pages_id += 1;
        id
    }

    /// Writes object `shmid` read from `f` unless written already in this dump. `what`
    /// names it in errors (its map_files link, a memfd).
    pub fn dump_object(
        &mut self,
        pid: i32,
        dir: &ImageDir,
        shmid: u64,
        f: &File,
        what: &str,
    ) -> Result<(), DumpError> {
        if !self.done.insert(shmid) {
            return Ok(());
        }
        let pages_id = self.pages_id();
        let st = write_object(pid, dir, shmid, f, what, pages_id)?;
        self.stats.scanned += st.scanned;
        self.stats.written += st.written;
        Ok(())
    }
}

/// Dump every shmem object mapped by `vmas` and not written yet (objects shared by
/// several processes are dumped once).
pub fn dump_shmem(
    pid: i32,
    dir: &ImageDir,
    vmas: &[Vma],
    state: &mut ShmemState,
) -> Result<(), DumpError> {
    let mut objects: BTreeMap<u64, &str> = BTreeMap::new();
    for v in vmas {
        if let Some(p) = &v.shmem
            && !state.done.contains(&v.entry.shmid)
        {
            objects.entry(v.entry.shmid).or_insert(p.as_str());
        }
    }
    for (shmid, path) in objects {
        let f = File::open(path).map_err(|e| {
            DumpError::sys(
                pid,
                "memory",
                format!("open {path}"),
                nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
            )
        })?;
        state.dump_object(pid, dir, shmid, &f, path)?;
    }
    Ok(())
}

/// `pagemap-shmem-<shmid>.img` and `pages-<pages_id>.img` of the object read from `f`.
fn write_object(
    pid: i32,
    dir: &ImageDir,
    shmid: u64,
    f: &File,
    what: &str,
    pages_id: u32,
) -> Result<PageStats, DumpError> {
    let img = |source| DumpError::Image {
        pid,
        step: "memory",
        source,
    };
    let errno =
        |op: &str, e: nix::errno::Errno| DumpError::sys(pid, "memory", format!("{op} {what}"), e);
    let size = nix::sys::stat::fstat(f)
        .map_err(|e| errno("fstat", e))?
        .st_size as u64;
    let segments = data_segments(f, size).map_err(|e| errno("lseek", e))?;
    let mut stats = PageStats::default();
    let mut pm = dir.writer(ImageKind::ShmemPagemap, shmid).map_err(img)?;
    pm.write_entry(&dir.pagemap_head(pages_id)).map_err(img)?;
    let mut pw = dir.pages_writer(pages_id as u64).map_err(img)?;
    stats.scanned += size.div_ceil(PAGE_SIZE);
    let mut buf = Vec::new();
    for (start, end) in segments {
        pm.write_entry(&PagemapEntry {
            vaddr: start,
            compat_nr_pages: 0,
            in_parent: None,
            flags: Some(PE_PRESENT),
            nr_pages: Some((end - start) / PAGE_SIZE),
        })
        .map_err(img)?;
        let mut at = start;
        while at < end {
            let n = (end - at).min(CHUNK);
            buf.resize(n as usize, 0);
            // The last page of an object whose size is not page-aligned reads short: the
            // rest of the page is zeros.
            let got = read_full_at(f, &mut buf, at).map_err(|e| {
                errno(
                    "pread",
                    nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
                )
            })?;
            buf[got..].fill(0);
            pw.write_pages(&buf).map_err(img)?;
            at += n;
        }
        stats.written += (end - start) / PAGE_SIZE;
    }
    pm.finish().map_err(img)?;
    pw.finish().map_err(img)?;
    Ok(stats)
}

/// Reads up to `buf.len()` bytes at `off`, stopping early only at end of file.
fn read_full_at(f: &File, buf: &mut [u8], off: u64) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match f.read_at(&mut buf[done..], off + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_of_a_sparse_memfd() {
        let fd =
            nix::sys::memfd::memfd_create(c"seg", nix::sys::memfd::MFdFlags::MFD_CLOEXEC).unwrap();
        let f = File::from(fd);
        f.set_len(64 * PAGE_SIZE).unwrap();
        f.write_all_at(&[1u8; 10], 3 * PAGE_SIZE + 5).unwrap();
        f.write_all_at(&vec![2u8; 2 * PAGE_SIZE as usize], 10 * PAGE_SIZE)
            .unwrap();
        let s = data_segments(&f, 64 * PAGE_SIZE).unwrap();
        assert_eq!(
            s,
            vec![
                (3 * PAGE_SIZE, 4 * PAGE_SIZE),
                (10 * PAGE_SIZE, 12 * PAGE_SIZE)
            ]
        );
    }
}
