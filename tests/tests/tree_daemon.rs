//! A daemon-style double fork: the members of a session whose leader exited, re-parented to
//! the root (a child subreaper), in several process groups (two with a dead leader), three
//! levels deep. After dump, kill and restore every process has the pid, ppid, pgid and sid
//! recorded before the dump (the root's parent apart) and runs again; the dead leaders' pids
//! are free again (their helpers exited and were reaped).

use std::time::{Duration, Instant};

use criu_core::restore::{RestoreOptions, RestoreOutcome, restore};
use criu_tests::{PidGuard, ScratchDir, skip_unless_root, wait_pid_gone};
use restore_common::{spawn_bg, tick_counts, tree_ids};

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
    let mut guards = vec![PidGuard::new(root)];
    // Everyone ticks once the tree is complete (l and g4 are gone by then).
    let deadline = Instant::now() + Duration::from_secs(20);
    let before = loop {
        let t = tree_ids(root);
        if t.len() == TREE_SIZE && tick_counts(&report).len() == TREE_SIZE {
            break t;
        }
        assert!(Instant::now() < deadline, "tree not ready: {t:?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    guards.extend(before.keys().map(|&p| PidGuard::new(p)));
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

    let mut d = criu_core::dump::DumpOptions::new(root, &images);
    d.leave_stopped = true;
    criu_core::dump::dump(&d).unwrap_or_else(|e| panic!("dump: {e:?}"));
    // Every process first: guards then find no zombie waiting for a live parent.
    for &p in before.keys() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    drop(guards);
    for &p in before.keys() {
        assert!(
            wait_pid_gone(p, Duration::from_secs(10)),
            "pid {p} still taken"
        );
    }
    std::fs::write(&report, "").expect("truncate report");

    let opts = RestoreOptions {
        images_dir: images.clone(),
        detach: true,
        ..RestoreOptions::default()
    };
    let outcome = restore(&opts).unwrap_or_else(|e| panic!("restore: {e}\n{e:?}"));
    let _g: Vec<PidGuard> = before.keys().map(|&p| PidGuard::new(p)).collect();
    assert_eq!(outcome, RestoreOutcome::Detached { root });
    let after = tree_ids(root);
    for (p, v) in &before {
        let w = after
            .get(p)
            .unwrap_or_else(|| panic!("pid {p} missing: {after:?}"));
        let ppid = if *p == root { v.0 } else { w.0 };
        assert_eq!(*v, (ppid, w.1, w.2), "pid {p}");
    }
    assert_eq!(after.len(), before.len(), "{after:?}");
    for p in dead_sessions.iter().chain(&dead_groups) {
        assert!(
            wait_pid_gone(*p, Duration::from_secs(5)),
            "helper {p} still there"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while tick_counts(&report)
        .iter()
        .filter(|(_, n)| **n >= 2)
        .count()
        < TREE_SIZE
    {
        assert!(
            Instant::now() < deadline,
            "not all run: {:?}",
            tick_counts(&report)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for &p in before.keys() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}
