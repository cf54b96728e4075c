//! Three levels, two sessions, several process groups, one of them with a dead leader: after
//! dump, kill and restore every process has the pid, ppid, pgid and sid recorded before the
//! dump (the root's parent apart) and runs again.

use criu_tests::{ScratchDir, TreeGuard, skip_unless_root};
use restore_common::{
    assert_same_tree, dump_tree_and_kill, restore_detached, spawn_bg, tree_ids, wait_ticks,
    wait_tree_ready,
};

mod restore_common;
use criu_plugin_files as _;
use criu_plugin_pipes as _;

const TREE_SIZE: usize = 9;

#[test]
fn tree_sessions_and_groups() {
    if skip_unless_root("tree_sessions_and_groups") {
        return;
    }
    let scratch = ScratchDir::new("tree-sessions");
    let report = scratch.path().join("report.txt");
    let images = scratch.path().join("images");
    std::fs::create_dir_all(&images).expect("images dir");
    let root = spawn_bg(
        env!("CARGO_BIN_EXE_wl_tree_sessions"),
        &[report.to_str().expect("utf-8")],
    );
    let mut guards = TreeGuard::new([root]);
    // Everyone ticks once the tree is complete (d is gone by then).
    let before = wait_tree_ready(root, &report, TREE_SIZE);
    guards.extend(before.keys().copied());
    let sessions: std::collections::BTreeSet<i32> = before.values().map(|v| v.2).collect();
    let groups: std::collections::BTreeSet<i32> = before.values().map(|v| v.1).collect();
    assert_eq!(sessions.len(), 2, "{before:?}");
    assert!(
        groups.iter().any(|g| !before.contains_key(g)),
        "no group with a dead leader: {before:?}"
    );

    dump_tree_and_kill(root, &images, &before, guards, &report);

    let _g = restore_detached(&images, root, before.keys().copied());
    assert_same_tree(root, &before, &tree_ids(root));
    wait_ticks(&report, TREE_SIZE, 2);
}
