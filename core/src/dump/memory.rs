//! The VMA list (smaps + map_files) as CRIU's `vma_entry`s, and the `mm_entry` fields.

use std::os::unix::fs::MetadataExt;
use std::sync::OnceLock;

use criu_proto::images::{MmEntry, VmaEntry};

use crate::proc::maps::MapsEntry;
use crate::proc::{maps, misc, stat};

use super::DumpError;

// vma_entry.status bits (CRIU's image values).
pub const VMA_AREA_REGULAR: u32 = 1 << 0;
pub const VMA_AREA_STACK: u32 = 1 << 1;
pub const VMA_AREA_VSYSCALL: u32 = 1 << 2;
pub const VMA_AREA_VDSO: u32 = 1 << 3;
pub const VMA_AREA_HEAP: u32 = 1 << 5;
pub const VMA_FILE_PRIVATE: u32 = 1 << 6;
pub const VMA_FILE_SHARED: u32 = 1 << 7;
pub const VMA_ANON_SHARED: u32 = 1 << 8;
pub const VMA_ANON_PRIVATE: u32 = 1 << 9;
pub const VMA_AREA_SYSVIPC: u32 = 1 << 10;
pub const VMA_AREA_SOCKET: u32 = 1 << 11;
pub const VMA_AREA_VVAR: u32 = 1 << 12;
pub const VMA_AREA_AIORING: u32 = 1 << 13;
pub const VMA_AREA_MEMFD: u32 = 1 << 14;
pub const VMA_AREA_GUARD: u32 = 1 << 16;
pub const VMA_UNSUPP: u32 = 1 << 31;

pub const PAGE_SIZE: u64 = 4096;
/// x86_64 TASK_SIZE (47-bit user space): VMAs above it (vsyscall) are never dumped.
pub const TASK_SIZE: u64 = 0x7fff_ffff_f000;

/// (st_mode, st_dev, st_ino, st_rdev) of a mapping's file, `None` when it has no map_files link.
pub type StatFn<'a> = dyn FnMut(&MapsEntry) -> Option<(u32, u64, u64, u64)> + 'a;

/// The file behind a file-backed VMA, to be turned into a files.img entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmaFile {
    /// `/proc/PID/map_files/START-END` (opens the mapped file itself).
    pub map_files: String,
    pub dev: u64,
    pub ino: u64,
    pub path: String,
}

#[derive(Debug, Clone)]
pub struct Vma {
    pub entry: VmaEntry,
    /// Set for FILE_PRIVATE/FILE_SHARED VMAs; `entry.shmid` gets its file id later.
    pub file: Option<VmaFile>,
    /// For ANON_SHARED VMAs: the map_files link that opens the shmem object.
    pub shmem: Option<String>,
    /// What this VMA is when only a plugin can dump it (its pages are unreadable to criu):
    /// a dump in which no VMA handler claims it fails naming it.
    pub plugin_only: Option<&'static str>,
}

impl Vma {
    pub fn has(&self, bits: u32) -> bool {
        self.entry.status & bits == bits
    }
}

/// Device of the kernel's internal shmem mount (anonymous shared memory, memfd, SysV shm).
fn shmem_dev() -> Option<u64> {
    static DEV: OnceLock<Option<u64>> = OnceLock::new();
    *DEV.get_or_init(|| {
        let fd = nix::sys::memfd::memfd_create(
            c"criu-shmem-probe",
            nix::sys::memfd::MFdFlags::MFD_CLOEXEC,
        )
        .ok()?;
        nix::sys::stat::fstat(&fd).ok().map(|s| s.st_dev)
    })
}

fn madv_bits(f: &maps::VmFlags) -> u64 {
    let mut m = 0u64;
    for (tok, adv) in [
        ("sr", libc::MADV_SEQUENTIAL),
        ("rr", libc::MADV_RANDOM),
        ("dc", libc::MADV_DONTFORK),
        ("dd", libc::MADV_DONTDUMP),
        ("mg", libc::MADV_MERGEABLE),
        ("hg", libc::MADV_HUGEPAGE),
        ("nh", libc::MADV_NOHUGEPAGE),
        ("wf", libc::MADV_WIPEONFORK),
    ] {
        if f.has(tok) {
            m |= 1u64 << adv;
        }
    }
    m
}

