//! `prctl(PR_SET_MM, PR_SET_MM_MAP)` and `arch_prctl(ARCH_MAP_VDSO_64)`.
//!
//! Restore runs both inside the restored task (as remote syscalls), so the main products here
//! are the exact kernel layouts ([`PrctlMmMap::to_bytes`]) and the constants; the local
//! wrappers exist for probes and tests and act on the calling process.

use nix::errno::Errno;

/// `PR_SET_MM` (include/uapi/linux/prctl.h).
pub const PR_SET_MM: u64 = 35;
/// `PR_SET_MM_MAP`: replace all mm fields at once from a [`PrctlMmMap`].
pub const PR_SET_MM_MAP: u64 = 14;
/// `PR_SET_MM_MAP_SIZE`: the kernel stores `sizeof(struct prctl_mm_map)` at arg3.
pub const PR_SET_MM_MAP_SIZE: u64 = 15;
/// `ARCH_MAP_VDSO_64` (arch/x86/include/uapi/asm/prctl.h).
pub const ARCH_MAP_VDSO_64: u64 = 0x2003;

/// The kernel's `struct prctl_mm_map` (104 bytes on x86_64).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PrctlMmMap {
    pub start_code: u64,
    pub end_code: u64,
    pub start_data: u64,
    pub end_data: u64,
    pub start_brk: u64,
    pub brk: u64,
    pub start_stack: u64,
    pub arg_start: u64,
    pub arg_end: u64,
    pub env_start: u64,
    pub env_end: u64,
    /// User address of the auxv words.
    pub auxv: u64,
    /// Byte size of the auxv array.
    pub auxv_size: u32,
    /// An fd of the new `/proc/PID/exe` file, open in the task that makes the call.
    pub exe_fd: u32,
}

/// `sizeof(struct prctl_mm_map)`.
pub const PRCTL_MM_MAP_SIZE: usize = std::mem::size_of::<PrctlMmMap>();

impl PrctlMmMap {
    /// The struct as the kernel reads it (little-endian, no padding: the size is 104).
    pub fn to_bytes(&self) -> [u8; PRCTL_MM_MAP_SIZE] {
        let mut out = [0u8; PRCTL_MM_MAP_SIZE];
        let words = [
            self.start_code,
            self.end_code,
            self.start_data,
            self.end_data,
            self.start_brk,
            self.brk,
            self.start_stack,
            self.arg_start,
            self.arg_end,
            self.env_start,
            self.env_end,
            self.auxv,
        ];
        for (chunk, w) in out.chunks_exact_mut(8).zip(words) {
            chunk.copy_from_slice(&w.to_le_bytes());
        }
        out[96..100].copy_from_slice(&self.auxv_size.to_le_bytes());
        out[100..104].copy_from_slice(&self.exe_fd.to_le_bytes());
        out
    }
}

/// Asks the kernel for `sizeof(struct prctl_mm_map)` (`PR_SET_MM_MAP_SIZE`); restore refuses
/// to send a struct of another size. Errors: EINVAL (kernel without CONFIG_CHECKPOINT_RESTORE).
pub fn mm_map_size() -> Result<usize, Errno> {
    let mut size: u32 = 0;
    // SAFETY: for PR_SET_MM_MAP_SIZE the kernel stores one unsigned int at arg3.
    let r = unsafe {
        libc::prctl(
            PR_SET_MM as libc::c_int,
            PR_SET_MM_MAP_SIZE as libc::c_ulong,
            &mut size as *mut u32,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(size as usize)
    }
}

/// Maps the vDSO of the calling process at `addr` (`arch_prctl(ARCH_MAP_VDSO_64, addr)`):
/// `[vvar]` lands at `addr` and `[vdso]` after the vvar pages. Fails with EEXIST when the
/// process already has a vDSO. Returns the kernel's (positive) result.
pub fn map_vdso_64(addr: u64) -> Result<u64, Errno> {
    // SAFETY: plain syscall on integers; mapping a vDSO does not touch existing memory.
    let r = unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_MAP_VDSO_64, addr) };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(r as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_kernel() {
        assert_eq!(PRCTL_MM_MAP_SIZE, 104);
        match mm_map_size() {
            Ok(n) => assert_eq!(n, PRCTL_MM_MAP_SIZE),
            Err(e) => eprintln!("skip: PR_SET_MM_MAP_SIZE unavailable: {e}"),
        }
    }

    #[test]
    fn bytes_are_little_endian_in_field_order() {
        let m = PrctlMmMap {
            start_code: 1,
            auxv: 0x1122,
            auxv_size: 16,
            exe_fd: 7,
            ..PrctlMmMap::default()
        };
        let b = m.to_bytes();
        assert_eq!(b[0], 1);
        assert_eq!(&b[88..90], &[0x22, 0x11]);
        assert_eq!(&b[96..100], &16u32.to_le_bytes());
        assert_eq!(&b[100..104], &7u32.to_le_bytes());
    }

    #[test]
    fn map_vdso_when_one_exists_is_refused() {
        // Our own test process has a vDSO: the kernel must refuse a second one.
        assert_eq!(map_vdso_64(0x1000_0000), Err(Errno::EEXIST));
    }
}
