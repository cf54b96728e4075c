//! x86_64 CET user shadow stacks: uapi constants, token arithmetic and the per-thread state
//! CRIU records.
//!
//! Constants, checked against the kernel's uapi headers:
//! `arch/x86/include/uapi/asm/prctl.h` (`ARCH_SHSTK_*`), `arch/x86/include/uapi/asm/mman.h`
//! (`SHADOW_STACK_SET_TOKEN`), `include/uapi/linux/elf.h` (`NT_X86_SHSTK`),
//! `arch/x86/entry/syscalls/syscall_64.tbl` (`map_shadow_stack` = 453); token formats from
//! `arch/x86/kernel/shstk.c` (`create_rstor_token`, `put_shstk_data`).

use crate::Token;

/// `arch_prctl` code: enable one feature of the calling thread (`ARCH_SHSTK_SHSTK` allocates
/// a shadow stack and points SSP at its top; `ARCH_SHSTK_WRSS` allows `WRSS`).
pub const ARCH_SHSTK_ENABLE: u64 = 0x5001;
/// `arch_prctl` code: disable one feature.
pub const ARCH_SHSTK_DISABLE: u64 = 0x5002;
/// `arch_prctl` code: forbid later enable/disable of the given features (also via ptrace).
pub const ARCH_SHSTK_LOCK: u64 = 0x5003;
/// `arch_prctl` code: undo a lock; the kernel accepts it only through `PTRACE_ARCH_PRCTL`.
pub const ARCH_SHSTK_UNLOCK: u64 = 0x5004;
/// `arch_prctl` code: store the enabled features at the address in the second argument
/// (through `PTRACE_ARCH_PRCTL`: an address of the tracer).
pub const ARCH_SHSTK_STATUS: u64 = 0x5005;
/// Feature bit: the shadow stack itself.
pub const ARCH_SHSTK_SHSTK: u64 = 1 << 0;
/// Feature bit: the `WRSS` instruction.
pub const ARCH_SHSTK_WRSS: u64 = 1 << 1;
/// Every feature bit a kernel reports.
pub const ARCH_SHSTK_KNOWN: u64 = ARCH_SHSTK_SHSTK | ARCH_SHSTK_WRSS;

/// ELF note type of the shadow-stack regset (`PTRACE_GETREGSET`/`SETREGSET`): one u64, SSP.
pub const NT_X86_SHSTK: u32 = 0x204;
/// `ptrace` request running `arch_prctl` for the tracee.
pub const PTRACE_ARCH_PRCTL: u32 = 30;
/// `map_shadow_stack(addr, size, flags)` on x86_64.
pub const SYS_MAP_SHADOW_STACK: u64 = 453;
/// `map_shadow_stack` flag: write a restore token at the top of the new stack.
pub const SHADOW_STACK_SET_TOKEN: u64 = 1 << 0;
/// `map_shadow_stack` refuses a fixed address below 4 GiB (`-ERANGE`).
pub const MAP_SHADOW_STACK_MIN_ADDR: u64 = 1 << 32;
/// Highest user address + 1 with 4-level paging; `NT_X86_SHSTK` refuses SSP at or above.
pub const TASK_SIZE_MAX: u64 = (1 << 47) - 4096;
/// Bit 0 of a restore token: the token was made in 64-bit mode.
pub const TOKEN_MODE_64: u64 = 1 << 0;
/// Bit 63 of a shadow-stack word the kernel pushed as data (a signal frame's saved SSP), so
/// that `RET` cannot take it for a return address.
pub const SHSTK_DATA_BIT: u64 = 1 << 63;

/// The restore token `RSTORSSP` (and the kernel's `create_rstor_token`) wants for a switch to
/// `ssp`: `ssp | 1` stored at `ssp - 8`. `None` when `ssp` is misaligned or below 8.
pub fn restore_token(ssp: u64) -> Option<Token> {
    if !ssp.is_multiple_of(8) || ssp < 8 {
        return None;
    }
    Some(Token {
        at: ssp - 8,
        value: ssp | TOKEN_MODE_64,
    })
}

/// The SSP a restore token found at `at` leads to, if `value` is one: 64-bit mode, bit 1
/// clear, and pointing just above itself.
pub fn parse_restore_token(at: u64, value: u64) -> Option<u64> {
    let ssp = value & !0b11;
    (value & 0b11 == TOKEN_MODE_64 && Some(ssp) == at.checked_add(8)).then_some(ssp)
}

/// The token `map_shadow_stack(addr, size, SHADOW_STACK_SET_TOKEN)` leaves: a restore token
/// for SSP = `addr + size`, at `addr + size - 8`. `None` when `size < 8` (the kernel answers
/// `-ENOSPC`) or the end overflows.
pub fn map_token(addr: u64, size: u64) -> Option<Token> {
    if size < 8 {
        return None;
    }
    restore_token(addr.checked_add(size)?)
}

