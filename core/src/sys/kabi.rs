//! Kernel ABI constants and structs that the `libc` crate (0.2.191) does not carry.
//!
//! Every item here is copied by hand from the named uapi header; keep this module the single
//! place for such definitions so a later libc bump can delete them in one go.

#![allow(non_camel_case_types)]

// ---- <linux/elf.h> ----

/// Regset note type of the full x86 XSAVE area (`NT_X86_XSTATE`).
pub const NT_X86_XSTATE: libc::c_int = 0x202;

// ---- <asm/ptrace-abi.h> (x86_64) ----

/// `PTRACE_GET_THREAD_AREA`: read one GDT TLS slot (`addr` = entry number, `data` = user_desc).
pub const PTRACE_GET_THREAD_AREA: libc::c_uint = 25;
/// `PTRACE_SET_THREAD_AREA`: write one GDT TLS slot (`addr` = entry number, `data` = user_desc).
pub const PTRACE_SET_THREAD_AREA: libc::c_uint = 26;
/// `PTRACE_ARCH_PRCTL`: `arch_prctl(data, addr)` on the tracee (note the swapped arguments).
pub const PTRACE_ARCH_PRCTL: libc::c_uint = 30;

// ---- <linux/ptrace.h> ----

/// `PTRACE_SECCOMP_GET_FILTER`: fetch classic-BPF filter number `addr` of the tracee.
pub const PTRACE_SECCOMP_GET_FILTER: libc::c_uint = 0x420c;
/// `PTRACE_O_SUSPEND_SECCOMP`: seccomp filters do not apply while the tracer holds the task.
pub const PTRACE_O_SUSPEND_SECCOMP: libc::c_int = 1 << 21;

// ---- <asm/prctl.h> ----

pub const ARCH_SET_GS: libc::c_int = 0x1001;
pub const ARCH_SET_FS: libc::c_int = 0x1002;
pub const ARCH_GET_FS: libc::c_int = 0x1003;
pub const ARCH_GET_GS: libc::c_int = 0x1004;
pub const ARCH_MAP_VDSO_X32: libc::c_int = 0x2001;
pub const ARCH_MAP_VDSO_32: libc::c_int = 0x2002;
pub const ARCH_MAP_VDSO_64: libc::c_int = 0x2003;

// ---- <linux/prctl.h> ----

/// `PR_GET_TID_ADDRESS`: store the `clear_child_tid` pointer at `*(u64 *)arg2`.
pub const PR_GET_TID_ADDRESS: libc::c_int = 40;

// ---- <asm/ldt.h> ----

/// `struct user_desc` as seen by a 64-bit tracer: 4 u32 words, the last one a bitfield.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct user_desc {
    pub entry_number: u32,
    pub base_addr: u32,
    pub limit: u32,
    /// seg_32bit:1 contents:2 read_exec_only:1 limit_in_pages:1 seg_not_present:1 useable:1 lm:1
    pub flags: u32,
}

impl user_desc {
    pub fn seg_32bit(&self) -> bool {
        self.flags & 1 != 0
    }
    /// The two-bit `contents` field.
    pub fn contents(&self) -> u32 {
        (self.flags >> 1) & 3
    }
    pub fn read_exec_only(&self) -> bool {
        self.flags & (1 << 3) != 0
    }
    pub fn limit_in_pages(&self) -> bool {
        self.flags & (1 << 4) != 0
    }
    pub fn seg_not_present(&self) -> bool {
        self.flags & (1 << 5) != 0
    }
    pub fn usable(&self) -> bool {
        self.flags & (1 << 6) != 0
    }
}

/// First GDT slot used for TLS on x86 (`GDT_ENTRY_TLS_MIN`); there are three.
pub const GDT_ENTRY_TLS_MIN: u32 = 12;
pub const GDT_ENTRY_TLS_ENTRIES: u32 = 3;

// ---- <linux/userfaultfd.h> ----

/// `struct uffdio_api`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct uffdio_api {
    pub api: u64,
    pub features: u64,
    pub ioctls: u64,
}

pub const UFFD_API: u64 = 0xAA;
/// `UFFDIO_API` = _IOWR(0xAA, 0x3F, struct uffdio_api).
pub const UFFDIO_API: libc::c_ulong = 0xC018_AA3F;
/// `UFFD_USER_MODE_ONLY` flag of userfaultfd(2).
pub const UFFD_USER_MODE_ONLY: libc::c_int = 1;

