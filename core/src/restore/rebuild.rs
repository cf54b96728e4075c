//! Rebuilding the address space from the gadget: unmap everything we inherited, map the
//! dumped VMAs, let the task read its pages from `pages-N.img`, set final protections and
//! advice, map the vDSO where it was, and restore the mm fields (`PR_SET_MM_MAP`).

use crate::sys::mm_map::{self, PrctlMmMap};

use super::cow;
use super::error::{RestoreError, Result};
use super::mem::{PAGE_SIZE, TASK_SIZE, VmaKind, VmaPlan};
use super::plan::TaskPlan;
use super::rexec::{RemoteThread, write_mem};
use super::shmem::{self, ShmemCtx};
use super::spawn::{GADGET_DATA, GADGET_SIZE, Spawned};

const MAP_FLAGS_KEPT: i32 = libc::MAP_SHARED
    | libc::MAP_PRIVATE
    | libc::MAP_ANONYMOUS
    | libc::MAP_GROWSDOWN
    | libc::MAP_NORESERVE
    | libc::MAP_LOCKED
    | libc::MAP_DROPPABLE
    | MAP_HUGE_FLAGS;

/// `MAP_HUGETLB` and its page size bits (`MAP_HUGE_*`): anonymous hugetlb memory.
pub const MAP_HUGE_FLAGS: i32 = libc::MAP_HUGETLB | (libc::MAP_HUGE_MASK << libc::MAP_HUGE_SHIFT);

fn task_err(rt: &RemoteThread, reason: String) -> RestoreError {
    RestoreError::Task {
        pid: rt.pid,
        tid: rt.tid.as_raw(),
        step: rt.step.clone(),
        reason,
    }
}

/// Runs the whole memory part of the restore of `t`. `parent` is the task whose restored
/// memory `t` was forked from: private VMAs they share stay copy-on-write ([`cow`]).
pub fn rebuild_mm(
    sp: &mut Spawned,
    t: &TaskPlan,
    parent: Option<&TaskPlan>,
    shm: &mut ShmemCtx<'_>,
) -> Result<()> {
    let g = sp.gadget;
    let rt = &mut sp.leader;
    let Some(pages_fd) = sp.temp.pages else {
        return Err(task_err(rt, "no pages image opened for the task".into()));
    };
    let kept = cow::inherited(t, parent);
    rt.step = "unmapping the restorer image".into();
    let top = g + GADGET_SIZE;
    let mut keep: Vec<(u64, u64)> = kept.clone();
    keep.push((g, top));
    keep.sort_unstable();
    let mut at = 0;
    for &(s, e) in keep.iter().chain([&(TASK_SIZE, TASK_SIZE)]) {
        if s > at {
            rt.call("munmap", libc::SYS_munmap, [at, s - at, 0, 0, 0, 0])?;
        }
        at = at.max(e);
    }

    for v in &t.vmas {
        if kept.binary_search(&(v.start, v.end)).is_err() {
            map_vma(rt, v, &sp.temp, shm)?;
        }
    }
    let runs = cow::fill_kept(rt, &t.pages, &kept, pages_fd)?;
    rt.step = format!("reading pages from {}", t.pages_image);
    for run in &runs {
        let (mut addr, mut left, mut off) = (run.vaddr, run.len, run.file_off);
        while left > 0 {
            let n = rt.call(
                "pread64",
                libc::SYS_pread64,
                [pages_fd as u64, addr, left, off, 0, 0],
            )?;
            if n == 0 || n > left {
                return Err(task_err(
                    rt,
                    format!(
                        "pread64 at file offset {off} gave {n} of {left} bytes (truncated pages file?)"
                    ),
                ));
            }
            addr += n;
            left -= n;
            off += n;
        }
    }
    super::aio::restore_rings(rt, &t.mm.aios, g + GADGET_DATA)?;
    for v in &t.vmas {
        finish_vma(rt, v)?;
    }
    super::guards::install(rt, &t.mm.vmas)?;
    map_vdso(rt, t)?;
    set_mm_map(rt, t, g, sp.temp.exe)?;
    Ok(())
}

fn map_vma(
    rt: &mut RemoteThread,
    v: &VmaPlan,
    temp: &super::spawn::TempFds,
    shm: &mut ShmemCtx<'_>,
) -> Result<()> {
    let (fd, pgoff) = match v.kind {
        VmaKind::Vsyscall | VmaKind::Vvar | VmaKind::Vdso => return Ok(()),
        VmaKind::AnonShared { shmid } => return shmem::map_window(rt, v, shmid, shm),
        VmaKind::SysvShm { shmid } => return super::sysv::attach(rt, v, shmid),
        VmaKind::AnonPrivate | VmaKind::AioRing => (u64::MAX, 0),
        VmaKind::FilePrivate { file_id } => (temp.vma_files[&(file_id, false)] as u64, v.pgoff),
        VmaKind::FileShared { file_id } => (
            temp.vma_files[&(file_id, v.maps_file_writable())] as u64,
            v.pgoff,
        ),
    };
    rt.step = format!("mapping vma {:#x}-{:#x}", v.start, v.end);
    let mut prot = v.prot;
    if v.takes_pages() {
        prot |= libc::PROT_WRITE as u32;
    }
    let mut flags = (v.flags as i32 & MAP_FLAGS_KEPT) | libc::MAP_FIXED;
    if matches!(v.kind, VmaKind::AnonPrivate) {
        flags |= libc::MAP_ANONYMOUS;
    }
    if v.kind == VmaKind::AioRing {
        flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED;
    }
    let got = rt.call(
        "mmap",
        libc::SYS_mmap,
        [v.start, v.len(), prot as u64, flags as u64, fd, pgoff],
    )?;
    if got != v.start {
        return Err(task_err(rt, format!("mapped at {got:#x}")));
    }
    Ok(())
}

