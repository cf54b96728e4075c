//! x86 CET shadow-stack state of a stopped tracee, through ptrace (as CRIU's compel reads
//! it): the enabled features with `PTRACE_ARCH_PRCTL(ARCH_SHSTK_STATUS)` (the kernel stores
//! them at an address of ours), SSP with the `NT_X86_SHSTK` regset (one u64), and
//! `ARCH_SHSTK_LOCK`/`UNLOCK`, which the kernel accepts through ptrace. Enabling is not
//! here: the kernel only lets a thread enable its own shadow stack (a remote `arch_prctl`).
//!
//! Errors without support: EINVAL for the arch_prctl codes; ENODEV for the regset when the
//! CPU lacks shadow stacks, EINVAL when the kernel was built without
//! `CONFIG_X86_USER_SHADOW_STACK` (no such regset; this development machine).

use std::ffi::c_void;

use criu_shstk::x86;

use super::regs::{getregset_raw, setregset_raw};
use super::{Pid, PtraceError, Result, raw};

/// `ARCH_SHSTK_*` features enabled in `tid`.
pub fn shstk_status(tid: Pid) -> Result<u64> {
    super::arch_prctl_get(tid, x86::ARCH_SHSTK_STATUS as libc::c_int)
}

/// `tid`'s SSP (`NT_X86_SHSTK`); ENODEV when its shadow stack is off or the CPU has none.
pub fn get_ssp(tid: Pid) -> Result<u64> {
    let mut ssp: u64 = 0;
    // SAFETY: ssp is a writable u64 and the length passed is its size.
    let got = unsafe {
        getregset_raw(
            tid,
            x86::NT_X86_SHSTK as libc::c_int,
            "PTRACE_GETREGSET(NT_X86_SHSTK)",
            (&mut ssp as *mut u64).cast(),
            8,
        )
    }?;
    if got != 8 {
        return Err(PtraceError::ShortRegset {
            request: "PTRACE_GETREGSET(NT_X86_SHSTK)",
            tid: tid.as_raw(),
            got,
            expected: 8,
        });
    }
    Ok(ssp)
}

/// Sets `tid`'s SSP. The kernel wants exactly 8 bytes, an 8-aligned user address, and the
/// shadow stack enabled (ENODEV otherwise).
pub fn set_ssp(tid: Pid, ssp: u64) -> Result<()> {
    // SAFETY: ssp is a readable u64 and the length passed is its size.
    unsafe {
        setregset_raw(
            tid,
            x86::NT_X86_SHSTK as libc::c_int,
            "PTRACE_SETREGSET(NT_X86_SHSTK)",
            (&ssp as *const u64).cast(),
            8,
        )
    }
}

/// `arch_prctl(code, features)` for `tid` through `PTRACE_ARCH_PRCTL`, for the codes whose
/// second argument is a value (`ARCH_SHSTK_LOCK`, `ARCH_SHSTK_UNLOCK`).
pub fn shstk_control(tid: Pid, code: u64, features: u64) -> Result<()> {
    // SAFETY: for LOCK/UNLOCK the kernel reads `addr` as a number and touches no memory.
    unsafe {
        raw(
            x86::PTRACE_ARCH_PRCTL,
            "PTRACE_ARCH_PRCTL(ARCH_SHSTK_LOCK/UNLOCK)",
            tid,
            features as usize as *mut c_void,
            code as usize as *mut c_void,
        )
    }
    .map(drop)
}
