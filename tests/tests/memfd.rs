//! One process with memfds in every form (`wl_memfd`): two descriptions of one sealed memfd
//! with their own offsets and flags, shared and private mappings of it, and a second memfd
//! reachable only through its mapping (fd closed) sealed F_SEAL_FUTURE_WRITE after mapping.
//! The workload checks itself before the dump and after the restore; the images are checked
//! to be CRIU's: MEMFD files.img entries, one memfd.img entry per inode, VMAs marked
//! VMA_AREA_MEMFD naming their file, the contents in pagemap-shmem-<inode>.img.

use std::path::Path;
use std::time::{Duration, Instant};

use criu_core::dump::{DumpOptions, dump};
use criu_core::image::{ImageDir, ImageKind};
use criu_core::restore::{RestoreOptions, restore};
use criu_proto::images::{FdTypes, FileEntry, MemfdInodeEntry, MmEntry};
use criu_tests::{PidGuard, ScratchDir, Workload, skip_unless_root, wait_pid_gone};

use criu_plugin_files as _;
use criu_plugin_memfd as _;
use criu_plugin_pipes as _;

const AREA_MEMFD: u32 = 1 << 14;
const FILE_PRIVATE: u32 = 1 << 6;
const FILE_SHARED: u32 = 1 << 7;

