//! Helpers of the inet socket tests: the C workload `inet_sockets` (a server and a client
//! with a TCP connection full in both directions, listeners, UDP queues), dump and restore
//! with the TCP options.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use criu_core::dump::{DumpOptions, dump};
use criu_core::restore::{RestoreOptions, RestoreOutcome, restore};
use criu_tests::{ScratchDir, TreeGuard};

use crate::restore_common::{descendants, lines, spawn_bg, wait_lines};
use crate::unix_common::build_c;

/// A running `inet_sockets` tree, its files and the guard that kills it.
pub struct Workload {
    pub dir: ScratchDir,
    pub report: PathBuf,
    pub go: PathBuf,
    pub images: PathBuf,
    pub root: i32,
    pub pids: Vec<i32>,
    pub guard: TreeGuard,
}

/// Starts the workload and waits until both sides filled their queues.
pub fn start(name: &str) -> Option<Workload> {
    let dir = ScratchDir::new(name);
    let exe = build_c("inet_sockets", dir.path())?;
    let report = dir.path().join("report");
    let go = dir.path().join("go");
    let images = dir.path().join("images");
    std::fs::create_dir(&images).expect("mkdir");
    let root = spawn_bg(
        "setsid",
        &[
            exe.to_str().expect("utf-8"),
            report.to_str().expect("utf-8"),
            go.to_str().expect("utf-8"),
        ],
    );
    let mut guard = TreeGuard::new([root]);
    let ready = wait_lines(&report, 2, Duration::from_secs(30));
    assert!(
        ready.iter().all(|l| l.starts_with("filled")),
        "workload setup: {ready:?}"
    );
    let pids = descendants(root);
    assert_eq!(pids.len(), 2, "server and client: {pids:?}");
    guard.extend(pids.iter().copied());
    Some(Workload {
        dir,
        report,
        go,
        images,
        root,
        pids,
        guard,
    })
}

/// Dump options of `w` with `--tcp-established`.
pub fn established(w: &Workload) -> DumpOptions {
    let mut d = DumpOptions::new(w.root, &w.images);
    d.tcp_established = true;
    d
}

/// The error chain of `e` as one line.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        msg += &format!(": {s}");
        src = s.source();
    }
    msg
}

/// Dumps `w` (tasks left stopped), kills it and waits for its pids to be free.
pub fn dump_and_kill(mut w: Workload, d: &mut DumpOptions) -> Workload {
    d.leave_stopped = true;
    dump(d).unwrap_or_else(|e| panic!("dump: {}", chain(&e)));
    let guard = std::mem::replace(&mut w.guard, TreeGuard::new([]));
    let taken = guard.kill_and_wait(Duration::from_secs(10));
    assert!(taken.is_empty(), "pids still taken: {taken:?}");
    w
}

/// Restores `images` with `--tcp-established` (detached); the tree is guarded.
pub fn restore_established(w: &mut Workload, images: &Path) {
    let opts = RestoreOptions {
        images_dir: images.to_path_buf(),
        detach: true,
        tcp_established: true,
        ..RestoreOptions::default()
    };
    let outcome = restore(&opts);
    w.guard.extend([w.root]);
    w.guard.extend(w.pids.iter().copied());
    let outcome = outcome.unwrap_or_else(|e| panic!("restore: {}", chain(&e)));
    assert_eq!(outcome, RestoreOutcome::Detached { root: w.root });
}

/// Lets the tree go on and waits for both sides' verdicts; `restored` tells the workload
/// that it went through a restore (a corked datagram is gone then).
pub fn go_and_verify(w: &Workload, restored: bool) {
    let word = if restored { "restored" } else { "running" };
    std::fs::write(&w.go, word).expect("go");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let all = lines(&w.report);
        if all.iter().any(|l| l.starts_with("FAIL")) {
            panic!("workload failed: {all:#?}");
        }
        if all.iter().any(|l| l == "ok server") && all.iter().any(|l| l == "ok client") {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no verdict from the workload: {all:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Restores `images` (with `--tcp-established` when `established`), which must fail naming
/// every one of `want`, with no process of the tree left.
pub fn restore_refused(w: &Workload, images: &Path, established: bool, want: &[&str]) {
    let opts = RestoreOptions {
        images_dir: images.to_path_buf(),
        detach: true,
        tcp_established: established,
        ..RestoreOptions::default()
    };
    let result = restore(&opts);
    let _guard = TreeGuard::new(w.pids.iter().copied());
    let err = result.expect_err("the restore must be refused");
    let msg = chain(&err);
    for s in want {
        assert!(msg.contains(s), "{s:?} missing in: {msg}");
    }
    for p in &w.pids {
        assert!(
            !criu_tests::pid_exists(*p),
            "pid {p} exists after a refused restore"
        );
    }
}