/// Turn one smaps entry into a vma_entry. `file_stat` stats `map_files` for it (injected so
/// the classification is testable without a live task).
pub fn classify(pid: i32, m: &MapsEntry, file_stat: &mut StatFn<'_>) -> Result<Vma, DumpError> {
    let mut e = VmaEntry {
        start: m.start,
        end: m.end,
        pgoff: m.pgoff,
        shmid: 0,
        prot: m.prot(),
        flags: if m.shared {
            libc::MAP_SHARED as u32
        } else {
            libc::MAP_PRIVATE as u32
        },
        status: 0,
        fd: -1,
        madv: None,
        fdflags: None,
        criu_rs_plugin: None,
        criu_rs_name: None,
    };
    let vmf = m.vm_flags.clone().unwrap_or_default();
    for (tok, flag) in [
        ("gd", libc::MAP_GROWSDOWN),
        ("lo", libc::MAP_LOCKED),
        ("nr", libc::MAP_NORESERVE),
        ("ht", libc::MAP_HUGETLB),
    ] {
        if vmf.has(tok) {
            e.flags |= flag as u32;
        }
    }
    // MAP_DROPPABLE is a mapping type of its own, not a private mapping with a flag: mmap
    // refuses MAP_PRIVATE with it (CRIU stores it the same way).
    if vmf.has("dp") {
        e.flags = (e.flags & !(libc::MAP_PRIVATE as u32)) | libc::MAP_DROPPABLE as u32;
    }
    // A shadow stack (CRIU's VMA_AREA_SHSTK): private anonymous memory otherwise, its pages
    // dumped like any other; restore creates it with map_shadow_stack.
    if vmf.has("ss") {
        crate::shstk::x86_64::dump_area(pid, m.start, m.end)?;
        e.status |= crate::shstk::VMA_AREA_SHSTK;
    }
    let madv = madv_bits(&vmf);
    e.madv = (madv != 0).then_some(madv);
    let unsupported = |what: String| DumpError::Unsupported {
        pid,
        step: "memory",
        what,
        hint: "no image form for it yet",
    };

    let mut file = None;
    match m.path.as_str() {
        "[vsyscall]" | "[vectors]" => e.status |= VMA_AREA_VSYSCALL,
        "[vdso]" => {
            e.status |= VMA_AREA_REGULAR;
            if e.prot & (libc::PROT_READ | libc::PROT_EXEC) as u32
                == (libc::PROT_READ | libc::PROT_EXEC) as u32
            {
                e.status |= VMA_AREA_VDSO;
            }
        }
        "[vvar]" | "[vvar_vclock]" => {
            e.status |= VMA_AREA_REGULAR;
            if e.prot & libc::PROT_READ as u32 != 0 {
                e.status |= VMA_AREA_VVAR;
            }
        }
        "[heap]" => e.status |= VMA_AREA_REGULAR | VMA_AREA_HEAP,
        _ => {
            e.status = VMA_AREA_REGULAR;
            if let Some(v) = secretmem(m, &e) {
                return Ok(v);
            }
            if let Some(v) = io_uring_ring(m, &e) {
                return Ok(v);
            }
            if let Some(v) = socket_ring(m, &e) {
                return Ok(v);
            }
            if let Some(v) = anon_hugetlb(pid, m, &e, &vmf) {
                return Ok(v);
            }
            if let Some(v) = super::aio::ring_vma(m, &e) {
                return Ok(v);
            }
            if m.inode != 0 || m.dev_major != 0 || m.dev_minor != 0 {
                let Some((mode, dev, ino, rdev)) = file_stat(m) else {
                    return Err(unsupported(format!(
                        "mapping {:#x}-{:#x} of {:?} without a map_files link",
                        m.start, m.end, m.path
                    )));
                };
                let fmt = mode & libc::S_IFMT;
                let devzero = fmt == libc::S_IFCHR && rdev == libc::makedev(1, 5);
                if fmt != libc::S_IFREG && !devzero {
                    return Err(unsupported(format!(
                        "mapping {:#x}-{:#x} of non-regular file {:?}",
                        m.start, m.end, m.path
                    )));
                }
                if Some(dev) == shmem_dev() {
                    // MAP_SHARED|MAP_ANONYMOUS shows as "/dev/zero (deleted)" on the shmem
                    // mount; SysV shm and memfd live there too.
                    if m.shared && m.path.starts_with("/dev/zero") {
                        e.status |= VMA_ANON_SHARED;
                        e.flags |= libc::MAP_ANONYMOUS as u32;
                        e.shmid = ino;
                        return Ok(Vma {
                            entry: e,
                            file: None,
                            shmem: Some(format!("/proc/{pid}/map_files/{:x}-{:x}", m.start, m.end)),
                            plugin_only: None,
                        });
                    }
                    // SysV shm: recorded by id and attached again at restore, as CRIU
                    // does without an IPC namespace dump; its contents stay in the segment.
                    if m.shared && m.path.starts_with("/SYSV") {
                        sysv_kept(pid, ino, m.start)?;
                        e.status |= VMA_ANON_SHARED | VMA_AREA_SYSVIPC;
                        e.flags |= libc::MAP_ANONYMOUS as u32;
                        e.shmid = ino;
                        return Ok(Vma {
                            entry: e,
                            file: None,
                            shmem: None,
                            plugin_only: None,
                        });
                    }
                    // Anything else there (memfd) is a file: the fd plugins dump it (the
                    // memfd plugin), and the file's entry type marks the VMA (VMA_AREA_MEMFD).
                }
                e.status |= if m.shared {
                    VMA_FILE_SHARED
                } else {
                    VMA_FILE_PRIVATE
                };
                let rw = vmf.has("sh") && vmf.has("mw");
                e.fdflags = Some(if rw { libc::O_RDWR } else { libc::O_RDONLY } as u32);
                file = Some(VmaFile {
                    map_files: format!("/proc/{pid}/map_files/{:x}-{:x}", m.start, m.end),
                    dev,
                    ino,
                    path: m.path.clone(),
                });
            }
        }
    }
    if file.is_none() {
        if m.shared {
            return Err(unsupported(format!(
                "anonymous shared mapping {:#x}-{:#x}",
                m.start, m.end
            )));
        }
        e.status |= VMA_ANON_PRIVATE;
        e.flags |= libc::MAP_ANONYMOUS as u32;
    }
    // VM_IO/VM_PFNMAP mappings cannot be copied (except the kernel's vvar).
    if (vmf.has("io") || vmf.has("pf")) && e.status & VMA_AREA_VVAR == 0 {
        return Err(unsupported(format!(
            "VM_IO/VM_PFNMAP mapping {:#x}-{:#x} ({:?})",
            m.start, m.end, m.path
        )));
    }
    Ok(Vma {
        entry: e,
        file,
        shmem: None,
        plugin_only: None,
    })
}