fn verdict(path: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(t) = std::fs::read_to_string(path)
            && t.ends_with('\n')
        {
            return t.trim().to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no verdict in {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn usr1(pid: i32) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .expect("SIGUSR1");
}

#[test]
fn memfd_fds_mappings_and_seals_survive_dump_and_restore() {
    if skip_unless_root("memfd_fds_mappings_and_seals_survive_dump_and_restore") {
        return;
    }
    let work = ScratchDir::new("memfd-work");
    let v = work.path().join("verdict");
    let mut w = Workload::start(
        Path::new(env!("CARGO_BIN_EXE_wl_memfd")),
        &[v.to_str().expect("utf-8")],
        "ready",
        Duration::from_secs(20),
    );
    let pid = w.pid();
    // The workload is right about itself before anything else.
    usr1(pid);
    w.wait_line("ok", Duration::from_secs(20));
    std::fs::remove_file(&v).expect("verdict");

    let d = ScratchDir::new("memfd-images");
    dump(&DumpOptions::new(pid, d.path())).expect("dump");
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
    assert!(wait_pid_gone(pid, Duration::from_secs(10)));
    drop(w);
    check_images(d.path(), pid);

    let opts = RestoreOptions {
        images_dir: d.path().to_path_buf(),
        detach: true,
        shell_job: true,
        ..RestoreOptions::default()
    };
    restore(&opts).unwrap_or_else(|e| panic!("restore: {e}: {e:?}"));
    let _restored = PidGuard::new(pid);
    usr1(pid);
    assert_eq!(verdict(&v), "ok");
}

fn check_images(dir: &Path, pid: i32) {
    let img = ImageDir::open(dir).expect("images");
    let files: Vec<FileEntry> = img.read_all(ImageKind::Files, 0).expect("files.img");
    let inodes: Vec<MemfdInodeEntry> = img.read_all(ImageKind::MemfdInode, 0).expect("memfd.img");
    let mut names: Vec<&str> = inodes.iter().map(|i| i.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["wl-closed", "wl-memfd"], "one entry per inode");
    let open = inodes
        .iter()
        .find(|i| i.name == "wl-memfd")
        .expect("wl-memfd");
    assert_eq!(open.size, 3 * 4096 + 123);
    assert_eq!(open.seals, (libc::F_SEAL_GROW | libc::F_SEAL_SHRINK) as u32);
    assert_eq!(open.mode.map(|m| m & 0o7777), Some(0o640));
    let closed = inodes
        .iter()
        .find(|i| i.name == "wl-closed")
        .expect("wl-closed");
    assert_eq!(
        closed.seals,
        (libc::F_SEAL_FUTURE_WRITE | libc::F_SEAL_SEAL) as u32
    );
    for i in &inodes {
        assert!(dir.join(format!("pagemap-shmem-{}.img", i.shmid)).exists());
    }
    let memfd_files: Vec<_> = files
        .iter()
        .filter(|f| f.r#type == FdTypes::Memfd as i32)
        .collect();
    // Descriptions: fd A, fd B, one per inode for the mappings (as CRIU's map entries).
    assert!(memfd_files.len() >= 3, "{memfd_files:?}");
    let positions: Vec<u64> = memfd_files
        .iter()
        .filter_map(|f| f.memfd.as_ref().map(|m| m.pos))
        .collect();
    assert!(positions.contains(&1234) && positions.contains(&77));
    let mm: MmEntry = img.read_single(ImageKind::Mm, pid as u64).expect("mm");
    let memfd_vmas: Vec<_> = mm
        .vmas
        .iter()
        .filter(|v| v.status & AREA_MEMFD != 0)
        .collect();
    assert_eq!(memfd_vmas.len(), 3, "M, P and C");
    assert_eq!(
        memfd_vmas
            .iter()
            .filter(|v| v.status & FILE_PRIVATE != 0)
            .count(),
        1
    );
    for v in memfd_vmas {
        assert!(v.status & (FILE_PRIVATE | FILE_SHARED) != 0);
        let f = files
            .iter()
            .find(|f| u64::from(f.id) == v.shmid)
            .expect("the vma's file");
        assert_eq!(f.r#type, FdTypes::Memfd as i32);
    }
}

/// Free 2 MiB huge pages in the kernel's pool.
fn free_huge_pages() -> u64 {
    std::fs::read_to_string("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn hugetlb_memfd_survives_dump_and_restore() {
    if skip_unless_root("hugetlb_memfd_survives_dump_and_restore") {
        return;
    }
    if free_huge_pages() < 1 {
        eprintln!(
            "skipping hugetlb_memfd_survives_dump_and_restore: no free 2 MiB huge page \
             (raise /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages)"
        );
        return;
    }
    let work = ScratchDir::new("memfd-huge");
    let v = work.path().join("verdict");
    let w = Workload::start(
        Path::new(env!("CARGO_BIN_EXE_wl_memfd_huge")),
        &[v.to_str().expect("utf-8")],
        "ready",
        Duration::from_secs(20),
    );
    let pid = w.pid();
    let d = ScratchDir::new("memfd-huge-images");
    dump(&DumpOptions::new(pid, d.path())).expect("dump");
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
    assert!(wait_pid_gone(pid, Duration::from_secs(10)));
    drop(w);
    let img = ImageDir::open(d.path()).expect("images");
    let inodes: Vec<MemfdInodeEntry> = img.read_all(ImageKind::MemfdInode, 0).expect("memfd.img");
    assert_eq!(
        inodes[0].hugetlb_flag,
        Some(libc::MFD_HUGETLB | (21 << libc::MFD_HUGE_SHIFT))
    );
    let opts = RestoreOptions {
        images_dir: d.path().to_path_buf(),
        detach: true,
        shell_job: true,
        ..RestoreOptions::default()
    };
    restore(&opts).unwrap_or_else(|e| panic!("restore: {e}: {e:?}"));
    let _restored = PidGuard::new(pid);
    usr1(pid);
    assert_eq!(verdict(&v), "ok");
}

/// Anonymous shared memory reached as a file (`wl_shmem_priv`, zdtm's shmemfd-priv): an fd
/// opened on the area's `map_files` link, a private mapping and a second shared mapping of
/// that fd; and an object held by an fd alone, cut to 5 bytes (zdtm's shmemfd). After the
/// restore the private mapping still reads the object where it did not write (the workload
/// checks it), so it maps the very object the shared mappings map. The
/// images are CRIU's form of it: a MEMFD inode named `/dev/zero` (our field marks it
/// anonymous shared memory) and the private VMA `VMA_AREA_MEMFD | VMA_FILE_PRIVATE`.
#[test]
fn anon_shared_memory_mapped_privately_stays_one_object() {
    if skip_unless_root("anon_shared_memory_mapped_privately_stays_one_object") {
        return;
    }
    let work = ScratchDir::new("shmem-priv-work");
    let v = work.path().join("verdict");
    let mut w = Workload::start(
        Path::new(env!("CARGO_BIN_EXE_wl_shmem_priv")),
        &[v.to_str().expect("utf-8")],
        "ready",
        Duration::from_secs(20),
    );
    let pid = w.pid();
    usr1(pid);
    w.wait_line("ok", Duration::from_secs(20));
    std::fs::remove_file(&v).expect("verdict");

    let d = ScratchDir::new("shmem-priv-images");
    dump(&DumpOptions::new(pid, d.path())).expect("dump");
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
    assert!(wait_pid_gone(pid, Duration::from_secs(10)));
    drop(w);

    let img = ImageDir::open(d.path()).expect("images");
    let inodes: Vec<MemfdInodeEntry> = img.read_all(ImageKind::MemfdInode, 0).expect("memfd.img");
    assert_eq!(inodes.len(), 2, "{inodes:?}");
    assert!(
        inodes
            .iter()
            .all(|i| i.name == "/dev/zero" && i.criu_rs_anon_shmem == Some(true))
    );
    assert!(inodes.iter().any(|i| i.size == 5), "{inodes:?}");
    let mm: MmEntry = img.read_single(ImageKind::Mm, pid as u64).expect("mm");
    let private = mm
        .vmas
        .iter()
        .filter(|v| v.status & (AREA_MEMFD | FILE_PRIVATE) == AREA_MEMFD | FILE_PRIVATE)
        .count();
    assert_eq!(private, 1, "the private mapping of the object");

    let opts = RestoreOptions {
        images_dir: d.path().to_path_buf(),
        detach: true,
        shell_job: true,
        ..RestoreOptions::default()
    };
    restore(&opts).unwrap_or_else(|e| panic!("restore: {e}: {e:?}"));
    let _restored = PidGuard::new(pid);
    usr1(pid);
    assert_eq!(verdict(&v), "ok");
}
