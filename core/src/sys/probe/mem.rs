//! Memory-related probes: memfd variants, io_uring, userfaultfd, PAGEMAP_SCAN, and an
//! anonymous test mapping.

use std::fs::File;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;

use super::{ProbeError, Result, err, fd_or, ok_or};
use crate::sys::kabi;

/// `memfd_secret(O_CLOEXEC)` (Linux 5.14+, off unless booted with secretmem enabled).
pub fn memfd_secret() -> Result<OwnedFd> {
    // SAFETY: integer-only syscall.
    let r = unsafe { libc::syscall(libc::SYS_memfd_secret, libc::O_CLOEXEC) };
    fd_or("memfd_secret", r)
}

/// `memfd_create(name, MFD_CLOEXEC | flags)`.
pub fn memfd_create(name: &std::ffi::CStr, flags: u32) -> Result<OwnedFd> {
    // SAFETY: name is a valid C string.
    let r = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | flags) };
    fd_or("memfd_create", r as libc::c_long)
}

/// `io_uring_setup(entries, &params)`; returns the ring fd and the filled-in params.
pub fn io_uring_setup(entries: u32) -> Result<(OwnedFd, kabi::io_uring_params)> {
    let mut p = kabi::io_uring_params::default();
    // SAFETY: p is a valid io_uring_params the kernel reads and fills.
    let r = unsafe { libc::syscall(libc::SYS_io_uring_setup, entries, &mut p) };
    Ok((fd_or("io_uring_setup", r)?, p))
}

/// `userfaultfd(O_CLOEXEC | O_NONBLOCK | extra)`.
pub fn userfaultfd(extra: libc::c_int) -> Result<OwnedFd> {
    // SAFETY: integer-only syscall.
    let r = unsafe {
        libc::syscall(
            libc::SYS_userfaultfd,
            libc::O_CLOEXEC | libc::O_NONBLOCK | extra,
        )
    };
    fd_or("userfaultfd", r)
}

/// `UFFDIO_API` handshake asking for `features`; returns what the kernel granted
/// (features and supported ioctls). Asking for 0 reports every available feature.
pub fn uffd_api(fd: BorrowedFd<'_>, features: u64) -> Result<kabi::uffdio_api> {
    let mut api = kabi::uffdio_api {
        api: kabi::UFFD_API,
        features,
        ioctls: 0,
    };
    // SAFETY: UFFDIO_API reads and writes one uffdio_api.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), kabi::UFFDIO_API, &mut api) };
    ok_or("ioctl(UFFDIO_API)", r as libc::c_long)?;
    Ok(api)
}

/// `PAGEMAP_SCAN` over `[start, end)` on an open `/proc/PID/pagemap`: fills `out` with
/// regions whose categories match (`category_mask` all-of, `anyof_mask` any-of), reporting
/// `return_mask` bits. Returns (regions filled, address where the walk ended).
pub fn pagemap_scan(
    pagemap: &File,
    start: u64,
    end: u64,
    category_mask: u64,
    anyof_mask: u64,
    return_mask: u64,
    out: &mut [kabi::page_region],
) -> Result<(usize, u64)> {
    let mut arg = kabi::pm_scan_arg {
        size: std::mem::size_of::<kabi::pm_scan_arg>() as u64,
        start,
        end,
        vec: out.as_mut_ptr() as u64,
        vec_len: out.len() as u64,
        category_mask,
        category_anyof_mask: anyof_mask,
        return_mask,
        ..Default::default()
    };
    // SAFETY: arg is valid; vec points to out.len() page_regions the kernel may fill.
    let r = unsafe { libc::ioctl(pagemap.as_raw_fd(), kabi::PAGEMAP_SCAN, &mut arg) };
    let n = ok_or("ioctl(PAGEMAP_SCAN)", r as libc::c_long)? as usize;
    Ok((n.min(out.len()), arg.walk_end))
}

/// An anonymous private mapping owned by the probe, unmapped on drop.
#[derive(Debug)]
pub struct AnonMap {
    addr: *mut libc::c_void,
    len: usize,
}