/// The `/proc/PID/maps` name of a memfd_secret mapping.
pub const SECRETMEM_NAME: &str = "/secretmem (deleted)";

/// A memfd_secret mapping: no map_files link (the kernel answers ENXIO), pages unreadable
/// to criu; only a VMA handler (the secretmem plugin) can dump it. Recorded as the
/// anonymous shared area the core maps as a placeholder at restore (the plugin maps the
/// secret memory over it); `VM_LOCKED`/`VM_DONTDUMP` come with secretmem itself, so
/// neither the lock nor the madvise bits are recorded.
fn secretmem(m: &MapsEntry, e: &VmaEntry) -> Option<Vma> {
    if m.path != SECRETMEM_NAME || !m.shared || m.inode == 0 {
        return None;
    }
    let entry = VmaEntry {
        status: VMA_AREA_REGULAR | VMA_ANON_PRIVATE,
        flags: (libc::MAP_SHARED | libc::MAP_ANONYMOUS) as u32,
        madv: None,
        ..e.clone()
    };
    Some(Vma {
        entry,
        file: None,
        shmem: None,
        plugin_only: Some("memfd_secret mapping"),
    })
}

/// The `/proc/PID/maps` name of anonymous hugetlb memory (`MAP_ANONYMOUS|MAP_HUGETLB`): a
/// file of the kernel's internal hugetlbfs mount.
pub const ANON_HUGETLB_NAME: &str = "/anon_hugepage (deleted)";

