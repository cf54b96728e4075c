//! The few parts of `<linux/io_uring.h>` the plugin needs (libc and nix have none of it),
//! and the system calls on rings made in criu itself. Field names follow the kernel's.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::errno::Errno;

/// `IORING_SETUP_SQPOLL`: a kernel thread polls the SQ ring.
pub const SETUP_SQPOLL: u32 = 1 << 1;
/// `IORING_SETUP_SQ_AFF`: `sq_thread_cpu` is valid.
pub const SETUP_SQ_AFF: u32 = 1 << 2;
/// `IORING_SETUP_CQSIZE`: `cq_entries` chosen by the program.
pub const SETUP_CQSIZE: u32 = 1 << 3;
/// `IORING_SETUP_SINGLE_ISSUER`: only the creating task submits.
pub const SETUP_SINGLE_ISSUER: u32 = 1 << 12;
/// `IORING_SETUP_DEFER_TASKRUN`: completions run when the submitter asks for them.
pub const SETUP_DEFER_TASKRUN: u32 = 1 << 13;
/// The setup flags the plugin can find out from outside the ring and restores.
pub const SETUP_KNOWN: u32 =
    SETUP_SQPOLL | SETUP_SQ_AFF | SETUP_CQSIZE | SETUP_SINGLE_ISSUER | SETUP_DEFER_TASKRUN;

/// `IORING_SETUP_NO_MMAP`: the rings live in memory the program gives (`user_addr`s).
pub const SETUP_NO_MMAP: u32 = 1 << 14;

/// `IORING_FEAT_SINGLE_MMAP`: SQ and CQ rings share one mapping.
pub const FEAT_SINGLE_MMAP: u32 = 1;

/// `IORING_OFF_SQ_RING`, the mmap offset of the SQ ring (and the CQ ring with SINGLE_MMAP).
pub const OFF_SQ_RING: u64 = 0;
/// `IORING_OFF_CQ_RING`.
pub const OFF_CQ_RING: u64 = 0x800_0000;
/// `IORING_OFF_SQES`.
pub const OFF_SQES: u64 = 0x1000_0000;

/// `IORING_ENTER_GETEVENTS`.
pub const ENTER_GETEVENTS: u32 = 1;
/// `IORING_ENTER_SQ_WAKEUP`.
pub const ENTER_SQ_WAKEUP: u32 = 2;
/// `IOSQE_CQE_SKIP_SUCCESS`: no CQE when the request succeeds.
pub const SQE_CQE_SKIP_SUCCESS: u8 = 1 << 6;
/// `IORING_REGISTER_PROBE`, a read-only registration opcode (used to find SINGLE_ISSUER).
pub const REGISTER_PROBE: u32 = 8;

/// Size of one SQE (without `IORING_SETUP_SQE128`).
pub const SQE_SIZE: u64 = 64;
/// Size of one CQE (without `IORING_SETUP_CQE32`).
pub const CQE_SIZE: u64 = 16;

/// `struct io_sqring_offsets`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SqOffsets {
    pub head: u32,
    pub tail: u32,
    pub ring_mask: u32,
    pub ring_entries: u32,
    pub flags: u32,
    pub dropped: u32,
    pub array: u32,
    pub resv1: u32,
    pub user_addr: u64,
}

/// `struct io_cqring_offsets`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CqOffsets {
    pub head: u32,
    pub tail: u32,
    pub ring_mask: u32,
    pub ring_entries: u32,
    pub overflow: u32,
    pub cqes: u32,
    pub flags: u32,
    pub resv1: u32,
    pub user_addr: u64,
}

/// `struct io_uring_params` (120 bytes).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    pub sq_entries: u32,
    pub cq_entries: u32,
    pub flags: u32,
    pub sq_thread_cpu: u32,
    pub sq_thread_idle: u32,
    pub features: u32,
    pub wq_fd: u32,
    pub resv: [u32; 3],
    pub sq_off: SqOffsets,
    pub cq_off: CqOffsets,
}

