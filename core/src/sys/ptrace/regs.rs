//! General register set, segment bases and TLS descriptors.

use std::ffi::c_void;

use super::{Pid, PtraceError, Regs, Result, raw};
use crate::sys::kabi;

/// Reads one register set into `buf`; returns the byte count the kernel filled in.
///
/// # Safety
/// `buf` must point to `len` writable bytes.
pub(crate) unsafe fn getregset_raw(
    tid: Pid,
    nt: libc::c_int,
    name: &'static str,
    buf: *mut c_void,
    len: usize,
) -> Result<usize> {
    let mut iov = libc::iovec {
        iov_base: buf,
        iov_len: len,
    };
    // SAFETY: iov describes the caller's buffer; the kernel writes at most iov_len bytes.
    unsafe {
        raw(
            libc::PTRACE_GETREGSET,
            name,
            tid,
            nt as usize as *mut c_void,
            (&mut iov as *mut libc::iovec).cast(),
        )
    }?;
    Ok(iov.iov_len)
}

/// Writes one register set from `buf` (`len` bytes).
///
/// # Safety
/// `buf` must point to `len` readable bytes.
pub(crate) unsafe fn setregset_raw(
    tid: Pid,
    nt: libc::c_int,
    name: &'static str,
    buf: *const c_void,
    len: usize,
) -> Result<()> {
    let mut iov = libc::iovec {
        iov_base: buf as *mut c_void,
        iov_len: len,
    };
    // SAFETY: the kernel only reads iov_len bytes from the caller's buffer for SETREGSET.
    unsafe {
        raw(
            libc::PTRACE_SETREGSET,
            name,
            tid,
            nt as usize as *mut c_void,
            (&mut iov as *mut libc::iovec).cast(),
        )
    }
    .map(drop)
}

/// General registers via `PTRACE_GETREGSET NT_PRSTATUS` (includes fs_base/gs_base).
pub fn get_regs(tid: Pid) -> Result<Regs> {
    // SAFETY: user_regs_struct is plain integers; all-zero is valid.
    let mut regs: Regs = unsafe { std::mem::zeroed() };
    let want = std::mem::size_of::<Regs>();
    // SAFETY: regs is a writable buffer of `want` bytes.
    let got = unsafe {
        getregset_raw(
            tid,
            libc::NT_PRSTATUS,
            "PTRACE_GETREGSET(NT_PRSTATUS)",
            (&mut regs as *mut Regs).cast(),
            want,
        )
    }?;
    if got != want {
        // A 32-bit (compat) task has a smaller set; we do not support those.
        return Err(PtraceError::ShortRegset {
            request: "PTRACE_GETREGSET(NT_PRSTATUS)",
            tid: tid.as_raw(),
            got,
            expected: want,
        });
    }
    Ok(regs)
}

/// Sets general registers via `PTRACE_SETREGSET NT_PRSTATUS`.
pub fn set_regs(tid: Pid, regs: &Regs) -> Result<()> {
    // SAFETY: regs is a readable buffer of its own size.
    unsafe {
        setregset_raw(
            tid,
            libc::NT_PRSTATUS,
            "PTRACE_SETREGSET(NT_PRSTATUS)",
            (regs as *const Regs).cast(),
            std::mem::size_of::<Regs>(),
        )
    }
}

/// `arch_prctl(code, &value)` run by the kernel on behalf of the tracee via
/// `PTRACE_ARCH_PRCTL`; `code` is one of `kabi::ARCH_GET_FS` / `ARCH_GET_GS`.
pub fn arch_prctl_get(tid: Pid, code: libc::c_int) -> Result<u64> {
    let mut value: u64 = 0;
    // SAFETY: for the GET codes the kernel stores one u64 at addr.
    unsafe {
        raw(
            kabi::PTRACE_ARCH_PRCTL,
            "PTRACE_ARCH_PRCTL",
            tid,
            (&mut value as *mut u64).cast(),
            code as usize as *mut c_void,
        )
    }?;
    Ok(value)
}

/// One GDT TLS slot (`entry` in 12..=14) via `PTRACE_GET_THREAD_AREA`.
pub fn get_thread_area(tid: Pid, entry: u32) -> Result<kabi::user_desc> {
    let mut desc = kabi::user_desc::default();
    // SAFETY: the kernel writes one user_desc at data.
    unsafe {
        raw(
            kabi::PTRACE_GET_THREAD_AREA,
            "PTRACE_GET_THREAD_AREA",
            tid,
            entry as usize as *mut c_void,
            (&mut desc as *mut kabi::user_desc).cast(),
        )
    }?;
    Ok(desc)
}

/// The three TLS GDT slots, as CRIU stores them in `thread_info.tls`.
pub fn get_tls_entries(tid: Pid) -> Result<Vec<kabi::user_desc>> {
    (0..kabi::GDT_ENTRY_TLS_ENTRIES)
        .map(|i| get_thread_area(tid, kabi::GDT_ENTRY_TLS_MIN + i))
        .collect()
}

/// Writes GDT TLS slot `desc.entry_number` (12..=14) via `PTRACE_SET_THREAD_AREA`.
/// Errors: EINVAL for a slot outside the TLS range or a malformed descriptor.
pub fn set_thread_area(tid: Pid, desc: &kabi::user_desc) -> Result<()> {
    let mut d = *desc;
    // SAFETY: the kernel reads one user_desc at data.
    unsafe {
        raw(
            kabi::PTRACE_SET_THREAD_AREA,
            "PTRACE_SET_THREAD_AREA",
            tid,
            desc.entry_number as usize as *mut c_void,
            (&mut d as *mut kabi::user_desc).cast(),
        )
    }
    .map(drop)
}
