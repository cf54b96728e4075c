//! Shadow-stack areas of a dumped address space, and where a thread's pointer may be.

use crate::ShstkError;
use crate::plan::Arch;

const PAGE: u64 = 4096;

/// One shadow-stack area (`VmFlags: ss` in smaps at dump, `VMA_AREA_SHSTK` in `mm.img`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShadowStackVma {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
}

impl ShadowStackVma {
    /// Its size in bytes.
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// Whether it covers no byte.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `map_shadow_stack` can create it again at the same place on `arch`:
    /// page-aligned, non-empty, in user space, and on x86 above 4 GiB (the kernel answers
    /// `-ERANGE` below).
    pub fn check(&self, arch: &Arch) -> Result<(), ShstkError> {
        let bad = |reason| ShstkError::BadVma {
            start: self.start,
            end: self.end,
            reason,
        };
        if self.start >= self.end {
            return Err(bad("empty or inverted"));
        }
        if !self.start.is_multiple_of(PAGE) || !self.end.is_multiple_of(PAGE) {
            return Err(bad("not page-aligned"));
        }
        if self.end > arch.task_size() {
            return Err(bad("beyond user space"));
        }
        if matches!(arch, Arch::X86 { .. }) && self.start < crate::x86::MAP_SHADOW_STACK_MIN_ADDR {
            return Err(bad("below 4 GiB, where map_shadow_stack cannot place it"));
        }
        Ok(())
    }

    /// Whether a shadow-stack pointer may be `ptr` in this area: from `start` (full) to
    /// `end` (empty: the kernel starts a new stack with SSP = end).
    pub fn holds(&self, ptr: u64) -> bool {
        self.start <= ptr && ptr <= self.end
    }
}

/// Checks every area and that none overlaps another (sorted by start on return).
pub fn check_all(vmas: &mut [ShadowStackVma], arch: &Arch) -> Result<(), ShstkError> {
    vmas.sort_by_key(|v| v.start);
    for v in vmas.iter() {
        v.check(arch)?;
    }
    for w in vmas.windows(2) {
        if w[1].start < w[0].end {
            return Err(ShstkError::Overlap {
                a: w[0].start,
                b: w[1].start,
            });
        }
    }
    Ok(())
}

/// The area holding thread `tid`'s pointer `ptr`, which must be 8-aligned. A pointer equal
/// to one area's end and another's start (adjacent areas) is taken as the lower one's
/// empty top, as the kernel would have set it.
pub fn area_of(tid: i32, ptr: u64, vmas: &[ShadowStackVma]) -> Result<ShadowStackVma, ShstkError> {
    if !ptr.is_multiple_of(8) {
        return Err(ShstkError::Misaligned { tid, ptr });
    }
    vmas.iter()
        .copied()
        .find(|v| v.holds(ptr))
        .ok_or(ShstkError::Outside { tid, ptr })
}

#[cfg(test)]
mod tests {
    use super::*;

    const X86: Arch = Arch::X86 {
        features: crate::x86::ARCH_SHSTK_SHSTK,
    };

    fn vma(start: u64, end: u64) -> ShadowStackVma {
        ShadowStackVma { start, end }
    }

    #[test]
    fn areas_are_checked_as_the_kernel_would_map_them() {
        assert!(vma(0x7f00_0000_0000, 0x7f00_0080_0000).check(&X86).is_ok());
        assert!(
            vma(0x1000_0000, 0x1000_1000).check(&X86).is_err(),
            "below 4G"
        );
        assert!(vma(0x7f00_0000_0010, 0x7f00_0000_2000).check(&X86).is_err());
        assert!(vma(0x7f00_0000_2000, 0x7f00_0000_2000).check(&X86).is_err());
        let gcs = Arch::Arm64 {
            enabled: 1,
            locked: 0,
        };
        assert!(
            vma(0x1000_0000, 0x1000_1000).check(&gcs).is_ok(),
            "no 4G rule"
        );
    }

    #[test]
    fn overlaps_are_refused() {
        let mut v = [
            vma(0x2_0000_2000, 0x2_0000_4000),
            vma(0x2_0000_0000, 0x2_0000_3000),
        ];
        assert_eq!(
            check_all(&mut v, &X86),
            Err(ShstkError::Overlap {
                a: 0x2_0000_0000,
                b: 0x2_0000_2000
            })
        );
        let mut ok = [
            vma(0x2_0000_2000, 0x2_0000_4000),
            vma(0x2_0000_0000, 0x2_0000_2000),
        ];
        assert!(check_all(&mut ok, &X86).is_ok());
        assert_eq!(ok[0].start, 0x2_0000_0000);
    }

    #[test]
    fn pointer_lookup() {
        let v = [
            vma(0x2_0000_0000, 0x2_0000_2000),
            vma(0x2_0000_2000, 0x2_0000_4000),
        ];
        assert_eq!(area_of(1, 0x2_0000_1ff8, &v).unwrap(), v[0]);
        assert_eq!(area_of(1, 0x2_0000_2000, &v).unwrap(), v[0], "empty top");
        assert_eq!(area_of(1, 0x2_0000_3000, &v).unwrap(), v[1]);
        assert_eq!(
            area_of(1, 0x2_0000_1ffc, &v),
            Err(ShstkError::Misaligned {
                tid: 1,
                ptr: 0x2_0000_1ffc
            })
        );
        assert!(matches!(
            area_of(7, 0x3_0000_0000, &v),
            Err(ShstkError::Outside { tid: 7, .. })
        ));
    }
}