impl AnonMap {
    /// mmap `pages` read-write pages and touch each one.
    pub fn new(pages: usize) -> Result<AnonMap> {
        let len = pages * 4096;
        // SAFETY: fresh anonymous mapping.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(err("mmap"));
        }
        for i in 0..pages {
            // SAFETY: inside our own fresh read-write mapping.
            unsafe { p.cast::<u8>().add(i * 4096).write_volatile(1) };
        }
        Ok(AnonMap { addr: p, len })
    }

    pub fn addr(&self) -> u64 {
        self.addr as u64
    }

    /// Writes one byte into page `page` of the mapping (no-op past the end).
    pub fn touch(&self, page: usize) {
        if page * 4096 < self.len {
            // SAFETY: inside our own read-write mapping.
            unsafe { self.addr.cast::<u8>().add(page * 4096).write_volatile(2) };
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `madvise(addr + off, len, advice)` on part of the mapping.
    pub fn madvise(&self, off: usize, len: usize, advice: libc::c_int) -> Result<()> {
        if off + len > self.len {
            return Err(ProbeError {
                call: "madvise",
                errno: Errno::EINVAL,
            });
        }
        // SAFETY: the range is inside our own mapping.
        let r = unsafe { libc::madvise(self.addr.cast::<u8>().add(off).cast(), len, advice) };
        ok_or("madvise", r as libc::c_long).map(drop)
    }
}

impl Drop for AnonMap {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping.
        unsafe { libc::munmap(self.addr, self.len) };
    }
}

/// Creates an AIO context, moves its ring with `mremap` and checks `io_getevents` still
/// finds it at the new address (what restoring an AIO ring needs); destroys it afterwards.
pub fn aio_remap() -> Result<()> {
    let mut ctx: u64 = 0;
    // SAFETY: io_setup writes the context id (the ring address) into ctx.
    ok_or("io_setup", unsafe {
        libc::syscall(libc::SYS_io_setup, 16, &mut ctx as *mut u64)
    })?;
    let destroy = |c: u64| {
        // SAFETY: destroying the context we created.
        unsafe { libc::syscall(libc::SYS_io_destroy, c) };
    };
    let maps = std::fs::read_to_string("/proc/self/maps").map_err(|_| ProbeError {
        call: "read /proc/self/maps",
        errno: Errno::EIO,
    });
    let len = maps.ok().and_then(|m| {
        m.lines()
            .find(|l| l.starts_with(&format!("{ctx:x}-")) && l.contains("[aio]"))
            .and_then(|l| l.split(['-', ' ']).nth(1))
            .and_then(|end| u64::from_str_radix(end, 16).ok())
            .map(|end| end - ctx)
    });
    let Some(len) = len else {
        destroy(ctx);
        return Err(ProbeError {
            call: "find the [aio] ring in /proc/self/maps",
            errno: Errno::ENOENT,
        });
    };
    // SAFETY: a fresh anonymous mapping to move the ring onto.
    let target = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if target == libc::MAP_FAILED {
        let e = err("mmap");
        destroy(ctx);
        return Err(e);
    }
    // SAFETY: moving the ring mapping (ours) over our own fresh mapping.
    let moved = unsafe {
        libc::mremap(
            ctx as *mut libc::c_void,
            len as usize,
            len as usize,
            libc::MREMAP_FIXED | libc::MREMAP_MAYMOVE,
            target,
        )
    };
    if moved == libc::MAP_FAILED {
        let e = err("mremap of the AIO ring");
        destroy(ctx);
        // SAFETY: unmapping our own unused target mapping.
        unsafe { libc::munmap(target, len as usize) };
        return Err(e);
    }
    let nctx = moved as u64;
    // SAFETY: io_getevents with min_nr 0 and a null event array only looks the ring up.
    let r = unsafe {
        libc::syscall(
            libc::SYS_io_getevents,
            nctx,
            0,
            1,
            std::ptr::null_mut::<u8>(),
            std::ptr::null_mut::<u8>(),
        )
    };
    let res = ok_or("io_getevents on the moved ring", r).map(drop);
    destroy(nctx);
    res
}
