//! A tree of 200 processes (binary, 8 levels) is dumped, killed and restored: every process
//! comes back at its PID under the same parent and runs again.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use criu_tests::{ScratchDir, TreeGuard, skip_unless_root};
use restore_common::{dump_stopped_and_kill, lines, restore_detached, spawn_bg};

mod restore_common;
use criu_plugin_files as _;
use criu_plugin_pipes as _;

const N: usize = 200;

/// pid -> ppid reported by each process that ticked.
fn ticks(report: &std::path::Path) -> BTreeMap<i32, i32> {
    let mut m = BTreeMap::new();
    for l in lines(report) {
        let f: Vec<i32> = l
            .split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect();
        if l.starts_with("tick ") && f.len() == 2 {
            m.insert(f[0], f[1]);
        }
    }
    m
}

#[test]
fn tree_of_200_processes() {
    if skip_unless_root("tree_of_200_processes") {
        return;
    }
    let scratch = ScratchDir::new("tree-many");
    let report = scratch.path().join("report.txt");
    let images = scratch.path().join("images");
    std::fs::create_dir_all(&images).expect("images dir");
    let root = spawn_bg(
        env!("CARGO_BIN_EXE_wl_tree_many"),
        &[report.to_str().expect("utf-8"), &N.to_string()],
    );
    let mut guards = TreeGuard::new([root]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let before = loop {
        let t = ticks(&report);
        if t.len() == N {
            break t;
        }
        assert!(
            Instant::now() < deadline,
            "only {} processes ticked",
            t.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    guards.extend(before.keys().copied());

    let t0 = Instant::now();
    dump_stopped_and_kill(root, &images, guards);
    eprintln!("dump (and kill) of {N} processes: {:?}", t0.elapsed());
    std::fs::write(&report, "").expect("truncate report");

    let t0 = Instant::now();
    let _g = restore_detached(&images, root, before.keys().copied());
    eprintln!("restore of {N} processes: {:?}", t0.elapsed());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = ticks(&report);
        if now.len() == N {
            for (p, pp) in &before {
                if *p != root {
                    assert_eq!(now.get(p), Some(pp), "parent of {p}");
                }
            }
            let pids: BTreeSet<_> = now.keys().collect();
            assert_eq!(pids, before.keys().collect(), "pids");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {} processes run again",
            now.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