impl Params {
    /// The struct as the bytes the kernel reads (for a remote `io_uring_setup`).
    pub fn to_bytes(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(120);
        let mut w = |v: u32| out.extend_from_slice(&v.to_ne_bytes());
        for v in [
            self.sq_entries,
            self.cq_entries,
            self.flags,
            self.sq_thread_cpu,
            self.sq_thread_idle,
            self.features,
            self.wq_fd,
        ] {
            w(v);
        }
        self.resv.iter().for_each(|&v| w(v));
        let s = &self.sq_off;
        for v in [
            s.head,
            s.tail,
            s.ring_mask,
            s.ring_entries,
            s.flags,
            s.dropped,
            s.array,
            s.resv1,
        ] {
            w(v);
        }
        out.extend_from_slice(&s.user_addr.to_ne_bytes());
        let c = &self.cq_off;
        let mut w = |v: u32| out.extend_from_slice(&v.to_ne_bytes());
        for v in [
            c.head,
            c.tail,
            c.ring_mask,
            c.ring_entries,
            c.overflow,
            c.cqes,
            c.flags,
            c.resv1,
        ] {
            w(v);
        }
        out.extend_from_slice(&c.user_addr.to_ne_bytes());
        out
    }

    /// The struct from the bytes the kernel filled in.
    pub fn from_bytes(b: &[u8; 120]) -> Params {
        let w = |i: usize| u32::from_ne_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]);
        let sq = |i: usize| w(10 + i);
        let cq = |i: usize| w(20 + i);
        Params {
            sq_entries: w(0),
            cq_entries: w(1),
            flags: w(2),
            sq_thread_cpu: w(3),
            sq_thread_idle: w(4),
            features: w(5),
            wq_fd: w(6),
            resv: [0; 3],
            sq_off: SqOffsets {
                head: sq(0),
                tail: sq(1),
                ring_mask: sq(2),
                ring_entries: sq(3),
                flags: sq(4),
                dropped: sq(5),
                array: sq(6),
                resv1: sq(7),
                user_addr: u64::from(sq(8)) | u64::from(sq(9)) << 32,
            },
            cq_off: CqOffsets {
                head: cq(0),
                tail: cq(1),
                ring_mask: cq(2),
                ring_entries: cq(3),
                overflow: cq(4),
                cqes: cq(5),
                flags: cq(6),
                resv1: cq(7),
                user_addr: u64::from(cq(8)) | u64::from(cq(9)) << 32,
            },
        }
    }

    /// Bytes of the SQ ring mapping (`IORING_OFF_SQ_RING`), as liburing computes it; with
    /// `IORING_FEAT_SINGLE_MMAP` the one mapping of both rings.
    pub fn sq_ring_len(&self) -> u64 {
        let sq = u64::from(self.sq_off.array) + u64::from(self.sq_entries) * 4;
        if self.features & FEAT_SINGLE_MMAP != 0 {
            sq.max(self.cq_ring_len())
        } else {
            sq
        }
    }

    /// Bytes of the CQ ring.
    pub fn cq_ring_len(&self) -> u64 {
        u64::from(self.cq_off.cqes) + u64::from(self.cq_entries) * CQE_SIZE
    }

    /// Bytes of the SQE array (`IORING_OFF_SQES`).
    pub fn sqes_len(&self) -> u64 {
        u64::from(self.sq_entries) * SQE_SIZE
    }
}

fn fd_or(r: libc::c_long) -> Result<OwnedFd, Errno> {
    if r < 0 {
        return Err(Errno::last());
    }
    // SAFETY: on success the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(r as i32) })
}

/// `io_uring_setup(entries, p)` in criu: a ring of criu's own (a layout probe).
pub fn setup(entries: u32, p: &mut Params) -> Result<OwnedFd, Errno> {
    // SAFETY: p is a valid io_uring_params the kernel reads and fills in.
    let r = unsafe { libc::syscall(libc::SYS_io_uring_setup, entries, p as *mut Params) };
    fd_or(r)
}

/// `io_uring_enter(fd, to_submit, min_complete, flags, NULL, 0)` from criu.
pub fn enter(
    fd: BorrowedFd<'_>,
    to_submit: u32,
    min_complete: u32,
    flags: u32,
) -> Result<u32, Errno> {
    // SAFETY: no argument is a pointer (the signal mask is NULL).
    let r = unsafe {
        libc::syscall(
            libc::SYS_io_uring_enter,
            fd.as_raw_fd(),
            to_submit,
            min_complete,
            flags,
            std::ptr::null::<u8>(),
            0usize,
        )
    };
    Errno::result(r).map(|n| n as u32)
}

