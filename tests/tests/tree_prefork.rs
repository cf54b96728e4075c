//! A pre-fork server (root + 8 workers sharing one pipe and one MAP_SHARED anonymous
//! counter page) is dumped, killed and restored: the shared total keeps equalling the sum of
//! the per-worker counts and grows, every worker's count grows (each still writes into the
//! one page the root reads), and the tokens keep flowing through the one pipe.

use std::time::{Duration, Instant};

use criu_tests::{ScratchDir, TreeGuard, skip_unless_root};
use restore_common::{descendants, dump_stopped_and_kill, lines, restore_detached, spawn_bg};

mod restore_common;
use criu_plugin_files as _;
use criu_plugin_pipes as _;

/// (total, sum, per-worker) of the last check line; asserts every check balanced.
fn last_check(report: &std::path::Path) -> Option<(u64, u64, Vec<u64>)> {
    let mut last = None;
    for l in lines(report) {
        let mut it = l.split_whitespace();
        if it.next() != Some("check") {
            continue;
        }
        let f: Vec<&str> = it.filter_map(|f| f.split_once('=').map(|x| x.1)).collect();
        if f.len() != 3 {
            continue;
        }
        let total: u64 = f[0].parse().unwrap_or(0);
        let sum: u64 = f[1].parse().unwrap_or(u64::MAX);
        assert_eq!(total, sum, "shared total and worker counts disagree: {l}");
        let each: Vec<u64> = f[2].split(',').filter_map(|v| v.parse().ok()).collect();
        last = Some((total, sum, each));
    }
    last
}

#[test]
fn tree_prefork_server_shares_pipe_and_counter() {
    if skip_unless_root("tree_prefork_server_shares_pipe_and_counter") {
        return;
    }
    let scratch = ScratchDir::new("tree-prefork");
    let report = scratch.path().join("report.txt");
    let images = scratch.path().join("images");
    std::fs::create_dir_all(&images).expect("images dir");
    let root = spawn_bg(
        env!("CARGO_BIN_EXE_wl_tree_prefork"),
        &[report.to_str().expect("utf-8")],
    );
    let mut guards = TreeGuard::new([root]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while last_check(&report).is_none() || descendants(root).len() < 9 {
        assert!(Instant::now() < deadline, "server not running");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pids = descendants(root);
    assert_eq!(pids.len(), 9, "{pids:?}");
    guards.extend(pids.iter().copied());

    dump_stopped_and_kill(root, &images, guards);
    let (at_total, _, at_each) = last_check(&report).expect("a check line");

    let _g = restore_detached(&images, root, pids.iter().copied());
    assert_eq!(descendants(root), pids);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (total, _, each) = last_check(&report).expect("check");
        let all_grew = each.len() == at_each.len() && each.iter().zip(&at_each).all(|(n, a)| n > a);
        if total >= at_total + 600 && all_grew {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "stalled: total {total} (at dump {at_total}), workers {each:?} (at dump {at_each:?})"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