/// `MAP_HUGE_*` bits of a huge page size (`log2(size) << MAP_HUGE_SHIFT`); none for an
/// unknown or ordinary page size (then `MAP_HUGETLB` takes the default huge page size).
pub fn map_huge_bits(page_size: Option<u64>) -> u32 {
    match page_size {
        Some(s) if s.is_power_of_two() && s > PAGE_SIZE => {
            s.trailing_zeros() << libc::MAP_HUGE_SHIFT
        }
        _ => 0,
    }
}

/// Anonymous hugetlb memory, as CRIU records it: `MAP_ANONYMOUS|MAP_HUGETLB` with the huge
/// page size in the `MAP_HUGE_*` bits; shared memory is a shmem object (`shmid` its inode,
/// contents read through its `map_files` link), private memory has its pages dumped like any
/// private anonymous memory.
fn anon_hugetlb(pid: i32, m: &MapsEntry, e: &VmaEntry, vmf: &maps::VmFlags) -> Option<Vma> {
    if m.path != ANON_HUGETLB_NAME || !vmf.has("ht") || m.inode == 0 {
        return None;
    }
    let mut entry = VmaEntry {
        flags: e.flags
            | (libc::MAP_ANONYMOUS | libc::MAP_HUGETLB) as u32
            | map_huge_bits(m.page_size),
        ..e.clone()
    };
    let mut shmem = None;
    if m.shared {
        entry.status |= VMA_ANON_SHARED;
        entry.shmid = m.inode;
        shmem = Some(format!("/proc/{pid}/map_files/{:x}-{:x}", m.start, m.end));
    } else {
        entry.status |= VMA_ANON_PRIVATE;
    }
    Some(Vma {
        entry,
        file: None,
        shmem,
        plugin_only: None,
    })
}

/// The `/proc/PID/maps` name of an io_uring ring mapping (SQ/CQ ring, SQE array).
pub const IO_URING_NAME: &str = "anon_inode:[io_uring]";

/// An io_uring ring mapping: kernel memory of the ring, which only the ring's plugin can
/// bring back (a new ring mapped at the same address). Recorded, as secretmem, as the
/// anonymous shared placeholder the core maps at restore; no madvise bits (`VM_DONTEXPAND`
/// comes with the ring).
fn io_uring_ring(m: &MapsEntry, e: &VmaEntry) -> Option<Vma> {
    if m.path != IO_URING_NAME || !m.shared {
        return None;
    }
    let entry = VmaEntry {
        status: VMA_AREA_REGULAR | VMA_ANON_PRIVATE,
        flags: (libc::MAP_SHARED | libc::MAP_ANONYMOUS) as u32,
        madv: None,
        ..e.clone()
    };
    Some(Vma {
        entry,
        file: None,
        shmem: None,
        plugin_only: Some("io_uring ring mapping"),
    })
}

/// A mapping of a socket (`socket:[INO]`: a packet socket's rx/tx ring, CRIU's
/// `VMA_AREA_SOCKET`): kernel pages of the socket, which only the socket's plugin can map
/// again (the packet plugin, over a new ring). Recorded as the anonymous placeholder the
/// core maps at restore, shared or private as dumped; no madvise bits.
fn socket_ring(m: &MapsEntry, e: &VmaEntry) -> Option<Vma> {
    if !m.path.starts_with("socket:[") || m.inode == 0 {
        return None;
    }
    let sharing = if m.shared {
        libc::MAP_SHARED
    } else {
        libc::MAP_PRIVATE
    };
    let entry = VmaEntry {
        status: VMA_AREA_REGULAR | VMA_ANON_PRIVATE,
        flags: (sharing | libc::MAP_ANONYMOUS) as u32,
        madv: None,
        ..e.clone()
    };
    Some(Vma {
        entry,
        file: None,
        shmem: None,
        plugin_only: Some("socket mapping (packet socket ring)"),
    })
}