fn finish_vma(rt: &mut RemoteThread, v: &VmaPlan) -> Result<()> {
    // An AIO ring is the kernel's by now (see `super::aio`).
    if matches!(
        v.kind,
        VmaKind::Vsyscall | VmaKind::Vvar | VmaKind::Vdso | VmaKind::AioRing
    ) {
        return Ok(());
    }
    rt.step = format!("protecting vma {:#x}-{:#x}", v.start, v.end);
    if v.takes_pages() && v.prot & libc::PROT_WRITE as u32 == 0 {
        rt.call(
            "mprotect",
            libc::SYS_mprotect,
            [v.start, v.len(), v.prot as u64, 0, 0, 0],
        )?;
    }
    for bit in 0..64u64 {
        if v.madv & (1 << bit) != 0 {
            rt.step = format!("madvise({bit}) on vma {:#x}-{:#x}", v.start, v.end);
            rt.call(
                "madvise",
                libc::SYS_madvise,
                [v.start, v.len(), bit, 0, 0, 0],
            )?;
        }
    }
    Ok(())
}

fn map_vdso(rt: &mut RemoteThread, t: &TaskPlan) -> Result<()> {
    let vdso = t.vmas.iter().find(|v| v.kind == VmaKind::Vdso);
    let vvar = t.vmas.iter().find(|v| v.kind == VmaKind::Vvar);
    let Some(vdso) = vdso else {
        // A task without a vDSO (e.g. under valgrind) gets none.
        return Ok(());
    };
    rt.step = "mapping the vDSO".into();
    let Some(vvar) = vvar else {
        return Err(task_err(rt, "the image has [vdso] without [vvar]".into()));
    };
    rt.call(
        "arch_prctl(ARCH_MAP_VDSO_64)",
        libc::SYS_arch_prctl,
        [mm_map::ARCH_MAP_VDSO_64, vvar.start, 0, 0, 0, 0],
    )?;
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", rt.tid))
        .map_err(|e| task_err(rt, format!("reading maps: {e}")))?;
    let landed = maps.lines().find(|l| l.ends_with("[vdso]")).and_then(|l| {
        let (a, _) = l.split_once('-')?;
        u64::from_str_radix(a, 16).ok()
    });
    if landed != Some(vdso.start) {
        return Err(task_err(
            rt,
            format!(
                "[vdso] landed at {landed:x?}, the image has it at {:#x} (a different kernel's vDSO layout is not supported)",
                vdso.start
            ),
        ));
    }
    Ok(())
}

/// Whether the task's current exe already is the file open at its fd `fd` (a child forked
/// from a restored parent running the same program): the kernel refuses to replace an exe
/// that is still mapped (EBUSY), and there is nothing to replace.
fn exe_already(pid: i32, fd: i32) -> bool {
    use std::os::unix::fs::MetadataExt;
    let cur = std::fs::metadata(format!("/proc/{pid}/exe"));
    let new = std::fs::metadata(format!("/proc/{pid}/fd/{fd}"));
    matches!((cur, new), (Ok(a), Ok(b)) if a.dev() == b.dev() && a.ino() == b.ino())
}

fn set_mm_map(rt: &mut RemoteThread, t: &TaskPlan, g: u64, exe: Option<i32>) -> Result<()> {
    rt.step = "PR_SET_MM_MAP".into();
    let exe = exe.filter(|&fd| !exe_already(rt.tid.as_raw(), fd));
    let m = &t.mm;
    let data = g + GADGET_DATA;
    let auxv_addr = data + 0x200;
    let auxv: Vec<u8> = m
        .mm_saved_auxv
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .collect();
    let map = PrctlMmMap {
        start_code: m.mm_start_code,
        end_code: m.mm_end_code,
        start_data: m.mm_start_data,
        end_data: m.mm_end_data,
        start_brk: m.mm_start_brk,
        brk: m.mm_brk,
        start_stack: m.mm_start_stack,
        arg_start: m.mm_arg_start,
        arg_end: m.mm_arg_end,
        env_start: m.mm_env_start,
        env_end: m.mm_env_end,
        auxv: auxv_addr,
        auxv_size: auxv.len() as u32,
        exe_fd: exe.map(|f| f as u32).unwrap_or(u32::MAX),
    };
    // The layout we send must be the one this kernel reads.
    match mm_map::mm_map_size() {
        Ok(n) if n == mm_map::PRCTL_MM_MAP_SIZE => {}
        other => {
            return Err(task_err(
                rt,
                format!(
                    "kernel prctl_mm_map size {other:?}, ours is {}",
                    mm_map::PRCTL_MM_MAP_SIZE
                ),
            ));
        }
    }
    if auxv.len() as u64 > 2 * PAGE_SIZE - 0x200 {
        return Err(task_err(rt, format!("auxv of {} bytes", auxv.len())));
    }
    write_mem(rt, data, &map.to_bytes())?;
    write_mem(rt, auxv_addr, &auxv)?;
    rt.call(
        "prctl(PR_SET_MM_MAP)",
        libc::SYS_prctl,
        [
            mm_map::PR_SET_MM,
            mm_map::PR_SET_MM_MAP,
            data,
            mm_map::PRCTL_MM_MAP_SIZE as u64,
            0,
            0,
        ],
    )?;
    Ok(())
}
