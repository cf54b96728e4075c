//! A process tree (root, two children in different process groups, a grandchild) is dumped,
//! killed and restored: every process comes back at its PID, under the same parent, in the
//! same group and session, and keeps running; a pipe shared by two of them stays one pipe.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use criu_core::dump::{DumpOptions, dump};
use criu_core::restore::{RestoreOptions, RestoreOutcome, restore};
use criu_tests::{PidGuard, ScratchDir, skip_unless_root, wait_pid_gone};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use restore_common::{lines, spawn_bg};

mod restore_common;
use criu_plugin_files as _;
use criu_plugin_pipes as _;

/// One process's last report line: ppid, pgid, sid, tick count, role, pipe bytes received.
type Proc = (i32, i32, i32, u64, String, u64);

/// pid -> its last report line.
fn procs(report: &std::path::Path) -> BTreeMap<i32, Proc> {
    let mut m = BTreeMap::new();
    for l in lines(report) {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() != 8 || f[0] != "tick" {
            continue;
        }
        let num = |s: &str, k: &str| -> i64 {
            s.strip_prefix(k).and_then(|v| v.parse().ok()).unwrap_or(-1)
        };
        let pid: i32 = f[1].parse().unwrap_or(-1);
        m.insert(
            pid,
            (
                num(f[2], "ppid=") as i32,
                num(f[3], "pgid=") as i32,
                num(f[4], "sid=") as i32,
                num(f[5], "n=") as u64,
                f[6].trim_start_matches("role=").to_string(),
                num(f[7], "got=") as u64,
            ),
        );
    }
    m
}

fn wait_procs(report: &std::path::Path, n: usize) -> BTreeMap<i32, Proc> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let p = procs(report);
        if p.len() >= n {
            return p;
        }
        assert!(Instant::now() < deadline, "only {p:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn e2e_restore_process_tree() {
    if skip_unless_root("e2e_restore_process_tree") {
        return;
    }
    let scratch = ScratchDir::new("e2e-tree");
    let report = scratch.path().join("report.txt");
    let images = scratch.path().join("images");
    std::fs::create_dir_all(&images).expect("images dir");
    let root = spawn_bg(
        env!("CARGO_BIN_EXE_wl_tree"),
        &[report.to_str().expect("utf-8")],
    );
    let before = wait_procs(&report, 4);
    let guards: Vec<PidGuard> = before.keys().map(|&p| PidGuard::new(p)).collect();
    std::thread::sleep(Duration::from_millis(200));
    let before = procs(&report);

    let mut d = DumpOptions::new(root, &images);
    d.leave_stopped = true;
    dump(&d).unwrap_or_else(|e| panic!("dump: {e:?}"));
    for &p in before.keys() {
        let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
    }
    for &p in before.keys() {
        assert!(
            wait_pid_gone(p, Duration::from_secs(10)),
            "pid {p} still taken"
        );
    }
    drop(guards);
    let at_dump = procs(&report);

    let opts = RestoreOptions {
        images_dir: images.clone(),
        detach: true,
        ..RestoreOptions::default()
    };
    let outcome = restore(&opts).unwrap_or_else(|e| panic!("restore: {e}\n{e:?}"));
    let _restored: Vec<PidGuard> = before.keys().map(|&p| PidGuard::new(p)).collect();
    assert_eq!(outcome, RestoreOutcome::Detached { root });

    // Every process ticks again, with the same parent, group and session.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = procs(&report);
        // Child `a` must also keep receiving what the root writes: one pipe shared across
        // the two restored processes.
        let (a_before, a_now) = at_dump
            .iter()
            .find(|(_, v)| v.4 == "a")
            .map(|(p, v)| (v.5, now.get(p).map_or(0, |w| w.5)))
            .expect("child a");
        let all_moved = at_dump
            .iter()
            .all(|(p, v)| now.get(p).is_some_and(|w| w.3 > v.3 + 2))
            && a_now > a_before + 2;
        if all_moved {
            for (p, v) in &before {
                let w = &now[p];
                // The root's parent is whoever restored it (as with CRIU); below it, the
                // tree is the dumped one.
                let ppid = if *p == root { v.0 } else { w.0 };
                assert_eq!((v.0, v.1, v.2, &v.4), (ppid, w.1, w.2, &w.4), "pid {p}");
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not all processes resumed (pipe to a: {a_before} -> {a_now}): {now:?} vs {at_dump:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
