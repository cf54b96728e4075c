//! Helpers shared by the restore tests: start a workload outside our process tree, dump it,
//! read its report file.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use criu_core::dump::{DumpOptions, dump};
use criu_core::restore::{RestoreOptions, RestoreOutcome, restore};
use criu_tests::TreeGuard;
use criu_tests::wait_pid_gone;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The children of `pid` (its leader thread's), from /proc.
fn children(pid: i32) -> impl Iterator<Item = i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|k| k.parse::<i32>().ok())
        .collect::<Vec<_>>()
        .into_iter()
}

/// `root` and every process below it, sorted.
pub fn descendants(root: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let mut todo = vec![root];
    while let Some(p) = todo.pop() {
        out.push(p);
        todo.extend(children(p));
    }
    out.sort_unstable();
    out
}

/// pid -> (ppid, pgid, sid), the whole tree below and including `root`, from /proc.
pub fn tree_ids(root: i32) -> std::collections::BTreeMap<i32, (i32, i32, i32)> {
    let mut out = std::collections::BTreeMap::new();
    for p in descendants(root) {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let f: Vec<i32> = rest
            .split_whitespace()
            .skip(1)
            .take(3)
            .filter_map(|v| v.parse().ok())
            .collect();
        if f.len() == 3 {
            out.insert(p, (f[0], f[1], f[2]));
        }
    }
    out
}

/// How many `tick PID` lines each pid wrote to `report`.
pub fn tick_counts(report: &Path) -> std::collections::BTreeMap<i32, usize> {
    let mut m = std::collections::BTreeMap::new();
    for l in lines(report) {
        if let Some(p) = l.strip_prefix("tick ").and_then(|p| p.parse().ok()) {
            *m.entry(p).or_insert(0) += 1;
        }
    }
    m
}

/// pid -> (ppid, pgid, sid) of a tree.
pub type TreeIds = std::collections::BTreeMap<i32, (i32, i32, i32)>;

/// Waits until the tree below `root` has `size` processes and each wrote a tick to `report`;
/// returns its ids.
pub fn wait_tree_ready(root: i32, report: &Path, size: usize) -> TreeIds {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let t = tree_ids(root);
        if t.len() == size && tick_counts(report).len() == size {
            return t;
        }
        assert!(Instant::now() < deadline, "tree not ready: {t:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Dumps the tree of `root` left stopped, then kills every process `guard` holds (the whole
/// tree) and waits until each pid is free: the restore needs them.
pub fn dump_stopped_and_kill(root: i32, images: &Path, guard: TreeGuard) {
    let mut d = DumpOptions::new(root, images);
    d.leave_stopped = true;
    dump(&d).unwrap_or_else(|e| panic!("dump: {e:?}"));
    let taken = guard.kill_and_wait(Duration::from_secs(10));
    assert!(taken.is_empty(), "pids still taken: {taken:?}");
}

/// [`dump_stopped_and_kill`] of the tree `tree` (every pid guarded), then empties the
/// report for the restored run.
pub fn dump_tree_and_kill(
    root: i32,
    images: &Path,
    tree: &TreeIds,
    mut guard: TreeGuard,
    report: &Path,
) {
    guard.extend(tree.keys().copied());
    dump_stopped_and_kill(root, images, guard);
    std::fs::write(report, "").expect("truncate report");
}

/// Restores the images in `images` detached and checks `root` came back; `pids` (the tree)
/// are guarded before anything is asserted.
pub fn restore_detached(
    images: &Path,
    root: i32,
    pids: impl IntoIterator<Item = i32>,
) -> TreeGuard {
    let opts = RestoreOptions {
        images_dir: images.to_path_buf(),
        detach: true,
        ..RestoreOptions::default()
    };
    let outcome = restore(&opts);
    let mut guard = TreeGuard::new([root]);
    guard.extend(pids);
    let outcome = outcome.unwrap_or_else(|e| panic!("restore: {e}\n{e:?}"));
    assert_eq!(outcome, RestoreOutcome::Detached { root });
    guard
}

/// Every process of `before` has the same ppid, pgid and sid in `after` (the root's parent
/// apart), and there are no others.
pub fn assert_same_tree(root: i32, before: &TreeIds, after: &TreeIds) {
    for (p, v) in before {
        let w = after
            .get(p)
            .unwrap_or_else(|| panic!("pid {p} missing: {after:?}"));
        let ppid = if *p == root { v.0 } else { w.0 };
        assert_eq!(*v, (ppid, w.1, w.2), "pid {p}");
    }
    assert_eq!(after.len(), before.len(), "{after:?}");
}

/// Waits until `size` pids wrote at least `min` ticks to `report`.
pub fn wait_ticks(report: &Path, size: usize, min: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while tick_counts(report).values().filter(|n| **n >= min).count() < size {
        assert!(
            Instant::now() < deadline,
            "not all run: {:?}",
            tick_counts(report)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

pub fn wait_lines(path: &Path, n: usize, timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let l = lines(path);
        if l.len() >= n {
            return l;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {n} lines in {}: {l:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn tids_of(pid: i32) -> Vec<i32> {
    let mut v: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort_unstable();
    v
}

pub const CLOSE_FDS_AND_SPAWN: &str = r#"for f in /proc/$$/fd/*; do n=${f##*/}; if [ "$n" -gt 2 ]; then eval "exec $n>&-" 2>/dev/null; fi; done; "$0" "$@" </dev/null >/dev/null 2>&1 & echo $!"#;

/// Starts `program args...` through bash with only fds 0-2 (on /dev/null), in the
/// background: it is not our child, as with a real `criu dump -t PID`. Returns its pid.
pub fn spawn_bg(program: &str, args: &[&str]) -> i32 {
    let out = Command::new("bash")
        .arg("-c")
        .arg(CLOSE_FDS_AND_SPAWN)
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("start workload");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("workload pid")
}

/// Dumps `pid` into `images`, then kills it and waits until its PID is free.
pub fn dump_and_kill(pid: i32, images: &Path) {
    // Left stopped, then killed here, so the PID frees without us being its parent.
    let mut dopts = DumpOptions::new(pid, images);
    dopts.leave_stopped = true;
    dump(&dopts).unwrap_or_else(|e| panic!("dump: {e:?}"));
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    assert!(
        wait_pid_gone(pid, Duration::from_secs(10)),
        "pid {pid} still taken"
    );
}
