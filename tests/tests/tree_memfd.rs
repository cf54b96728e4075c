//! memfd-backed shared memory in a tree: a parent maps a memfd MAP_SHARED, closes its fd and
//! forks four workers that count in their own slots and watch the others'. After dump, kill
//! and restore every worker keeps counting from where it was, still sees every other
//! worker's counter move, and a token one worker writes after the restore is seen by all
//! the others: one memfd inode shared by the whole tree, not copies.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use criu_core::image::{ImageDir, ImageKind};
use criu_proto::images::{FdTypes, FileEntry, MmEntry};
use criu_tests::{ScratchDir, TreeGuard, skip_unless_root};
use restore_common::{dump_stopped_and_kill, lines, restore_detached, spawn_bg};

mod restore_common;
use criu_plugin_files as _;
use criu_plugin_memfd as _;
use criu_plugin_pipes as _;

const WORKERS: usize = 4;
const AREA_MEMFD: u32 = 1 << 14;
const FILE_SHARED: u32 = 1 << 7;

/// Per worker pid: (highest own count, number of `ok` ticks).
fn ticks(report: &Path) -> BTreeMap<i32, (u64, usize)> {
    let mut m = BTreeMap::new();
    for l in lines(report) {
        let w: Vec<&str> = l.split_whitespace().collect();
        if let ["tick", pid, count, word] = w[..]
            && let (Ok(pid), Ok(count)) = (pid.parse(), count.parse::<u64>())
        {
            let e = m.entry(pid).or_insert((0, 0));
            e.0 = e.0.max(count);
            e.1 += usize::from(word == "ok");
        }
    }
    m
}

fn wait_oks(report: &Path, min: usize) -> BTreeMap<i32, (u64, usize)> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let m = ticks(report);
        if m.len() == WORKERS && m.values().all(|(_, oks)| *oks >= min) {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "not every worker sees the others: {m:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn tree_memfd_stays_shared() {
    if skip_unless_root("tree_memfd_stays_shared") {
        return;
    }
    let scratch = ScratchDir::new("tree-memfd");
    let report = scratch.path().join("report.txt");
    let images = scratch.path().join("images");
    std::fs::create_dir_all(&images).expect("images dir");
    let root = spawn_bg(
        env!("CARGO_BIN_EXE_wl_tree_memfd"),
        &[report.to_str().expect("utf-8")],
    );
    let mut guards = TreeGuard::new([root]);
    let before = wait_oks(&report, 2);
    let workers: Vec<i32> = before.keys().copied().collect();
    guards.extend(workers.iter().copied());
    let mut pids = vec![root];
    pids.extend(&workers);

    dump_stopped_and_kill(root, &images, guards);
    let at_dump = ticks(&report);
    check_images(&images, &pids);
    std::fs::write(&report, "").expect("truncate report");

    let _g = restore_detached(&images, root, pids.iter().copied());
    let after = wait_oks(&report, 3);
    assert_eq!(after.keys().copied().collect::<Vec<_>>(), workers);
    for (pid, (count, _)) in &after {
        // The counts went on from the restored contents, not from a fresh zeroed file.
        assert!(
            *count > at_dump[pid].0,
            "worker {pid}: {count} after, {} at dump",
            at_dump[pid].0
        );
    }
    // One write after the restore, seen by every other worker.
    std::fs::write(format!("{}.go", report.display()), "").expect("go");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen: Vec<i32> = lines(&report)
            .iter()
            .filter_map(|l| l.strip_prefix("seen ")?.parse().ok())
            .collect();
        if seen.len() == WORKERS - 1 {
            break;
        }
        assert!(Instant::now() < deadline, "token seen only by {seen:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// CRIU's form: every task's counter VMA is FILE_SHARED|AREA_MEMFD naming one MEMFD entry,
/// whose inode is in memfd.img once.
fn check_images(images: &Path, pids: &[i32]) {
    let dir = ImageDir::open(images).expect("images");
    let files: Vec<FileEntry> = dir.read_all(ImageKind::Files, 0).expect("files.img");
    let mut ids = Vec::new();
    for &pid in pids {
        let mm: MmEntry = dir.read_single(ImageKind::Mm, pid as u64).expect("mm");
        let v = mm
            .vmas
            .iter()
            .find(|v| v.status & AREA_MEMFD != 0)
            .unwrap_or_else(|| panic!("pid {pid}: no memfd vma"));
        assert_eq!(v.status & FILE_SHARED, FILE_SHARED);
        let e = files
            .iter()
            .find(|f| u64::from(f.id) == v.shmid)
            .expect("the vma's file entry");
        assert_eq!(e.r#type, FdTypes::Memfd as i32);
        ids.push(e.memfd.as_ref().expect("memfd").inode_id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one inode");
    let inodes: Vec<criu_proto::images::MemfdInodeEntry> =
        dir.read_all(ImageKind::MemfdInode, 0).expect("memfd.img");
    assert_eq!(inodes.len(), 1);
    assert_eq!(inodes[0].name, "tree-counters");
    assert_eq!(inodes[0].size, 4096);
    assert!(
        images
            .join(format!("pagemap-shmem-{}.img", inodes[0].shmid))
            .exists()
    );
}
