//! A tree of 200 processes (binary, 8 levels) is dumped, killed and restored: every process
//! comes back at its PID under the same parent and runs again.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use criu_core::restore::{RestoreOptions, RestoreOutcome, restore};
use criu_tests::{PidGuard, ScratchDir, skip_unless_root, wait_pid_gone};
use restore_common::{lines, spawn_bg};

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

/// SIGKILL every process first, so that guards dropped afterwards find parents gone and
/// their children reaped by init instead of waiting for each zombie in turn.
fn kill_all<'a>(pids: impl Iterator<Item = &'a i32>) {
    for &p in pids {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
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
    let mut guards = vec![PidGuard::new(root)];
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
    guards.extend(
        before
            .keys()
            .filter(|&&p| p != root)
            .map(|&p| PidGuard::new(p)),
    );

    let mut d = criu_core::dump::DumpOptions::new(root, &images);
    d.leave_stopped = true;
    let t0 = Instant::now();
    criu_core::dump::dump(&d).unwrap_or_else(|e| panic!("dump: {e:?}"));
    eprintln!("dump of {N} processes: {:?}", t0.elapsed());
    kill_all(before.keys());
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
    let t0 = Instant::now();
    let outcome = restore(&opts).unwrap_or_else(|e| panic!("restore: {e}\n{e:?}"));
    eprintln!("restore of {N} processes: {:?}", t0.elapsed());
    let _g: Vec<PidGuard> = before.keys().map(|&p| PidGuard::new(p)).collect();
    assert_eq!(outcome, RestoreOutcome::Detached { root });
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
            kill_all(before.keys());
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