/// The word the kernel pushes for a signal frame (and CRIU's restorer for its sigreturn):
/// the 8-aligned SSP with [`SHSTK_DATA_BIT`], at `ssp - 8`.
pub fn data_token(ssp: u64) -> Option<Token> {
    let aligned = ssp & !7;
    (aligned >= 8 && aligned & SHSTK_DATA_BIT == 0).then(|| Token {
        at: aligned - 8,
        value: aligned | SHSTK_DATA_BIT,
    })
}

/// A thread's shadow-stack state, as CRIU 4.2 stores it in
/// `user_x86_xsave_entry.cet` (`user_x86_cet_entry`): `cet` holds what `ARCH_SHSTK_STATUS`
/// answered (not the `MSR_IA32_U_CET` value), `ssp` what `NT_X86_SHSTK` gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cet {
    /// `ARCH_SHSTK_*` feature bits.
    pub features: u64,
    /// The shadow-stack pointer (0 when the shadow stack is off).
    pub ssp: u64,
}

impl Cet {
    /// Whether the thread ran with a shadow stack.
    pub fn enabled(&self) -> bool {
        self.features & ARCH_SHSTK_SHSTK != 0
    }

    /// Whether the recorded state could have come from a kernel: known bits only, `WRSS`
    /// only with the stack on, a pointer only with the stack on, aligned and in user space.
    pub fn check(&self) -> Result<(), String> {
        if self.features & !ARCH_SHSTK_KNOWN != 0 {
            return Err(format!(
                "unknown ARCH_SHSTK feature bits {:#x}",
                self.features
            ));
        }
        if !self.enabled() {
            if self.features & ARCH_SHSTK_WRSS != 0 {
                return Err("WRSS enabled without a shadow stack".into());
            }
            if self.ssp != 0 {
                return Err(format!("ssp {:#x} with the shadow stack off", self.ssp));
            }
            return Ok(());
        }
        if self.ssp == 0 || self.ssp >= TASK_SIZE_MAX || !self.ssp.is_multiple_of(8) {
            return Err(format!(
                "ssp {:#x} is not a user shadow-stack pointer",
                self.ssp
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_token_is_ssp_with_the_mode_bit_below_it() {
        let t = restore_token(0x7f00_0000_1000).unwrap();
        assert_eq!(t.at, 0x7f00_0000_0ff8);
        assert_eq!(t.value, 0x7f00_0000_1001);
        assert_eq!(parse_restore_token(t.at, t.value), Some(0x7f00_0000_1000));
        assert_eq!(restore_token(0x1004), None);
        assert_eq!(restore_token(0), None);
    }

    #[test]
    fn parse_refuses_busy_misplaced_or_32bit_tokens() {
        assert_eq!(parse_restore_token(0x1ff8, 0x2000), None, "32-bit mode");
        assert_eq!(parse_restore_token(0x1ff8, 0x2003), None, "bit 1 set");
        assert_eq!(parse_restore_token(0x1ff0, 0x2001), None, "not just below");
        assert_eq!(parse_restore_token(u64::MAX - 3, 0x1), None, "overflow");
    }

    #[test]
    fn map_shadow_stack_token_sits_at_the_top() {
        let t = map_token(0x7000_0000_0000, 0x2000).unwrap();
        assert_eq!((t.at, t.value), (0x7000_0000_1ff8, 0x7000_0000_2001));
        assert_eq!(map_token(0x1000, 4), None);
        assert_eq!(map_token(u64::MAX - 0xfff, 0x2000), None);
    }

    #[test]
    fn data_token_marks_bit_63() {
        let t = data_token(0x7000_0000_1003).unwrap();
        assert_eq!(t.at, 0x7000_0000_0ff8);
        assert_eq!(t.value, 0x7000_0000_1000 | SHSTK_DATA_BIT);
    }

    #[test]
    fn cet_state_checks() {
        assert!(Cet::default().check().is_ok());
        let on = Cet {
            features: ARCH_SHSTK_SHSTK,
            ssp: 0x7fff_f000_0ff8,
        };
        assert!(on.enabled() && on.check().is_ok());
        let wrss_only = Cet {
            features: ARCH_SHSTK_WRSS,
            ssp: 0,
        };
        assert!(wrss_only.check().is_err());
        let odd = Cet { ssp: 0x1004, ..on };
        assert!(odd.check().is_err());
        let unknown = Cet { features: 4, ..on };
        assert!(unknown.check().is_err());
        let stray = Cet {
            features: 0,
            ssp: 0x1000,
        };
        assert!(stray.check().is_err());
    }
}
