//! Optional checks about memory: soft-dirty, userfaultfd, memfd kinds, io_uring,
//! PAGEMAP_SCAN and guard regions.

use std::fs::File;
use std::os::fd::AsFd;

use super::{Check, KernelFeatures, Need};
use crate::sys::{kabi, probe};

type Outcome = Result<Option<String>, String>;

macro_rules! optional {
    ($name:literal, $criu:literal, $what:literal, $hint:literal, $probe:ident) => {
        Check {
            name: $name,
            criu_feature: $criu,
            what: $what,
            need: Need::Optional,
            hint: $hint,
            probe: $probe,
        }
    };
}

pub(super) static CHECKS: &[Check] = &[
    optional!(
        "aio_remap",
        true,
        "an AIO ring moved with mremap still found by io_getevents",
        "needs CONFIG_AIO=y and Linux 3.19+; tasks with AIO contexts need it",
        aio_remap
    ),
    optional!(
        "mem_dirty_track",
        true,
        "soft-dirty bit of a page written after clear_refs 4",
        "needs CONFIG_MEM_SOFT_DIRTY=y; pre-dump and incremental dumps need it",
        soft_dirty
    ),
    optional!(
        "uffd",
        true,
        "userfaultfd + UFFDIO_API",
        "needs CONFIG_USERFAULTFD=y (and vm.unprivileged_userfaultfd=1 when not root); \
         lazy pages need it",
        uffd
    ),
    optional!(
        "uffd-noncoop",
        true,
        "UFFDIO_API with fork/remap/remove/unmap events",
        "needs Linux 4.11+ with CONFIG_USERFAULTFD",
        uffd_noncoop
    ),
    optional!(
        "memfd_hugetlb",
        true,
        "memfd_create(MFD_HUGETLB)",
        "needs CONFIG_HUGETLBFS=y (Linux 4.14+)",
        memfd_hugetlb
    ),
    optional!(
        "memfd_secret",
        false,
        "memfd_secret()",
        "needs CONFIG_SECRETMEM=y and secretmem not disabled at boot",
        memfd_secret
    ),
    optional!(
        "io_uring",
        false,
        "io_uring_setup()",
        "needs CONFIG_IO_URING=y and kernel.io_uring_disabled=0",
        io_uring
    ),
    optional!(
        "pagemap_scan",
        true,
        "ioctl(PAGEMAP_SCAN) on /proc/self/pagemap",
        "needs Linux 6.7 or newer",
        pagemap_scan
    ),
    optional!(
        "guard_regions",
        false,
        "MADV_GUARD_INSTALL reported by PAGEMAP_SCAN",
        "needs Linux 6.13 or newer; guard regions are invisible in maps without it",
        guard_regions
    ),
];

fn soft_dirty(kf: &mut KernelFeatures) -> Outcome {
    use std::os::unix::fs::FileExt;
    // Clear our own soft-dirty bits (harmless), dirty one page, and look for bit 55 in its
    // pagemap entry: the write to clear_refs succeeds even without soft-dirty support.
    let m = probe::AnonMap::new(1).map_err(|e| e.to_string())?;
    std::fs::write("/proc/self/clear_refs", "4").map_err(|e| format!("clear_refs 4: {e}"))?;
    m.touch(0);
    let pm = File::open("/proc/self/pagemap").map_err(|e| e.to_string())?;
    let mut b = [0u8; 8];
    pm.read_exact_at(&mut b, m.addr() / 4096 * 8)
        .map_err(|e| format!("read /proc/self/pagemap: {e}"))?;
    if u64::from_le_bytes(b) & (1 << 55) == 0 {
        return Err("a page written after clear_refs 4 has no soft-dirty bit".into());
    }
    kf.soft_dirty = true;
    Ok(None)
}

fn uffd(kf: &mut KernelFeatures) -> Outcome {
    let fd = probe::userfaultfd(0).map_err(|e| e.to_string())?;
    let api = probe::uffd_api(fd.as_fd(), 0).map_err(|e| e.to_string())?;
    kf.uffd_features = Some(api.features);
    Ok(Some(format!("features {:#x}", api.features)))
}

fn uffd_noncoop(_: &mut KernelFeatures) -> Outcome {
    let want = kabi::UFFD_FEATURE_EVENT_FORK
        | kabi::UFFD_FEATURE_EVENT_REMAP
        | kabi::UFFD_FEATURE_EVENT_REMOVE
        | kabi::UFFD_FEATURE_EVENT_UNMAP;
    let fd = probe::userfaultfd(0).map_err(|e| e.to_string())?;
    let api = probe::uffd_api(fd.as_fd(), want).map_err(|e| e.to_string())?;
    if api.features & want != want {
        return Err(format!("granted features {:#x}", api.features));
    }
    Ok(None)
}

fn memfd_hugetlb(_: &mut KernelFeatures) -> Outcome {
    probe::memfd_create(c"criu-probe", libc::MFD_HUGETLB).map_err(|e| e.to_string())?;
    Ok(None)
}

fn memfd_secret(kf: &mut KernelFeatures) -> Outcome {
    probe::memfd_secret().map_err(|e| e.to_string())?;
    kf.memfd_secret = true;
    Ok(None)
}

fn io_uring(kf: &mut KernelFeatures) -> Outcome {
    let (_, p) = probe::io_uring_setup(1).map_err(|e| e.to_string())?;
    kf.io_uring = true;
    Ok(Some(format!("features {:#x}", p.features)))
}

fn scan(m: &probe::AnonMap, category: u64) -> Result<usize, String> {
    let pm = File::open("/proc/self/pagemap").map_err(|e| e.to_string())?;
    let mut out = [kabi::page_region::default(); 4];
    let (n, _) = probe::pagemap_scan(
        &pm,
        m.addr(),
        m.addr() + m.len() as u64,
        category,
        0,
        category,
        &mut out,
    )
    .map_err(|e| e.to_string())?;
    Ok(n)
}

fn pagemap_scan(kf: &mut KernelFeatures) -> Outcome {
    let m = probe::AnonMap::new(2).map_err(|e| e.to_string())?;
    match scan(&m, kabi::PAGE_IS_PRESENT)? {
        1 => {
            kf.pagemap_scan = true;
            Ok(None)
        }
        n => Err(format!("2 present pages reported as {n} regions")),
    }
}

fn guard_regions(kf: &mut KernelFeatures) -> Outcome {
    let m = probe::AnonMap::new(3).map_err(|e| e.to_string())?;
    m.madvise(4096, 4096, kabi::MADV_GUARD_INSTALL)
        .map_err(|e| e.to_string())?;
    match scan(&m, kabi::PAGE_IS_GUARD)? {
        1 => {
            kf.guard_regions = true;
            Ok(None)
        }
        n => Err(format!("one guard page reported as {n} regions")),
    }
}

fn aio_remap(_: &mut KernelFeatures) -> Outcome {
    probe::aio_remap().map_err(|e| e.to_string())?;
    Ok(None)
}