/// Build the VMA list of `pid` from smaps, CRIU style: stack guard page included, `[vvar]`
/// and `[vvar_vclock]` merged.
pub fn collect_vmas(pid: i32) -> Result<Vec<Vma>, DumpError> {
    let maps = maps::read_smaps(pid).map_err(|e| DumpError::proc(pid, "memory", e))?;
    let mut stat_link = |m: &MapsEntry| {
        let p = format!("/proc/{pid}/map_files/{:x}-{:x}", m.start, m.end);
        std::fs::metadata(p)
            .ok()
            .map(|md| (md.mode(), md.dev(), md.ino(), md.rdev()))
    };
    build_vmas(pid, &maps, &mut stat_link)
}

pub fn build_vmas(
    pid: i32,
    maps: &[MapsEntry],
    file_stat: &mut StatFn<'_>,
) -> Result<Vec<Vma>, DumpError> {
    let mut out: Vec<Vma> = Vec::with_capacity(maps.len());
    let mut prev_end = 0u64;
    let mut prev_name = "";
    for m in maps {
        if m.path == "[vvar_vclock]"
            && prev_name == "[vvar]"
            && out.last().is_some_and(|v| v.entry.end == m.start)
        {
            if let Some(v) = out.last_mut() {
                v.entry.end = m.end;
            }
            prev_end = m.end;
            prev_name = "[vvar_vclock]";
            continue;
        }
        let mut v = classify(pid, m, file_stat)?;
        // CRIU includes the guard page below a growsdown stack when there is room for it.
        if v.entry.flags & libc::MAP_GROWSDOWN as u32 != 0 && prev_end < v.entry.start {
            v.entry.start -= PAGE_SIZE;
        }
        prev_end = m.end;
        prev_name = m.path.as_str();
        out.push(v);
    }
    Ok(out)
}

/// Refuses a VMA only a plugin can dump that no plugin claimed (`claimed[i]` for
/// `vmas[i]`; empty: none claimed).
pub fn check_plugin_only(pid: i32, vmas: &[Vma], claimed: &[bool]) -> Result<(), DumpError> {
    for (i, v) in vmas.iter().enumerate() {
        let Some(what) = v.plugin_only else { continue };
        if claimed.get(i).copied().unwrap_or(false) {
            continue;
        }
        return Err(DumpError::Unsupported {
            pid,
            step: "memory",
            what: format!("{what} {:#x}-{:#x}", v.entry.start, v.entry.end),
            hint: "only a plugin can dump it: load the one that handles it (secretmem, io_uring \
                   or packet: built into criu, or libcriu_NAME.so with --plugin-dir)",
        });
    }
    Ok(())
}

/// A SysV shm segment outlives the tree only if it was not removed (IPC_RMID): else it dies
/// with the tree and a restore could not attach it again.
fn sysv_kept(pid: i32, shmid: u64, start: u64) -> Result<(), DumpError> {
    use crate::restore::sysv;
    let seg = sysv::segment_of(pid, shmid);
    if seg.is_some_and(|s| s.mode & sysv::SHM_DEST == 0) {
        return Ok(());
    }
    Err(DumpError::Unsupported {
        pid,
        step: "memory",
        what: format!(
            "SysV shm segment {shmid} attached at {start:#x}, {}",
            if seg.is_some() {
                "removed (IPC_RMID): it disappears with the tree"
            } else {
                "not in criu's IPC namespace"
            }
        ),
        hint: "segments are not saved (no IPC namespace dump): keep the segment until the restore (no IPC_RMID before the dump), or dump from inside the tree's IPC namespace",
    })
}

