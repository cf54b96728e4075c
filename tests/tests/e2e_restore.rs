//! Dump a running workload, kill it, restore it at the same PID/TIDs and let it prove it
//! continued: its memory checksum, FPU results and counters are checked by the workload
//! itself and reported in a file.

use std::time::Duration;

use criu_core::restore::{RestoreOptions, RestoreOutcome, restore};
use criu_tests::{PidGuard, ScratchDir, skip_unless_root};
use restore_common::{dump_and_kill, lines, spawn_bg, tids_of, wait_lines};

mod restore_common;
// Links the built-in plugins so `builtin_plugins()` sees them (regular files, pipes).
use criu_plugin_files as _;
use criu_plugin_pipes as _;

/// One report line: tick number, pid, mem, fp, per-thread counters, pipe, bytes read.
type Tick = (u64, i32, String, String, Vec<u64>, String, u64, String);

/// Parses `tick <n> pid=<pid> mem=<m> fp=<f> c=<a,b,...> pipe=<p> rd=<r>`.
fn tick(line: &str) -> Option<Tick> {
    let mut it = line.split_whitespace();
    if it.next()? != "tick" {
        return None;
    }
    let n = it.next()?.parse().ok()?;
    let pid = it.next()?.strip_prefix("pid=")?.parse().ok()?;
    let mem = it.next()?.strip_prefix("mem=")?.to_string();
    let fp = it.next()?.strip_prefix("fp=")?.to_string();
    let c = it
        .next()?
        .strip_prefix("c=")?
        .split(',')
        .map(|x| x.parse().ok())
        .collect::<Option<Vec<u64>>>()?;
    let pipe = it.next()?.strip_prefix("pipe=")?.to_string();
    let rd = it.next()?.strip_prefix("rd=")?.parse().ok()?;
    let shm = it.next()?.strip_prefix("shm=")?.to_string();
    Some((n, pid, mem, fp, c, pipe, rd, shm))
}

fn run_counter(threads: usize, modes: &str) {
    let with_pipe = modes.contains("pipe");
    let with_shm = modes.contains("shm");
    let scratch = ScratchDir::new(&format!("e2e-counter-{threads}"));
    let report = scratch.path().join("report.txt");
    let images = scratch.path().join("images");
    std::fs::create_dir_all(&images).expect("images dir");

    let pid = spawn_bg(
        env!("CARGO_BIN_EXE_wl_counter"),
        &[
            report.to_str().expect("utf-8 path"),
            &threads.to_string(),
            modes,
        ],
    );
    let guard = PidGuard::new(pid);
    let before = wait_lines(&report, 4, Duration::from_secs(20));
    let ready = before[0].clone();
    assert!(ready.starts_with(&format!("ready {pid} ")), "{ready}");
    // The workers report their TIDs; the pipe reader (if any) is counted by /proc.
    let workers: Vec<i32> = ready
        .split("tids=")
        .nth(1)
        .expect("tids")
        .split(',')
        .map(|t| t.parse().expect("tid"))
        .collect();
    let want_tids = tids_of(pid);
    assert!(
        workers.iter().all(|t| want_tids.contains(t)),
        "{workers:?} {want_tids:?}"
    );
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).expect("exe");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline");

    dump_and_kill(pid, &images);
    drop(guard);
    let at_dump = lines(&report);
    let last = at_dump
        .iter()
        .rev()
        .find_map(|l| tick(l))
        .expect("a tick before dump");

    let opts = RestoreOptions {
        images_dir: images.clone(),
        detach: true,
        ..RestoreOptions::default()
    };
    let outcome = restore(&opts).unwrap_or_else(|e| panic!("restore: {e}\n{e:?}"));
    let _restored = PidGuard::new(pid);
    assert_eq!(outcome, RestoreOutcome::Detached { root: pid });

    let after = wait_lines(&report, at_dump.len() + 6, Duration::from_secs(20));
    let new: Vec<_> = after[at_dump.len()..]
        .iter()
        .filter_map(|l| tick(l))
        .collect();
    assert!(new.len() >= 6, "{:?}", &after[at_dump.len()..]);
    let mut prev = last.clone();
    for t in &new {
        assert_eq!(
            t.0,
            prev.0 + 1,
            "tick numbers continue: {t:?} after {prev:?}"
        );
        assert_eq!(t.1, pid);
        assert_eq!((t.2.as_str(), t.3.as_str()), ("ok", "ok"), "{t:?}");
        assert_eq!(t.4.len(), threads.max(1));
        assert_eq!(t.5, if with_pipe { "ok" } else { "none" }, "{t:?}");
        assert_eq!(t.7, if with_shm { "ok" } else { "none" }, "{t:?}");
        for (a, b) in t.4.iter().zip(&prev.4) {
            assert!(a >= b, "counters never go back: {t:?} after {prev:?}");
        }
        prev = t.clone();
    }
    if with_pipe {
        // The reader blocked in read(2) at dump time resumed its syscall and got new bytes.
        assert!(prev.6 > last.6, "reader stuck: {prev:?} vs {last:?}");
    }
    // Every thread made progress after the restore.
    for (i, (a, b)) in prev.4.iter().zip(&last.4).enumerate() {
        assert!(a > b, "thread {i} did not advance: {prev:?} vs {last:?}");
    }
    assert_eq!(tids_of(pid), want_tids, "same TIDs");
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/exe")).expect("exe"),
        exe
    );
    assert_eq!(
        std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline"),
        cmdline
    );
}

#[test]
fn e2e_restore_single_thread() {
    if skip_unless_root("e2e_restore_single_thread") {
        return;
    }
    run_counter(1, "");
}

#[test]
fn e2e_restore_three_threads() {
    if skip_unless_root("e2e_restore_three_threads") {
        return;
    }
    run_counter(3, "");
}

#[test]
fn e2e_restore_with_a_pipe() {
    if skip_unless_root("e2e_restore_with_a_pipe") {
        return;
    }
    run_counter(2, "pipe");
}

#[test]
fn e2e_restore_with_shared_memory() {
    if skip_unless_root("e2e_restore_with_shared_memory") {
        return;
    }
    run_counter(2, "pipe,shm");
}