/// `io_uring_register(fd, IORING_REGISTER_PROBE, buf, 0)`: fills nothing (zero ops asked)
/// and changes nothing; answers `EEXIST` to any task but a SINGLE_ISSUER ring's submitter.
pub fn register_probe(fd: BorrowedFd<'_>) -> Result<(), Errno> {
    let mut buf = [0u8; 16];
    // SAFETY: buf is a writable io_uring_probe header of 16 bytes and 0 ops are asked for.
    let r = unsafe {
        libc::syscall(
            libc::SYS_io_uring_register,
            fd.as_raw_fd(),
            REGISTER_PROBE,
            buf.as_mut_ptr(),
            0u32,
        )
    };
    Errno::result(r).map(|_| ())
}

/// `io_uring_register(fd, op, NULL, 1)`: for opcodes that read their argument after
/// checking the ring's state, a probe of that state that changes nothing.
pub fn register_null(fd: BorrowedFd<'_>, op: u32) -> Result<(), Errno> {
    // SAFETY: the argument pointer is NULL: the kernel reads nothing through it.
    let r = unsafe {
        libc::syscall(
            libc::SYS_io_uring_register,
            fd.as_raw_fd(),
            op,
            std::ptr::null::<u8>(),
            1u32,
        )
    };
    Errno::result(r).map(|_| ())
}

/// A shared mapping of a ring region in criu (`mmap` of the ring fd at an `IORING_OFF_*`
/// offset), unmapped on drop. The kernel writes it concurrently: words are accessed
/// atomically, bulk copies see a snapshot taken while the ring is quiet.
#[derive(Debug)]
pub struct Mapping {
    ptr: std::ptr::NonNull<libc::c_void>,
    len: usize,
}

impl Mapping {
    /// Maps `len` bytes of `fd` at `offset`, writable when `write`.
    pub fn new(fd: BorrowedFd<'_>, offset: u64, len: u64, write: bool) -> Result<Mapping, Errno> {
        use nix::sys::mman::{MapFlags, ProtFlags};
        let n = std::num::NonZeroUsize::new(len as usize).ok_or(Errno::EINVAL)?;
        let prot = if write {
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE
        } else {
            ProtFlags::PROT_READ
        };
        let off = libc::off_t::try_from(offset).map_err(|_| Errno::EINVAL)?;
        // SAFETY: a new shared mapping at an address the kernel picks: it aliases no Rust
        // object; it is only reached through this Mapping, which unmaps it once.
        let ptr = unsafe { nix::sys::mman::mmap(None, n, prot, MapFlags::MAP_SHARED, fd, off)? };
        Ok(Mapping { ptr, len: n.get() })
    }

    /// A copy of the whole region.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut out = vec![0u8; self.len];
        // SAFETY: the mapping is len readable bytes and out is as long; the kernel may
        // change words meanwhile, which only changes the copied values.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ptr.as_ptr().cast::<u8>(),
                out.as_mut_ptr(),
                self.len,
            )
        };
        out
    }

    fn word(&self, off: u32) -> Result<&std::sync::atomic::AtomicU32, Errno> {
        let off = off as usize;
        if !off.is_multiple_of(4) || off + 4 > self.len {
            return Err(Errno::ERANGE);
        }
        // SAFETY: an aligned in-bounds u32 of a mapping that lives as long as &self; the
        // kernel accesses ring words atomically too.
        Ok(unsafe {
            &*self
                .ptr
                .as_ptr()
                .cast::<u8>()
                .add(off)
                .cast::<std::sync::atomic::AtomicU32>()
        })
    }

    /// The u32 at `off` (acquire, as liburing reads the kernel's words).
    pub fn load(&self, off: u32) -> Result<u32, Errno> {
        Ok(self.word(off)?.load(std::sync::atomic::Ordering::Acquire))
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the region was mapped by Mapping::new with this length, unmapped once here.
        let _ = unsafe { nix::sys::mman::munmap(self.ptr, self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_the_kernels_size_and_round_trip() {
        assert_eq!(std::mem::size_of::<Params>(), 120);
        let p = Params {
            sq_entries: 8,
            cq_entries: 32,
            flags: SETUP_CQSIZE,
            sq_thread_idle: 50,
            sq_off: SqOffsets {
                array: 320,
                user_addr: 0x7f00_1234_5000,
                ..Default::default()
            },
            cq_off: CqOffsets {
                cqes: 64,
                user_addr: 0x7f00_1234_6000,
                ..Default::default()
            },
            ..Default::default()
        };
        let b: [u8; 120] = p.to_bytes().try_into().unwrap();
        assert_eq!(Params::from_bytes(&b), p);
    }
}
