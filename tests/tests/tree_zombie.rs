//! A parent with three zombie children (exit 42, killed by SIGTERM, killed by SIGKILL) and a
//! stopped child with SIGSTOPs still queued is dumped, killed and restored: the zombies come
//! back as zombies at their PIDs, the stopped child comes back stopped and a SIGCONT wakes
//! it, and the parent reaps the zombies with the dumped statuses.

use std::time::{Duration, Instant};

use criu_core::restore::{RestoreOptions, RestoreOutcome, restore};
use criu_tests::{PidGuard, ScratchDir, skip_unless_root, wait_pid_gone};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use restore_common::{lines, spawn_bg};

mod restore_common;
use criu_plugin_files as _;
use criu_plugin_pipes as _;

fn state(pid: i32) -> char {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, r)| r.trim().chars().next())
        })
        .unwrap_or('?')
}

fn wait_line(report: &std::path::Path, prefix: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(l) = lines(report)
            .into_iter()
            .find(|l| l.starts_with(prefix) || (prefix == "ok" && l.starts_with("bad")))
        {
            return l;
        }
        assert!(Instant::now() < deadline, "no {prefix:?} line");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn tree_zombie_and_stopped_child() {
    if skip_unless_root("tree_zombie_and_stopped_child") {
        return;
    }
    let scratch = ScratchDir::new("tree-zombie");
    let report = scratch.path().join("report.txt");
    let images = scratch.path().join("images");
    std::fs::create_dir_all(&images).expect("images dir");
    let root = spawn_bg(
        env!("CARGO_BIN_EXE_wl_tree_zombie"),
        &[report.to_str().expect("utf-8")],
    );
    let root_guard = PidGuard::new(root);
    let ready = wait_line(&report, "ready");
    let kids: Vec<i32> = ready
        .split_whitespace()
        .skip(1)
        .map(|f| f[2..].parse().expect("pid"))
        .collect();
    let (z, k, x, s) = (kids[0], kids[1], kids[2], kids[3]);
    let stopped_guard = PidGuard::new(s);

    let mut d = criu_core::dump::DumpOptions::new(root, &images);
    d.leave_stopped = true;
    criu_core::dump::dump(&d).unwrap_or_else(|e| panic!("dump: {e:?}"));
    // The parent first: its killed children are then reaped by init at once.
    drop(root_guard);
    drop(stopped_guard);
    for p in [root, z, k, x, s] {
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
    let _g: Vec<PidGuard> = [root, s].iter().map(|&p| PidGuard::new(p)).collect();
    assert_eq!(outcome, RestoreOutcome::Detached { root });
    assert_eq!(state(z), 'Z', "zombie {z}");
    assert_eq!(state(k), 'Z', "killed zombie {k}");
    assert_eq!(state(x), 'Z', "SIGKILLed zombie {x}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while state(s) != 'T' {
        assert!(Instant::now() < deadline, "child {s} in state {}", state(s));
        std::thread::sleep(Duration::from_millis(10));
    }
    kill(Pid::from_raw(root), Signal::SIGUSR1).expect("signal root");
    assert_eq!(wait_line(&report, "ok"), "ok");
}
