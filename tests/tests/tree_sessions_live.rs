//! Sessions led by a live task of the tree: tasks that forked children and then called
//! `setsid()` (two levels of it, a zombie and a dead group leader in the old session, a
//! group joined across subtrees), and a session led by a zombie whose members went to the
//! root, a child subreaper. After dump, kill and restore every process has the pid,
//! ppid, pgid and sid recorded before the dump and the live ones run again.

use std::time::{Duration, Instant};

use criu_tests::{ScratchDir, TreeGuard, skip_unless_root};
use restore_common::{
    TreeIds, assert_same_tree, dump_tree_and_kill, restore_detached, spawn_bg, tick_counts,
    tree_ids, wait_ticks,
};

mod restore_common;
use criu_plugin_files as _;
use criu_plugin_pipes as _;

/// 20 processes, two of them zombies.
const TREE_SIZE: usize = 20;
const TICKERS: usize = TREE_SIZE - 2;

fn wait_ready(root: i32, report: &std::path::Path) -> TreeIds {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let t = tree_ids(root);
        if t.len() == TREE_SIZE && tick_counts(report).len() == TICKERS {
            return t;
        }
        assert!(Instant::now() < deadline, "tree not ready: {t:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Tasks in a session that is neither their own nor their parent's, led by a task of the
/// tree: the case this test is about.
fn left_behind(t: &TreeIds) -> usize {
    t.iter()
        .filter(|(p, (ppid, _, sid))| {
            t.get(ppid)
                .is_some_and(|par| *sid != **p && *sid != par.2 && t.contains_key(sid))
        })
        .count()
}

#[test]
fn tree_sessions_left_by_setsid() {
    if skip_unless_root("tree_sessions_left_by_setsid") {
        return;
    }
    let scratch = ScratchDir::new("tree-sessions-live");
    let report = scratch.path().join("report.txt");
    let images = scratch.path().join("images");
    std::fs::create_dir_all(&images).expect("images dir");
    let root = spawn_bg(
        env!("CARGO_BIN_EXE_wl_tree_sessions_live"),
        &[report.to_str().expect("utf-8")],
    );
    let mut guards = TreeGuard::new([root]);
    let before = wait_ready(root, &report);
    guards.extend(before.keys().copied());
    let sessions: std::collections::BTreeSet<i32> = before.values().map(|v| v.2).collect();
    assert_eq!(sessions.len(), 5, "{before:?}");
    // b1, b2, b3, zz under a; z, v, e under y; m1, m2, m3 under the root.
    assert_eq!(left_behind(&before), 10, "{before:?}");
    assert!(
        before.values().any(|v| !before.contains_key(&v.1)),
        "no group with a dead leader: {before:?}"
    );

    dump_tree_and_kill(root, &images, &before, guards, &report);

    let _g = restore_detached(&images, root, before.keys().copied());
    assert_same_tree(root, &before, &tree_ids(root));
    wait_ticks(&report, TICKERS, 2);
}
