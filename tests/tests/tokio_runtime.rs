//! A Rust tokio program (multi-threaded runtime: workers in epoll_wait and futex waits, the
//! eventfd waker, timers, the blocking pool, a pipe in epoll) dumped, killed and restored at
//! its pid, twice in a row: its counters must keep growing and its own checks keep holding.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use criu_core::dump::{DumpOptions, dump};
use criu_core::restore::{RestoreOptions, RestoreOutcome, restore};
use criu_tests::{PidGuard, ScratchDir, skip_unless_root};

use criu_plugin_epoll as _;
use criu_plugin_eventfd as _;
use criu_plugin_files as _;
use criu_plugin_pipes as _;

mod restore_common;

use restore_common::{lines, spawn_bg, tids_of, wait_lines};

/// The `key=value` numbers of a report line.
fn counters(line: &str) -> BTreeMap<String, u64> {
    line.split_whitespace()
        .filter_map(|w| w.split_once('='))
        .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
        .collect()
}

/// Waits for `n` more lines than `after`; every line so far must be healthy.
fn wait_ok(report: &Path, after: usize, n: usize) -> Vec<String> {
    let l = wait_lines(report, after + n, Duration::from_secs(30));
    assert!(
        l.iter().all(|l| l.ends_with(" ok")),
        "workload reports a failure: {:?}",
        l.iter().filter(|l| !l.ends_with(" ok")).collect::<Vec<_>>()
    );
    l
}

const KEYS: [&str; 4] = ["ticks", "pings", "blocking", "piped"];

#[test]
fn tokio_multi_thread_runtime_round_trips() {
    if skip_unless_root("tokio_multi_thread_runtime_round_trips") {
        return;
    }
    let work = ScratchDir::new("tokio-rt");
    let report = work.path().join("report");
    let pid = spawn_bg(
        "setsid",
        &[env!("CARGO_BIN_EXE_wl_tokio"), report.to_str().unwrap()],
    );
    let mut guard = Some(PidGuard::new(pid));
    wait_ok(&report, 0, 6);
    for round in 0..2 {
        let l = wait_ok(&report, lines(&report).len(), 2);
        let before = counters(l.last().unwrap());
        for k in KEYS {
            assert!(before[k] > 0, "round {round}: {k} never moved: {before:?}");
        }
        let tids = tids_of(pid);
        assert!(tids.len() >= 4, "a runtime of 3 workers: {tids:?}");

        let imgs = ScratchDir::new(&format!("tokio-rt-imgs-{round}"));
        // Left stopped, then killed and reaped by the guard: after the first restore the
        // workload is our child.
        let mut dopts = DumpOptions::new(pid, imgs.path());
        dopts.leave_stopped = true;
        dump(&dopts).unwrap_or_else(|e| panic!("dump (round {round}): {e:?}"));
        drop(guard.take());
        assert!(
            criu_tests::wait_pid_gone(pid, Duration::from_secs(10)),
            "pid {pid} still taken"
        );
        let n = lines(&report).len();
        let out = restore(&RestoreOptions {
            images_dir: imgs.path().to_path_buf(),
            detach: true,
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("restore (round {round}): {e:?}"));
        assert_eq!(out, RestoreOutcome::Detached { root: pid });
        guard = Some(PidGuard::new(pid));
        // (The blocking pool may have grown or shrunk between our look and the freeze.)
        let now = tids_of(pid);
        assert!(
            now.len() >= 4 && now[0] == pid,
            "threads after restore: {now:?}"
        );

        // Every activity goes on from where it was.
        let l = wait_ok(&report, n, 8);
        let after = counters(l.last().unwrap());
        assert_eq!(after["pid"], pid as u64);
        for k in KEYS {
            assert!(
                after[k] > before[k],
                "round {round}: {k} stuck after restore: {before:?} -> {after:?}"
            );
        }
    }
    drop(guard);
}