pub const UFFD_FEATURE_PAGEFAULT_FLAG_WP: u64 = 1 << 0;
pub const UFFD_FEATURE_EVENT_FORK: u64 = 1 << 1;
pub const UFFD_FEATURE_EVENT_REMAP: u64 = 1 << 2;
pub const UFFD_FEATURE_EVENT_REMOVE: u64 = 1 << 3;
pub const UFFD_FEATURE_MISSING_HUGETLBFS: u64 = 1 << 4;
pub const UFFD_FEATURE_MISSING_SHMEM: u64 = 1 << 5;
pub const UFFD_FEATURE_EVENT_UNMAP: u64 = 1 << 6;
pub const UFFD_FEATURE_SIGBUS: u64 = 1 << 7;
pub const UFFD_FEATURE_THREAD_ID: u64 = 1 << 8;
pub const UFFD_FEATURE_MINOR_HUGETLBFS: u64 = 1 << 9;
pub const UFFD_FEATURE_MINOR_SHMEM: u64 = 1 << 10;
pub const UFFD_FEATURE_EXACT_ADDRESS: u64 = 1 << 11;
pub const UFFD_FEATURE_WP_HUGETLBFS_SHMEM: u64 = 1 << 12;
pub const UFFD_FEATURE_WP_UNPOPULATED: u64 = 1 << 13;
pub const UFFD_FEATURE_POISON: u64 = 1 << 14;
pub const UFFD_FEATURE_WP_ASYNC: u64 = 1 << 15;
pub const UFFD_FEATURE_MOVE: u64 = 1 << 16;

// ---- <linux/fs.h>: PAGEMAP_SCAN ----

/// `struct page_region`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct page_region {
    pub start: u64,
    pub end: u64,
    pub categories: u64,
}

/// `struct pm_scan_arg`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct pm_scan_arg {
    pub size: u64,
    pub flags: u64,
    pub start: u64,
    pub end: u64,
    pub walk_end: u64,
    pub vec: u64,
    pub vec_len: u64,
    pub max_pages: u64,
    pub category_inverted: u64,
    pub category_mask: u64,
    pub category_anyof_mask: u64,
    pub return_mask: u64,
}

/// `PAGEMAP_SCAN` = _IOWR('f', 16, struct pm_scan_arg).
pub const PAGEMAP_SCAN: libc::c_ulong = 0xC060_6610;
pub const PM_SCAN_WP_MATCHING: u64 = 1 << 0;
pub const PM_SCAN_CHECK_WPASYNC: u64 = 1 << 1;

pub const PAGE_IS_WPALLOWED: u64 = 1 << 0;
pub const PAGE_IS_WRITTEN: u64 = 1 << 1;
pub const PAGE_IS_FILE: u64 = 1 << 2;
pub const PAGE_IS_PRESENT: u64 = 1 << 3;
pub const PAGE_IS_SWAPPED: u64 = 1 << 4;
pub const PAGE_IS_PFNZERO: u64 = 1 << 5;
pub const PAGE_IS_HUGE: u64 = 1 << 6;
pub const PAGE_IS_SOFT_DIRTY: u64 = 1 << 7;
pub const PAGE_IS_GUARD: u64 = 1 << 8;

// ---- <linux/bpf.h> (only what a probe needs) ----

pub const BPF_MAP_CREATE: libc::c_int = 0;
pub const BPF_PROG_LOAD: libc::c_int = 5;
pub const BPF_MAP_TYPE_ARRAY: u32 = 2;
pub const BPF_PROG_TYPE_SOCKET_FILTER: u32 = 1;

/// The `BPF_MAP_CREATE` member of `union bpf_attr` (the leading fields; the kernel zero-checks
/// the rest of the size we pass).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct bpf_map_create_attr {
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub map_flags: u32,
    pub inner_map_fd: u32,
    pub numa_node: u32,
    pub map_name: [u8; 16],
}

/// The `BPF_PROG_LOAD` member of `union bpf_attr` (leading fields only).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct bpf_prog_load_attr {
    pub prog_type: u32,
    pub insn_cnt: u32,
    pub insns: u64,
    pub license: u64,
    pub log_level: u32,
    pub log_size: u32,
    pub log_buf: u64,
    pub kern_version: u32,
    pub prog_flags: u32,
}

// ---- <linux/rseq.h> ----

/// The signature glibc registers its rseq area with on x86 (`RSEQ_SIG`).
pub const RSEQ_SIG: u32 = 0x5305_3053;
pub const RSEQ_FLAG_UNREGISTER: libc::c_int = 1;

// ---- <linux/kcmp.h> ----

pub const KCMP_FILE: libc::c_int = 0;
pub const KCMP_VM: libc::c_int = 1;
pub const KCMP_FILES: libc::c_int = 2;
pub const KCMP_FS: libc::c_int = 3;
pub const KCMP_SIGHAND: libc::c_int = 4;
pub const KCMP_IO: libc::c_int = 5;
pub const KCMP_SYSVSEM: libc::c_int = 6;
pub const KCMP_EPOLL_TFD: libc::c_int = 7;

