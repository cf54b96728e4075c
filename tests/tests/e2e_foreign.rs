//! Programs we did not build with cargo: a C program compiled with gcc at test time (pthreads,
//! glibc's layout) and python3 running a thread pool. Each is dumped, killed, restored at its
//! PID and must keep reporting healthy ticks.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use criu_core::restore::{RestoreOptions, RestoreOutcome, restore};
use criu_tests::{PidGuard, ScratchDir, skip_unless_root};
use restore_common::{dump_and_kill, lines, spawn_bg, tids_of};

mod restore_common;
use criu_plugin_files as _;
use criu_plugin_pipes as _;

fn workload(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("workloads")
        .join(name)
}

/// Whether `tool` runs; in CI (env CI set) its absence is a failure, elsewhere a skip.
fn have(tool: &str, test: &str) -> bool {
    let ok = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: {tool} is missing in CI"
        );
        eprintln!("skipping {test}: {tool} is not installed");
    }
    ok
}

/// Waits until the report has more than `after` lines and returns the last one.
fn next_tick(report: &Path, after: usize) -> (usize, String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let l = lines(report);
        if l.len() > after {
            return (l.len(), l.last().cloned().unwrap_or_default());
        }
        assert!(
            Instant::now() < deadline,
            "no new tick in {}",
            report.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Dump, kill, restore detached; the workload must go on ticking "ok" at the same pid with
/// the same threads.
fn round_trip(pid: i32, report: &Path, images: &Path) {
    let guard = PidGuard::new(pid);
    let (n, last) = next_tick(report, 2);
    assert!(last.contains(" ok "), "before dump: {last}");
    let tids = tids_of(pid);
    dump_and_kill(pid, images);
    let before = lines(report).len().max(n);
    let out = restore(&RestoreOptions {
        images_dir: images.to_path_buf(),
        detach: true,
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("restore: {e:?}"));
    assert_eq!(out, RestoreOutcome::Detached { root: pid });
    assert_eq!(tids_of(pid), tids, "threads after restore");
    for _ in 0..3 {
        let (_, last) = next_tick(report, before);
        assert!(
            last.contains(" ok ") && last.contains(&format!("pid={pid}")),
            "{last}"
        );
        std::thread::sleep(Duration::from_millis(60));
    }
    let (_, last) = next_tick(report, before + 2);
    assert!(last.contains(" ok "), "after restore: {last}");
    drop(guard);
}

#[test]
fn gcc_built_pthreads_program_round_trip() {
    if skip_unless_root("gcc_built_pthreads_program_round_trip")
        || !have("gcc", "gcc_built_pthreads_program_round_trip")
    {
        return;
    }
    let dir = ScratchDir::new("foreign-c");
    let exe = dir.path().join("pthreads");
    let built = Command::new("gcc")
        .args(["-O1", "-pthread", "-o"])
        .arg(&exe)
        .arg(workload("pthreads.c"))
        .status()
        .expect("run gcc");
    assert!(built.success(), "gcc failed");
    let report = dir.path().join("report");
    let images = dir.path().join("images");
    std::fs::create_dir(&images).expect("mkdir");
    let pid = spawn_bg(
        "setsid",
        &[
            exe.to_str().expect("utf-8"),
            report.to_str().expect("utf-8"),
        ],
    );
    round_trip(pid, &report, &images);
}

#[test]
fn python3_thread_pool_round_trip() {
    if skip_unless_root("python3_thread_pool_round_trip")
        || !have("python3", "python3_thread_pool_round_trip")
    {
        return;
    }
    let dir = ScratchDir::new("foreign-py");
    let report = dir.path().join("report");
    let images = dir.path().join("images");
    std::fs::create_dir(&images).expect("mkdir");
    let script = workload("threadpool.py");
    let pid = spawn_bg(
        "setsid",
        &[
            "python3",
            script.to_str().expect("utf-8"),
            report.to_str().expect("utf-8"),
        ],
    );
    round_trip(pid, &report, &images);
}
