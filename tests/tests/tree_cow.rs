//! Copy-on-write sharing across a restore: a parent with 256 MiB of private anonymous
//! memory and 4 children that only read most of it (`wl_tree_cow`; some pages differ
//! between parent and children, some exist only in the parent). After dump, kill and restore
//! every process still sees its own content, and the tree's proportional set size (Pss,
//! from /proc/PID/smaps_rollup) stays about what it was: the pages are shared again rather
//! than copied five times. The numbers are printed.
//!
//! The same for a private file mapping (`wl_cow_file`, zdtm's cow01 `file_tcs`): pages the
//! parent rewrote before forking are the very same physical pages in parent and child after
//! the restore (their PFNs in /proc/PID/pagemap, which root reads), not two copies.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use criu_tests::{ScratchDir, TreeGuard, skip_unless_root};
use restore_common::{dump_stopped_and_kill, lines, restore_detached, spawn_bg};

mod restore_common;
use criu_plugin_files as _;
use criu_plugin_pipes as _;

/// pid -> (ticks ok, ticks bad).
fn ticks(report: &Path) -> BTreeMap<i32, (usize, usize)> {
    let mut m = BTreeMap::new();
    for l in lines(report) {
        let mut w = l.split_whitespace();
        if w.next() != Some("tick") {
            continue;
        }
        let (Some(pid), Some(word)) = (w.next().and_then(|p| p.parse().ok()), w.next()) else {
            continue;
        };
        let e = m.entry(pid).or_insert((0, 0));
        if word == "ok" {
            e.0 += 1;
        } else {
            e.1 += 1;
        }
    }
    m
}

/// Sum of Rss and Pss in KiB over `pids`.
fn rss_pss(pids: &BTreeSet<i32>) -> (u64, u64) {
    let mut sum = (0, 0);
    for p in pids {
        let text = std::fs::read_to_string(format!("/proc/{p}/smaps_rollup")).expect("smaps");
        for l in text.lines() {
            let mut w = l.split_whitespace();
            let (key, val) = (w.next(), w.next().and_then(|v| v.parse::<u64>().ok()));
            match (key, val) {
                (Some("Rss:"), Some(v)) => sum.0 += v,
                (Some("Pss:"), Some(v)) => sum.1 += v,
                _ => {}
            }
        }
    }
    sum
}

fn wait_all_ok(report: &Path, n: usize, min: usize) -> BTreeSet<i32> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let t = ticks(report);
        assert!(
            t.values().all(|v| v.1 == 0),
            "a process saw bad memory: {t:?}"
        );
        if t.len() == n && t.values().all(|v| v.0 >= min) {
            return t.keys().copied().collect();
        }
        assert!(Instant::now() < deadline, "not all ticking: {t:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn tree_cow_memory_after_restore() {
    if skip_unless_root("tree_cow_memory_after_restore") {
        return;
    }
    let scratch = ScratchDir::new("tree-cow");
    let report = scratch.path().join("report.txt");
    let images = scratch.path().join("images");
    std::fs::create_dir_all(&images).expect("images dir");
    let root = spawn_bg(
        env!("CARGO_BIN_EXE_wl_tree_cow"),
        &[report.to_str().expect("utf-8")],
    );
    let mut guards = TreeGuard::new([root]);
    let pids = wait_all_ok(&report, 5, 1);
    guards.extend(pids.iter().copied());
    let before = rss_pss(&pids);

    dump_stopped_and_kill(root, &images, guards);
    std::fs::write(&report, "").expect("truncate report");

    let t = Instant::now();
    let _g = restore_detached(&images, root, pids.iter().copied());
    let took = t.elapsed();
    assert_eq!(wait_all_ok(&report, 5, 2), pids);
    let after = rss_pss(&pids);
    let image_kib: u64 = std::fs::read_dir(&images)
        .expect("images")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("pages-"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len() / 1024)
        .sum();
    eprintln!(
        "tree_cow: 5 processes, 256 MiB written by the parent before forking 4 readers:\n  \
         before dump: Rss {} MiB, Pss {} MiB\n  after restore: Rss {} MiB, Pss {} MiB \
         (restore {:.2} s)\n  pages images: {} MiB",
        before.0 / 1024,
        before.1 / 1024,
        after.0 / 1024,
        after.1 / 1024,
        took.as_secs_f64(),
        image_kib / 1024
    );
    // Sharing kept: far below the 5 x 256 MiB a copy per process would cost.
    assert!(after.1 <= before.1 + (32 << 10), "{before:?} -> {after:?}");
}

/// PFN of each page of `n` pages at `addr` in `pid` (0 for a page not present).
fn pfns(pid: i32, addr: u64, n: u64) -> Vec<u64> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(format!("/proc/{pid}/pagemap")).expect("open pagemap");
    let mut buf = vec![0u8; (n * 8) as usize];
    f.read_exact_at(&mut buf, addr / 4096 * 8)
        .expect("read pagemap");
    buf.chunks(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
        .map(|e| if e >> 63 == 1 { e & ((1 << 55) - 1) } else { 0 })
        .collect()
}

#[test]
fn private_file_pages_stay_shared_with_the_child() {
    if skip_unless_root("private_file_pages_stay_shared_with_the_child") {
        return;
    }
    let scratch = ScratchDir::new("cow-file");
    let report = scratch.path().join("report.txt");
    let data = scratch.path().join("data");
    let images = scratch.path().join("images");
    std::fs::create_dir_all(&images).expect("images dir");
    let root = spawn_bg(
        env!("CARGO_BIN_EXE_wl_cow_file"),
        &[
            report.to_str().expect("utf-8"),
            data.to_str().expect("utf-8"),
        ],
    );
    let mut guards = TreeGuard::new([root]);
    let pids = wait_all_ok(&report, 2, 1);
    guards.extend(pids.iter().copied());
    let map = lines(&report)
        .into_iter()
        .find_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("map")).then(|| {
                let addr = u64::from_str_radix(w.next()?, 16).ok()?;
                Some((addr, w.next()?.parse::<i32>().ok()?))
            })?
        })
        .expect("the workload names its mapping");
    let (addr, child) = map;
    let shared = |what: &str| {
        let (p, c) = (pfns(root, addr, 64), pfns(child, addr, 64));
        let same: Vec<bool> = (0..64).map(|i| p[i] != 0 && p[i] == c[i]).collect();
        eprintln!(
            "{what}: {} of the 32 pages rewritten before the fork shared, {} of the 16 \
             rewritten after it",
            same[..32].iter().filter(|s| **s).count(),
            same[32..48].iter().filter(|s| **s).count()
        );
        same
    };
    let before = shared("before the dump");
    assert!(before[..32].iter().all(|s| *s), "not shared to begin with");

    dump_stopped_and_kill(root, &images, guards);
    std::fs::write(&report, "").expect("truncate report");
    let _g = restore_detached(&images, root, pids.iter().copied());
    assert_eq!(wait_all_ok(&report, 2, 2), pids);
    let after = shared("after the restore");
    assert!(
        after[..32].iter().all(|s| *s),
        "copy-on-write sharing of the private file mapping lost: {:?}",
        &after[..32]
    );
    assert!(after[32..48].iter().all(|s| !*s), "rewritten pages shared");
}
