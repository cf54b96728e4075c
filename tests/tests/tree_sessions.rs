//! Three levels, two sessions, several process groups, one of them with a dead leader: after
//! dump, kill and restore every process has the pid, ppid, pgid and sid recorded before the
//! dump (the root's parent apart) and runs again.

use std::time::{Duration, Instant};

use criu_core::restore::{RestoreOptions, RestoreOutcome, restore};
use criu_tests::{PidGuard, ScratchDir, skip_unless_root, wait_pid_gone};
use restore_common::{spawn_bg, tick_counts, tree_ids};

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
    let mut guards = vec![PidGuard::new(root)];
    // Everyone ticks once the tree is complete (d is gone by then).
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
    assert!(
        groups.iter().any(|g| !before.contains_key(g)),
        "no group with a dead leader: {before:?}"
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
