//! Guard regions at restore (CRIU's `restore_madv_guard_regions`): once the task's pages
//! are in and its VMAs have their final protections and advice, `madvise(MADV_GUARD_INSTALL)`
//! over each region recorded in `mm.img` (entries of status `VMA_AREA_GUARD` alone).

use criu_proto::images::VmaEntry;

use crate::sys::kabi::MADV_GUARD_INSTALL;

use super::error::{Result, bad};
use super::mem::{PAGE_SIZE, VMA_AREA_GUARD, VmaKind, VmaPlan};
use super::rexec::RemoteThread;

/// The guard entries of `vmas` (the raw `mm.img` list).
pub fn regions(vmas: &[VmaEntry]) -> impl Iterator<Item = (usize, &VmaEntry)> {
    vmas.iter()
        .enumerate()
        .filter(|(_, v)| v.status == VMA_AREA_GUARD)
}

/// Checks each guard entry of `image`: page-aligned, not empty, and covered without a gap
/// by planned VMAs (`planned`, sorted) that are not the vDSO, vvar, vsyscall or an AIO
/// ring (a region may span VMAs: `PAGEMAP_SCAN` merges adjacent guarded pages).
pub fn check(image: &str, vmas: &[VmaEntry], planned: &[VmaPlan]) -> Result<()> {
    for (i, g) in regions(vmas) {
        if !g.start.is_multiple_of(PAGE_SIZE)
            || !g.end.is_multiple_of(PAGE_SIZE)
            || g.start >= g.end
        {
            return Err(bad(
                image,
                Some(i),
                format!(
                    "guard region {:#x}-{:#x} not page-aligned or empty",
                    g.start, g.end
                ),
            ));
        }
        if !covered(g.start, g.end, planned) {
            return Err(bad(
                image,
                Some(i),
                format!(
                    "guard region {:#x}-{:#x} is not inside ordinary VMAs",
                    g.start, g.end
                ),
            ));
        }
    }
    Ok(())
}

fn covered(start: u64, end: u64, planned: &[VmaPlan]) -> bool {
    let mut at = start;
    for v in planned.iter().filter(|v| v.end > start && v.start < end) {
        let odd = matches!(
            v.kind,
            VmaKind::Vdso | VmaKind::Vvar | VmaKind::Vsyscall | VmaKind::AioRing
        );
        if odd || v.start > at {
            return false;
        }
        at = v.end;
    }
    at >= end
}

/// Installs the guard regions of `vmas` in the task of `rt`.
pub fn install(rt: &mut RemoteThread, vmas: &[VmaEntry]) -> Result<()> {
    for (_, g) in regions(vmas) {
        rt.step = format!("madvise(MADV_GUARD_INSTALL) on {:#x}-{:#x}", g.start, g.end);
        rt.call(
            "madvise(MADV_GUARD_INSTALL)",
            libc::SYS_madvise,
            [g.start, g.end - g.start, MADV_GUARD_INSTALL as u64, 0, 0, 0],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::mem::{VMA_ANON_PRIVATE, VMA_AREA_REGULAR, plan_vmas};

    fn e(start: u64, end: u64, status: u32) -> VmaEntry {
        VmaEntry {
            start,
            end,
            status,
            flags: (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u32,
            prot: 3,
            fd: -1,
            ..Default::default()
        }
    }

    #[test]
    fn guard_entries_after_the_vmas_are_planned_apart_and_checked() {
        let anon = VMA_AREA_REGULAR | VMA_ANON_PRIVATE;
        let vmas = [
            e(0x10000, 0x14000, anon),
            e(0x20000, 0x22000, anon),
            e(0x11000, 0x13000, VMA_AREA_GUARD),
            e(0x21000, 0x22000, VMA_AREA_GUARD),
        ];
        let planned = plan_vmas("mm-1.img", &vmas).unwrap();
        assert_eq!(planned.len(), 2);
        check("mm-1.img", &vmas, &planned).unwrap();
        assert_eq!(regions(&vmas).count(), 2);

        let touching = [
            e(0x10000, 0x14000, anon),
            e(0x14000, 0x16000, anon | libc::MAP_SHARED as u32),
            e(0x13000, 0x15000, VMA_AREA_GUARD),
        ];
        let both = plan_vmas("mm-1.img", &touching).unwrap();
        check("mm-1.img", &touching, &both).unwrap();
        let across = [
            vmas[0].clone(),
            vmas[1].clone(),
            e(0x13000, 0x21000, VMA_AREA_GUARD),
        ];
        let err = check("mm-1.img", &across, &planned)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("mm-1.img, entry 2") && err.contains("not inside"),
            "{err}"
        );
        let odd = [vmas[0].clone(), e(0x11000, 0x11800, VMA_AREA_GUARD)];
        assert!(check("mm-1.img", &odd, &planned).is_err());
        // A guard bit mixed with other kinds is not CRIU's form: refused by the plan.
        let mixed = [e(0x10000, 0x14000, anon | VMA_AREA_GUARD)];
        assert!(plan_vmas("mm-1.img", &mixed).is_err());
    }
}
