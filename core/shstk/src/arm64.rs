//! arm64 Guarded Control Stacks (GCS): uapi constants, the `NT_ARM_GCS` regset and cap
//! tokens. Plain data, compiled on every architecture so that it is tested here; the code
//! that issues the syscalls is criu-core's `shstk::aarch64` (built on aarch64 only).
//!
//! Constants, checked against `include/uapi/linux/prctl.h` (`PR_*_SHADOW_STACK_*`),
//! `include/uapi/linux/elf.h` (`NT_ARM_GCS`), `arch/arm64/include/uapi/asm/ptrace.h`
//! (`struct user_gcs`), `include/uapi/asm-generic/mman-common.h`
//! (`SHADOW_STACK_SET_*`), `arch/arm64/include/uapi/asm/hwcap.h` (`HWCAP_GCS`); cap tokens
//! from `arch/arm64/include/asm/gcs.h` (`GCS_CAP`) and `arch/arm64/mm/gcs.c`
//! (`map_shadow_stack`).

/// ELF note type of the GCS regset: a [`UserGcs`].
pub const NT_ARM_GCS: u32 = 0x410;
/// `prctl`: store the calling thread's enabled `PR_SHADOW_STACK_*` bits at `arg2`.
pub const PR_GET_SHADOW_STACK_STATUS: i32 = 74;
/// `prctl`: set the calling thread's mode (`PR_SHADOW_STACK_ENABLE` allocates a GCS).
pub const PR_SET_SHADOW_STACK_STATUS: i32 = 75;
/// `prctl`: lock the given mode bits.
pub const PR_LOCK_SHADOW_STACK_STATUS: i32 = 76;
/// Mode bit: the GCS is on.
pub const PR_SHADOW_STACK_ENABLE: u64 = 1 << 0;
/// Mode bit: `GCSSTR` stores are allowed.
pub const PR_SHADOW_STACK_WRITE: u64 = 1 << 1;
/// Mode bit: `GCSPUSHM` pushes are allowed.
pub const PR_SHADOW_STACK_PUSH: u64 = 1 << 2;
/// Every mode bit.
pub const PR_SHADOW_STACK_KNOWN: u64 =
    PR_SHADOW_STACK_ENABLE | PR_SHADOW_STACK_WRITE | PR_SHADOW_STACK_PUSH;
/// `map_shadow_stack` on arm64 (the generic syscall table's number, as on x86_64).
pub const SYS_MAP_SHADOW_STACK: u64 = 453;
/// `map_shadow_stack` flag: a cap token at the top.
pub const SHADOW_STACK_SET_TOKEN: u64 = 1 << 0;
/// `map_shadow_stack` flag (arm64): a zero end marker above the cap token.
pub const SHADOW_STACK_SET_MARKER: u64 = 1 << 1;
/// `AT_HWCAP` bit: the CPU and kernel support GCS.
pub const HWCAP_GCS: u64 = 1 << 32;
/// Address part of a cap token (`GENMASK(63, 12)`).
pub const GCS_CAP_ADDR_MASK: u64 = 0xFFFF_FFFF_FFFF_F000;
/// Token part of a valid cap token.
pub const GCS_CAP_VALID_TOKEN: u64 = 0x1;

/// `GCS_CAP(addr)`: the cap token for a GCS entry at `addr`. The kernel header masks with
/// `GENMASK(63, 12)` (the page of `addr`), not with `~7`.
pub fn gcs_cap(addr: u64) -> u64 {
    (addr & GCS_CAP_ADDR_MASK) | GCS_CAP_VALID_TOKEN
}

/// Whether `value` found at `at` is the valid cap token for that place.
pub fn is_gcs_cap(at: u64, value: u64) -> bool {
    value & !GCS_CAP_ADDR_MASK == GCS_CAP_VALID_TOKEN
        && value & GCS_CAP_ADDR_MASK == at & GCS_CAP_ADDR_MASK
}

