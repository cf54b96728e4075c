//! A daemon-style double fork: the members of a session whose leader exited, re-parented to
//! the root (a child subreaper), in several process groups (two with a dead leader), three
//! levels deep. After dump, kill and restore every process has the pid, ppid, pgid and sid
//! recorded before the dump (the root's parent apart) and runs again; the dead leaders' pids
//! are free again (their helpers exited and were reaped).

use std::time::Duration;

use criu_tests::{ScratchDir, TreeGuard, skip_unless_root, wait_pid_gone};
use restore_common::{
    assert_same_tree, dump_tree_and_kill, restore_detached, spawn_bg, tree_ids, wait_ticks,
    wait_tree_ready,
};

mod restore_common;
use criu_plugin_files as _;
use criu_plugin_pipes as _;

const TREE_SIZE: usize = 7;

#[test]
fn tree_session_with_dead_leader() {
    if skip_unless_root("tree_session_with_dead_leader") {
        return;
    }
    let scratch = ScratchDir::new("tree-daemon");
    let report = scratch.path().join("report.txt");
    let images = scratch.path().join("images");
    std::fs::create_dir_all(&images).expect("images dir");
    let root = spawn_bg(
        env!("CARGO_BIN_EXE_wl_tree_daemon"),
        &[report.to_str().expect("utf-8")],
    );
    let mut guards = TreeGuard::new([root]);
    // Everyone ticks once the tree is complete (l and g4 are gone by then).
    let before = wait_tree_ready(root, &report, TREE_SIZE);
    guards.extend(before.keys().copied());
    let sessions: std::collections::BTreeSet<i32> = before.values().map(|v| v.2).collect();
    let groups: std::collections::BTreeSet<i32> = before.values().map(|v| v.1).collect();
    assert_eq!(sessions.len(), 2, "{before:?}");
    let dead_sessions: Vec<i32> = sessions
        .iter()
        .copied()
        .filter(|s| !before.contains_key(s))
        .collect();
    assert_eq!(dead_sessions.len(), 1, "{before:?}");
    let dead_groups: Vec<i32> = groups
        .iter()
        .copied()
        .filter(|g| !before.contains_key(g))
        .collect();
    assert_eq!(dead_groups.len(), 2, "{before:?}");
    // The members hang below the root, which is not in their session.
    assert!(
        before
            .iter()
            .any(|(_, v)| v.0 == root && v.2 == dead_sessions[0]),
        "{before:?}"
    );

    dump_tree_and_kill(root, &images, &before, guards, &report);

    let _g = restore_detached(&images, root, before.keys().copied());
    assert_same_tree(root, &before, &tree_ids(root));
    for p in dead_sessions.iter().chain(&dead_groups) {
        assert!(
            wait_pid_gone(*p, Duration::from_secs(5)),
            "helper {p} still there"
        );
    }
    wait_ticks(&report, TREE_SIZE, 2);
}
