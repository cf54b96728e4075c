//! A shared read-write mapping of a file in criu's own process: the way to fill a file that
//! has no `write(2)` (hugetlbfs: a `MFD_HUGETLB` memfd takes data only through a mapping).
//! And a new anonymous shared memory object, as a file.

use std::num::NonZeroUsize;
use std::os::fd::BorrowedFd;
use std::ptr::NonNull;

use nix::errno::Errno;
use nix::sys::mman::{MapFlags, ProtFlags, mmap, munmap};

/// `len` bytes of a file mapped `MAP_SHARED`, readable and writable; unmapped on drop.
#[derive(Debug)]
pub struct FileMap {
    ptr: NonNull<libc::c_void>,
    len: usize,
}

impl FileMap {
    /// Maps the first `len` bytes of `fd` (`mmap(2)`; `EINVAL` for `len` 0, `ENOMEM` when
    /// a hugetlbfs file has no huge pages to back it at first touch is a SIGBUS instead:
    /// callers check the pool first).
    pub fn shared(fd: BorrowedFd<'_>, len: usize) -> Result<FileMap, Errno> {
        let n = NonZeroUsize::new(len).ok_or(Errno::EINVAL)?;
        // SAFETY: a new mapping chosen by the kernel (no address hint): it overlaps nothing
        // of ours; it is only accessed through `write_at`, bounds-checked.
        let ptr = unsafe {
            mmap(
                None,
                n,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                fd,
                0,
            )
        }?;
        Ok(FileMap { ptr, len })
    }

    /// Copies `data` to offset `off` of the mapping (`EFAULT` when it does not fit).
    pub fn write_at(&mut self, off: usize, data: &[u8]) -> Result<(), Errno> {
        let end = off.checked_add(data.len()).ok_or(Errno::EFAULT)?;
        if end > self.len {
            return Err(Errno::EFAULT);
        }
        // SAFETY: [off, end) lies inside the `len` bytes mapped readable and writable by
        // `shared`, which stay mapped until drop; `data` is ours, so they cannot overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.ptr.as_ptr().cast::<u8>().add(off),
                data.len(),
            );
        }
        Ok(())
    }
}

impl Drop for FileMap {
    fn drop(&mut self) {
        // SAFETY: the mapping made by `shared`, unmapped once; no reference into it outlives
        // `self` (`write_at` copies in and returns).
        let _ = unsafe { munmap(self.ptr, self.len) };
    }
}

/// A new anonymous shared memory object of `len` bytes (what `mmap(MAP_SHARED |
/// MAP_ANONYMOUS)` creates, `/dev/zero (deleted)` in `/proc/PID/maps`), opened read-write
/// through `/proc/self/map_files` of a throw-away mapping in criu's own process. Any size,
/// 0 included: the mapping covers whole pages, the file is then cut to `len`.
pub fn anon_shmem_object(len: usize) -> std::io::Result<std::fs::File> {
    const PAGE: usize = 4096;
    let map_len = len.max(1).div_ceil(PAGE) * PAGE;
    let n = NonZeroUsize::new(map_len).ok_or(Errno::EINVAL)?;
    // SAFETY: a new mapping chosen by the kernel (no address hint): it overlaps nothing of
    // ours; nothing reads or writes it, it is unmapped below.
    let ptr = unsafe {
        nix::sys::mman::mmap_anonymous(
            None,
            n,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_SHARED,
        )
    }?;
    let start = ptr.as_ptr() as usize;
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!(
            "/proc/self/map_files/{start:x}-{:x}",
            start + map_len
        ));
    // SAFETY: the mapping made above, unmapped once; no reference into it exists.
    let _ = unsafe { munmap(ptr, map_len) };
    let f = opened?;
    if len != map_len {
        f.set_len(len as u64)?;
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::fs::FileExt;

    #[test]
    fn writes_land_in_the_file() {
        let fd = nix::sys::memfd::memfd_create(c"filemap", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
            .unwrap();
        let f = std::fs::File::from(fd);
        f.set_len(8192).unwrap();
        let mut m = FileMap::shared(f.as_fd(), 8192).unwrap();
        m.write_at(4090, b"across").unwrap();
        assert_eq!(m.write_at(8190, b"xyz"), Err(Errno::EFAULT));
        assert_eq!(m.write_at(usize::MAX, b"x"), Err(Errno::EFAULT));
        drop(m);
        let mut got = [0u8; 6];
        f.read_exact_at(&mut got, 4090).unwrap();
        assert_eq!(&got, b"across");
        assert!(FileMap::shared(f.as_fd(), 0).is_err());
    }

    #[test]
    fn anon_shmem_objects_are_files() {
        let f = anon_shmem_object(3 * 4096).unwrap();
        assert_eq!(f.metadata().unwrap().len(), 3 * 4096);
        f.write_all_at(b"shared", 4096).unwrap();
        let mut got = [0u8; 6];
        f.read_exact_at(&mut got, 4096).unwrap();
        assert_eq!(&got, b"shared");
        let link = std::fs::read_link(format!("/proc/self/fd/{}", {
            use std::os::fd::AsRawFd;
            f.as_raw_fd()
        }))
        .unwrap();
        assert!(link.to_string_lossy().starts_with("/dev/zero"), "{link:?}");
        // Sizes that are no whole number of pages, and none at all (an object cut to 5
        // bytes or emptied by its task).
        assert_eq!(anon_shmem_object(5).unwrap().metadata().unwrap().len(), 5);
        assert_eq!(anon_shmem_object(0).unwrap().metadata().unwrap().len(), 0);
    }
}
