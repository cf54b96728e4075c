//! A shell pipeline `sh -c 'producer | filter | consumer'` (in its own session) is dumped,
//! killed and restored: the four processes come back, the pipes keep their buffered data and
//! the consumer's sequence continues with no gap.

use std::time::{Duration, Instant};

use criu_tests::{ScratchDir, TreeGuard, skip_unless_root};
use restore_common::{descendants, dump_stopped_and_kill, lines, restore_detached, spawn_bg};

mod restore_common;
use criu_plugin_files as _;
use criu_plugin_pipes as _;

/// (lines, last number, bad) of the consumer's last report.
fn progress(report: &std::path::Path) -> (u64, u64, u64) {
    let all = lines(report);
    for l in &all {
        assert!(l.ends_with(" bad=0"), "sequence broken: {l}");
    }
    all.last()
        .and_then(|l| {
            let v: Vec<u64> = l
                .split_whitespace()
                .filter_map(|f| f.split_once('=')?.1.parse().ok())
                .collect();
            (v.len() == 3).then(|| (v[0], v[1], v[2]))
        })
        .unwrap_or((0, 0, 0))
}

#[test]
fn tree_shell_pipeline_continues() {
    if skip_unless_root("tree_shell_pipeline_continues") {
        return;
    }
    let scratch = ScratchDir::new("tree-pipe");
    let report = scratch.path().join("report.txt");
    let images = scratch.path().join("images");
    std::fs::create_dir_all(&images).expect("images dir");
    let wl = env!("CARGO_BIN_EXE_wl_tree_pipe");
    let script = format!(
        "'{wl}' producer | '{wl}' filter | '{wl}' consumer '{}'",
        report.display()
    );
    // setsid(1) execs in place (a background job is no group leader): the pid is sh's.
    let root = spawn_bg("setsid", &["sh", "-c", &script]);
    let mut guards = TreeGuard::new([root]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while progress(&report).0 < 100 || descendants(root).len() < 4 {
        assert!(Instant::now() < deadline, "pipeline not running");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pids = descendants(root);
    assert_eq!(pids.len(), 4, "{pids:?}");
    guards.extend(pids.iter().copied());

    dump_stopped_and_kill(root, &images, guards);
    let at_dump = progress(&report);

    let _g = restore_detached(&images, root, pids.iter().copied());
    assert_eq!(descendants(root), pids);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = progress(&report);
        if now.1 > at_dump.1 + 200 {
            // Every line arrived once and in order: count and last number stay equal.
            assert_eq!(now.0, now.1, "lines lost or repeated: {now:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "stalled: {now:?} (at dump {at_dump:?})"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