// ---- <linux/membarrier.h> ----

pub const MEMBARRIER_CMD_GET_REGISTRATIONS: libc::c_int = 1 << 9;

// ---- <linux/mount.h> ----

/// `MOVE_MOUNT_SET_GROUP` (Linux 5.15+): copy the propagation group of one mount to another.
pub const MOVE_MOUNT_SET_GROUP: libc::c_uint = 0x100;

// ---- <linux/kcmp.h> ----

/// `struct kcmp_epoll_slot` for `KCMP_EPOLL_TFD`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct kcmp_epoll_slot {
    pub efd: u32,
    pub tfd: u32,
    pub toff: u32,
}

// ---- <asm-generic/mman-common.h>, <asm-generic/socket.h> ----

/// `MADV_GUARD_INSTALL` (Linux 6.13+).
pub const MADV_GUARD_INSTALL: libc::c_int = 102;
/// `SIOCUNIXFILE` (Linux 5.4+): an O_PATH fd of a unix socket's bound file.
pub const SIOCUNIXFILE: libc::c_ulong = 0x89E0;
/// `SO_BUF_LOCK` (Linux 5.14+).
pub const SO_BUF_LOCK: libc::c_int = 72;
/// `SO_PEEK_OFF` (Linux 3.4+; unix sockets 4.3+).
pub const SO_PEEK_OFF: libc::c_int = 42;
/// `SO_PASSPIDFD` (Linux 6.5+).
pub const SO_PASSPIDFD: libc::c_int = 76;
/// `SCM_PIDFD` (Linux 6.5+): a pidfd of a unix message's sender.
pub const SCM_PIDFD: libc::c_int = 4;
/// `SO_PASSRIGHTS` (Linux 6.16+): 0 makes a unix socket refuse `SCM_RIGHTS`.
pub const SO_PASSRIGHTS: libc::c_int = 83;

// ---- <linux/io_uring.h> (only the setup parameters, for probing) ----

/// `struct io_sqring_offsets`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct io_sqring_offsets {
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
#[derive(Debug, Clone, Copy, Default)]
pub struct io_cqring_offsets {
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

/// `struct io_uring_params`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct io_uring_params {
    pub sq_entries: u32,
    pub cq_entries: u32,
    pub flags: u32,
    pub sq_thread_cpu: u32,
    pub sq_thread_idle: u32,
    pub features: u32,
    pub wq_fd: u32,
    pub resv: [u32; 3],
    pub sq_off: io_sqring_offsets,
    pub cq_off: io_cqring_offsets,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn struct_sizes_match_uapi() {
        assert_eq!(std::mem::size_of::<user_desc>(), 16);
        assert_eq!(std::mem::size_of::<uffdio_api>(), 24);
        assert_eq!(std::mem::size_of::<page_region>(), 24);
        assert_eq!(std::mem::size_of::<pm_scan_arg>(), 96);
        assert_eq!(std::mem::size_of::<io_uring_params>(), 120);
        assert_eq!(std::mem::size_of::<kcmp_epoll_slot>(), 12);
        // _IOWR encodes the struct size in bits 16..30.
        assert_eq!((PAGEMAP_SCAN >> 16) & 0x3fff, 96);
        assert_eq!((UFFDIO_API >> 16) & 0x3fff, 24);
    }

    #[test]
    fn user_desc_bits() {
        let d = user_desc {
            entry_number: 12,
            flags: (1 << 3) | (1 << 5),
            ..Default::default()
        };
        assert!(d.read_exec_only() && d.seg_not_present());
        assert!(!d.seg_32bit() && !d.usable() && !d.limit_in_pages());
        assert_eq!(d.contents(), 0);
    }
}

// ---- <asm-generic/fcntl.h> (x86_64 glibc targets lack these in libc 0.2.191) ----

/// `F_SETSIG`: the signal sent when I/O is possible (0: SIGIO).
pub const F_SETSIG: libc::c_int = 10;
/// `F_GETSIG`.
pub const F_GETSIG: libc::c_int = 11;
/// `F_SETOWN_EX`: set the owner as a `struct f_owner_ex`.
pub const F_SETOWN_EX: libc::c_int = 15;
/// `F_GETOWN_EX`.
pub const F_GETOWN_EX: libc::c_int = 16;
/// `F_GETOWNER_UIDS`: the real and effective uid recorded when the owner was set.
pub const F_GETOWNER_UIDS: libc::c_int = 17;

/// `struct f_owner_ex`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct f_owner_ex {
    /// `F_OWNER_TID` 0, `F_OWNER_PID` 1, `F_OWNER_PGRP` 2.
    pub type_: libc::c_int,
    pub pid: libc::pid_t,
}