/// Whether CRIU would dump the pages of this VMA into the task's own pagemap (an AIO ring's
/// are, restored into the new ring).
pub fn privately_dumped(v: &Vma) -> bool {
    let s = v.entry.status;
    if s & VMA_AREA_AIORING != 0 {
        return true;
    }
    s & VMA_AREA_REGULAR != 0
        && s & (VMA_FILE_SHARED | VMA_AREA_SYSVIPC | VMA_AREA_VVAR | VMA_ANON_SHARED) == 0
        && s & (VMA_ANON_PRIVATE | VMA_FILE_PRIVATE) != 0
        && v.entry.end <= TASK_SIZE
}

/// mm_entry without vmas and exe_file_id (filled by the caller).
pub fn mm_entry(
    pid: i32,
    brk: u64,
    dumpable: i32,
    thp_disabled: bool,
) -> Result<MmEntry, DumpError> {
    let s = stat::read_stat(pid).map_err(|e| DumpError::proc(pid, "memory", e))?;
    let mut auxv = misc::read_auxv(pid).map_err(|e| DumpError::proc(pid, "memory", e))?;
    // CRIU keeps the pairs up to, not including, AT_NULL.
    if let Some(i) = auxv.chunks(2).position(|p| p[0] == 0) {
        auxv.truncate(i * 2);
    }
    Ok(MmEntry {
        mm_start_code: s.start_code,
        mm_end_code: s.end_code,
        mm_start_data: s.start_data,
        mm_end_data: s.end_data,
        mm_start_stack: s.start_stack,
        mm_start_brk: s.start_brk,
        mm_brk: brk,
        mm_arg_start: s.arg_start,
        mm_arg_end: s.arg_end,
        mm_env_start: s.env_start,
        mm_env_end: s.env_end,
        exe_file_id: 0,
        mm_saved_auxv: auxv,
        vmas: Vec::new(),
        dumpable: Some(dumpable),
        aios: Vec::new(),
        thp_disabled: Some(thp_disabled),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proc::maps::parse_smaps;

    const SMAPS: &str = "563461c43000-563461c44000 r--p 00000000 fe:00 100 /opt/s
VmFlags: rd mr mw me dw
56347a486000-56347a4a7000 rw-p 00000000 00:00 0 [heap]
VmFlags: rd wr mr mw me ac
7f55ef9ff000-7f55efa00000 ---p 00000000 00:00 0
VmFlags: mr mw me nr nh
7f55f090b000-7f55f090f000 r--p 00000000 00:00 0 [vvar]
VmFlags: rd mr pf io de dd sd
7f55f090f000-7f55f0911000 r--p 00000000 00:00 0 [vvar_vclock]
VmFlags: rd mr pf io de dd sd
7f55f0911000-7f55f0913000 r-xp 00000000 00:00 0 [vdso]
VmFlags: rd ex mr mw me de sd
7ffdb1d9e000-7ffdb1dbe000 rw-p 00000000 00:00 0 [stack]
VmFlags: rd wr mr mw me gd ac
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0 [vsyscall]
";

    #[test]
    fn wipeonfork_and_droppable() {
        let smaps = "\
7f55ef9ff000-7f55efa00000 rw-p 00000000 00:00 0
VmFlags: rd wr mr mw me ac wf
7f55efa00000-7f55efa02000 rw-p 00000000 00:00 0
VmFlags: rd wr mr mw me nr wf nh dp
";
        let maps = parse_smaps(smaps).unwrap();
        let mut st = |_: &MapsEntry| None;
        let v = build_vmas(1, &maps, &mut st).unwrap();
        assert_eq!(v[0].entry.madv, Some(1 << libc::MADV_WIPEONFORK));
        assert_eq!(
            v[0].entry.flags,
            (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u32
        );
        assert_eq!(
            v[1].entry.flags,
            (libc::MAP_DROPPABLE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE) as u32
        );
        assert_eq!(
            v[1].entry.madv,
            Some((1 << libc::MADV_WIPEONFORK) | (1 << libc::MADV_NOHUGEPAGE))
        );
    }

    #[test]
    fn like_criu_sample() {
        let maps = parse_smaps(SMAPS).unwrap();
        let mut st = |_: &MapsEntry| Some((libc::S_IFREG | 0o755, 0xfe00, 100, 0));
        let v = build_vmas(1, &maps, &mut st).unwrap();
        assert_eq!(v.len(), 7);
        let file = &v[0];
        assert_eq!(file.entry.status, VMA_AREA_REGULAR | VMA_FILE_PRIVATE);
        assert_eq!(file.entry.fdflags, Some(0));
        assert_eq!(file.entry.flags, libc::MAP_PRIVATE as u32);
        assert!(file.file.is_some());
        assert_eq!(
            v[1].entry.status,
            VMA_AREA_REGULAR | VMA_AREA_HEAP | VMA_ANON_PRIVATE
        );
        assert_eq!(
            v[1].entry.flags,
            (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u32
        );
        assert_eq!(v[1].entry.fdflags, None);
        assert_eq!(v[2].entry.madv, Some(0x8000));
        assert_eq!(
            v[2].entry.flags & libc::MAP_NORESERVE as u32,
            libc::MAP_NORESERVE as u32
        );
        // vvar + vvar_vclock as one 6-page VVAR area.
        assert_eq!(
            (v[3].entry.start, v[3].entry.end),
            (0x7f55f090b000, 0x7f55f0911000)
        );
        assert_eq!(
            v[3].entry.status,
            VMA_AREA_REGULAR | VMA_ANON_PRIVATE | VMA_AREA_VVAR
        );
        assert_eq!(v[3].entry.madv, Some(0x10000));
        assert_eq!(
            v[4].entry.status,
            VMA_AREA_REGULAR | VMA_AREA_VDSO | VMA_ANON_PRIVATE
        );
        // Stack: guard page included, MAP_GROWSDOWN, no STACK bit (CRIU does not set it).
        assert_eq!(v[5].entry.start, 0x7ffdb1d9d000);
        assert_eq!(
            v[5].entry.flags,
            (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_GROWSDOWN) as u32
        );
        assert_eq!(v[5].entry.status, VMA_AREA_REGULAR | VMA_ANON_PRIVATE);
        assert_eq!(v[6].entry.status, VMA_AREA_VSYSCALL | VMA_ANON_PRIVATE);
        assert!(privately_dumped(&v[0]) && privately_dumped(&v[1]) && privately_dumped(&v[4]));
        assert!(!privately_dumped(&v[3]) && !privately_dumped(&v[6]));
    }

    #[test]
    fn refusals() {
        // A memfd on the shmem device is a file mapping: the fd plugins dump its file.
        let maps = parse_smaps(
            "1000-2000 rw-s 00000000 00:01 5 /memfd:x (deleted)\nVmFlags: rd wr sh mr mw me ms\n3000-4000 rw-p 00001000 00:01 5 /memfd:x (deleted)\n",
        )
        .unwrap();
        let dev = shmem_dev().unwrap();
        let mut st = |_: &MapsEntry| Some((libc::S_IFREG | 0o600, dev, 5, 0));
        let v = build_vmas(1, &maps, &mut st).unwrap();
        assert_eq!(v[0].entry.status, VMA_AREA_REGULAR | VMA_FILE_SHARED);
        assert_eq!(v[0].entry.fdflags, Some(libc::O_RDWR as u32));
        assert_eq!(v[0].file.as_ref().map(|f| f.ino), Some(5));
        assert!(!privately_dumped(&v[0]) && v[0].shmem.is_none());
        assert_eq!(v[1].entry.status, VMA_AREA_REGULAR | VMA_FILE_PRIVATE);
        assert_eq!(v[1].entry.pgoff, 0x1000);
        assert!(privately_dumped(&v[1]));
        let maps = parse_smaps("1000-2000 rw-s 00000000 00:01 5 /dev/zero (deleted)\n").unwrap();
        let v = build_vmas(1, &maps, &mut st).unwrap();
        assert_eq!(v[0].entry.status, VMA_AREA_REGULAR | VMA_ANON_SHARED);
        assert_eq!(v[0].entry.shmid, 5);
        assert_eq!(
            v[0].entry.flags,
            (libc::MAP_SHARED | libc::MAP_ANONYMOUS) as u32
        );
        assert!(v[0].shmem.is_some() && !privately_dumped(&v[0]));
        let maps = parse_smaps("1000-2000 rw-p 00000000 00:05 5 /dev/dri/card0\n").unwrap();
        let mut st = |_: &MapsEntry| Some((libc::S_IFCHR | 0o600, 5, 5, 0));
        assert!(build_vmas(1, &maps, &mut st).is_err());
        let mut none = |_: &MapsEntry| None;
        let maps = parse_smaps("1000-2000 rw-p 00000000 08:01 5 /gone\n").unwrap();
        assert!(build_vmas(1, &maps, &mut none).is_err());
    }

    #[test]
    fn anonymous_hugetlb_memory() {
        let smaps = "7f0000000000-7f0000400000 rw-s 00000000 00:10 4242 /anon_hugepage (deleted)
KernelPageSize:     2048 kB
VmFlags: rd wr sh mr mw me ms de ht
7f0000400000-7f0000800000 rw-p 00000000 00:10 4243 /anon_hugepage (deleted)
KernelPageSize:     2048 kB
VmFlags: rd wr mr mw me de ht
";
        let maps = parse_smaps(smaps).unwrap();
        // No map_files lookup is needed for them.
        let mut none = |_: &MapsEntry| None;
        let v = build_vmas(7, &maps, &mut none).unwrap();
        let huge = (libc::MAP_ANONYMOUS | libc::MAP_HUGETLB) as u32 | (21 << 26);
        assert_eq!(v[0].entry.status, VMA_AREA_REGULAR | VMA_ANON_SHARED);
        assert_eq!(v[0].entry.flags, libc::MAP_SHARED as u32 | huge);
        assert_eq!(v[0].entry.shmid, 4242);
        assert_eq!(
            v[0].shmem.as_deref(),
            Some("/proc/7/map_files/7f0000000000-7f0000400000")
        );
        assert_eq!(v[1].entry.status, VMA_AREA_REGULAR | VMA_ANON_PRIVATE);
        assert_eq!(v[1].entry.flags, libc::MAP_PRIVATE as u32 | huge);
        assert!(privately_dumped(&v[1]) && !privately_dumped(&v[0]));
        assert_eq!(map_huge_bits(Some(1 << 30)), 30 << 26);
        assert_eq!(map_huge_bits(Some(4096)), 0);
        assert_eq!(map_huge_bits(None), 0);
    }

    #[test]
    fn secretmem_is_left_to_a_plugin() {
        let smaps = "7f00000000-7f00006000 rw-s 00000000 00:0e 77 /secretmem (deleted)\nVmFlags: rd wr sh mr mw ms lo dd\n";
        let maps = parse_smaps(smaps).unwrap();
        // The kernel gives no map_files link: the core must not need one.
        let mut none = |_: &MapsEntry| None;
        let v = build_vmas(1, &maps, &mut none).unwrap();
        assert_eq!(v[0].plugin_only, Some("memfd_secret mapping"));
        assert_eq!(v[0].entry.status, VMA_AREA_REGULAR | VMA_ANON_PRIVATE);
        assert_eq!(
            v[0].entry.flags,
            (libc::MAP_SHARED | libc::MAP_ANONYMOUS) as u32
        );
        assert_eq!(v[0].entry.madv, None);
        let e = check_plugin_only(9, &v, &[]).unwrap_err().to_string();
        assert!(e.contains("secretmem"), "{e}");
        assert!(e.contains("0x7f00000000"), "{e}");
        check_plugin_only(9, &v, &[true]).unwrap();
    }

    #[test]
    fn own_vmas() {
        let v = collect_vmas(std::process::id() as i32).unwrap();
        assert!(v.iter().any(|v| v.has(VMA_AREA_HEAP) || v.file.is_some()));
        assert!(v.iter().any(|v| v.file.is_some()));
    }
}
