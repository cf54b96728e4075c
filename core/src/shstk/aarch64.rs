//! arm64 Guarded Control Stacks: the host probe and a frozen thread's GCS state.
//!
//! Built on aarch64 only, and not compiled on this x86_64 development machine (no aarch64
//! std installed): kept to the few calls whose constants `criu_shstk::arm64` holds and
//! tests. criu-rs's core is x86_64-only elsewhere (registers, images), so this module is
//! the start of the arm64 port, not a working arm64 dump: the core writes no arm64
//! `core-*.img` and has no field for GCS state (CRIU 4.2 has none either).

use criu_shstk::arm64::{self, UserGcs};
use nix::unistd::Pid;

use super::HostSupport;

/// `HWCAP_GCS` in `AT_HWCAP`, and criu's own GCS mode.
pub fn probe() -> HostSupport {
    // SAFETY: getauxval reads this process's auxiliary vector; no pointer is involved.
    let hwcap = unsafe { libc::getauxval(libc::AT_HWCAP) } as u64;
    let cpu = hwcap & arm64::HWCAP_GCS != 0;
    let mut mode: u64 = 0;
    // SAFETY: PR_GET_SHADOW_STACK_STATUS stores one unsigned long at arg2.
    let r = unsafe {
        libc::prctl(
            arm64::PR_GET_SHADOW_STACK_STATUS,
            &mut mode as *mut u64,
            0usize,
            0usize,
            0usize,
        )
    };
    HostSupport {
        kind: "arm64 GCS",
        needs: "an arm64 CPU with GCS (FEAT_GCS) and Linux 6.13+ built with CONFIG_ARM64_GCS",
        cpu,
        kernel: if cpu {
            Ok(0)
        } else {
            Err("no HWCAP_GCS".into())
        },
        criu_enabled: r == 0 && mode & arm64::PR_SHADOW_STACK_ENABLE != 0,
    }
}

/// The `NT_ARM_GCS` regset of stopped thread `tid`.
pub fn get_gcs(tid: Pid) -> nix::Result<UserGcs> {
    let mut buf = [0u8; UserGcs::SIZE];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: iov describes `buf`; the kernel writes at most iov_len bytes into it.
    let r = unsafe {
        libc::ptrace(
            libc::PTRACE_GETREGSET,
            tid.as_raw(),
            arm64::NT_ARM_GCS as usize as *mut libc::c_void,
            &mut iov as *mut libc::iovec,
        )
    };
    if r < 0 {
        return Err(nix::errno::Errno::last());
    }
    UserGcs::from_bytes(&buf[..iov.iov_len]).ok_or(nix::errno::Errno::EIO)
}

/// Writes the `NT_ARM_GCS` regset of stopped thread `tid` (mode and GCSPR_EL0).
pub fn set_gcs(tid: Pid, gcs: &UserGcs) -> nix::Result<()> {
    let mut buf = gcs.to_bytes();
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: iov describes `buf`; the kernel only reads it for SETREGSET.
    let r = unsafe {
        libc::ptrace(
            libc::PTRACE_SETREGSET,
            tid.as_raw(),
            arm64::NT_ARM_GCS as usize as *mut libc::c_void,
            &mut iov as *mut libc::iovec,
        )
    };
    if r < 0 {
        return Err(nix::errno::Errno::last());
    }
    Ok(())
}