/// The cap token `map_shadow_stack(addr, size, SHADOW_STACK_SET_TOKEN)` writes: in the last
/// word (below the end marker with `SHADOW_STACK_SET_MARKER`).
pub fn map_token(addr: u64, size: u64, marker: bool) -> Option<crate::Token> {
    let words = if marker { 2 } else { 1 };
    let at = addr.checked_add(size)?.checked_sub(8 * words)?;
    (at >= addr).then(|| crate::Token {
        at,
        value: gcs_cap(at),
    })
}

/// `struct user_gcs`, the `NT_ARM_GCS` regset (three little-endian u64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UserGcs {
    /// `PR_SHADOW_STACK_*` bits in effect.
    pub features_enabled: u64,
    /// `PR_SHADOW_STACK_*` bits locked.
    pub features_locked: u64,
    /// `GCSPR_EL0`, the GCS pointer.
    pub gcspr_el0: u64,
}

impl UserGcs {
    /// Its size in the regset.
    pub const SIZE: usize = 24;

    /// The regset bytes.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        b[..8].copy_from_slice(&self.features_enabled.to_le_bytes());
        b[8..16].copy_from_slice(&self.features_locked.to_le_bytes());
        b[16..].copy_from_slice(&self.gcspr_el0.to_le_bytes());
        b
    }

    /// Parses the regset bytes; `None` unless exactly [`Self::SIZE`] of them.
    pub fn from_bytes(b: &[u8]) -> Option<UserGcs> {
        let b: &[u8; Self::SIZE] = b.try_into().ok()?;
        let word = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
        Some(UserGcs {
            features_enabled: word(0),
            features_locked: word(8),
            gcspr_el0: word(16),
        })
    }

    /// Whether the GCS is on.
    pub fn enabled(&self) -> bool {
        self.features_enabled & PR_SHADOW_STACK_ENABLE != 0
    }

    /// Known bits only, a pointer that is 8-aligned and non-zero when enabled.
    pub fn check(&self) -> Result<(), String> {
        if (self.features_enabled | self.features_locked) & !PR_SHADOW_STACK_KNOWN != 0 {
            return Err(format!(
                "unknown PR_SHADOW_STACK bits {:#x}/{:#x}",
                self.features_enabled, self.features_locked
            ));
        }
        if self.enabled() && (self.gcspr_el0 == 0 || !self.gcspr_el0.is_multiple_of(8)) {
            return Err(format!(
                "GCSPR_EL0 {:#x} is not a GCS pointer",
                self.gcspr_el0
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_token_keeps_the_page_and_the_valid_bit() {
        assert_eq!(gcs_cap(0xffff_8000_1ff8), 0xffff_8000_1001);
        assert!(is_gcs_cap(0xffff_8000_1ff8, 0xffff_8000_1001));
        assert!(
            !is_gcs_cap(0xffff_8000_2ff8, 0xffff_8000_1001),
            "other page"
        );
        assert!(
            !is_gcs_cap(0xffff_8000_1ff8, 0xffff_8000_1005),
            "in-progress token"
        );
    }

    #[test]
    fn map_token_with_and_without_marker() {
        let t = map_token(0x4000_0000, 0x1000, false).unwrap();
        assert_eq!(t.at, 0x4000_0ff8);
        assert_eq!(t.value, 0x4000_0001);
        assert_eq!(
            map_token(0x4000_0000, 0x1000, true).unwrap().at,
            0x4000_0ff0
        );
        assert_eq!(map_token(0x4000_0000, 8, true), None);
    }

    #[test]
    fn user_gcs_bytes_round_trip_and_check() {
        let g = UserGcs {
            features_enabled: PR_SHADOW_STACK_ENABLE | PR_SHADOW_STACK_PUSH,
            features_locked: PR_SHADOW_STACK_ENABLE,
            gcspr_el0: 0xffff_a000_0ff0,
        };
        assert_eq!(UserGcs::from_bytes(&g.to_bytes()), Some(g));
        assert_eq!(UserGcs::from_bytes(&[0; 16]), None);
        assert!(g.check().is_ok());
        assert!(UserGcs { gcspr_el0: 3, ..g }.check().is_err());
        assert!(
            UserGcs {
                features_locked: 8,
                ..g
            }
            .check()
            .is_err()
        );
    }
}
