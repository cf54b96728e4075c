//! Dump and restore time of process trees of 10, 100 and 1000 small processes
//! (`wl_tree_many`: a binary tree, each process idling), and the cost per task.
//!
//! `cargo bench -p criu-tests --bench trees [-- N...]` (needs root). Prints a Markdown table.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use criu_core::dump::{DumpOptions, dump};
use criu_core::restore::{RestoreOptions, restore};
use criu_tests::{ScratchDir, is_root, wait_pid_gone};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

use criu_plugin_files as _;
use criu_plugin_pipes as _;

/// Starts the workload through bash with only fds 0-2 open, in the background (not our
/// child, as with `criu dump -t PID`).
const SPAWN: &str = r#"for f in /proc/$$/fd/*; do n=${f##*/}; if [ "$n" -gt 2 ]; then eval "exec $n>&-" 2>/dev/null; fi; done; "$0" "$@" </dev/null >/dev/null 2>&1 & echo $!"#;

/// Pids that reported a tick.
fn ticked(report: &Path) -> BTreeSet<i32> {
    std::fs::read_to_string(report)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            l.strip_prefix("tick ")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

fn wait_ticks(report: &Path, n: usize, what: &str) -> BTreeSet<i32> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let t = ticked(report);
        if t.len() >= n {
            return t;
        }
        if Instant::now() >= deadline {
            kill_all(&t);
            panic!("{what}: only {} of {n} processes ticked", t.len());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn kill_all(pids: &BTreeSet<i32>) {
    for &p in pids {
        let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
    }
    for &p in pids {
        let _ = waitpid(Pid::from_raw(p), None);
        wait_pid_gone(p, Duration::from_secs(10));
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    if !is_root() {
        eprintln!("trees bench: needs root (ptrace, clone3 set_tid); skipped");
        return;
    }
    let mut sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    if sizes.is_empty() {
        sizes = vec![10, 100, 1000];
    }
    let mut rows = Vec::new();
    for n in sizes {
        let scratch = ScratchDir::new("bench-trees");
        let report = scratch.path().join("report");
        let images = scratch.path().join("images");
        std::fs::create_dir_all(&images).expect("mkdir");
        let out = Command::new("bash")
            .arg("-c")
            .arg(SPAWN)
            .arg(env!("CARGO_BIN_EXE_wl_tree_many"))
            .arg(&report)
            .arg(n.to_string())
            .stdin(Stdio::null())
            .output()
            .expect("start workload");
        let root: i32 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("root pid");
        let pids = wait_ticks(&report, n, "start");

        let mut d = DumpOptions::new(root, &images);
        d.leave_stopped = true;
        let t = Instant::now();
        let dumped = dump(&d);
        let dump_time = t.elapsed();
        kill_all(&pids);
        if let Err(e) = dumped {
            panic!("dump of {n}: {e:?}");
        }
        std::fs::write(&report, "").expect("truncate report");

        let opts = RestoreOptions {
            images_dir: images.clone(),
            detach: true,
            ..RestoreOptions::default()
        };
        let t = Instant::now();
        let restored = restore(&opts);
        let restore_time = t.elapsed();
        if let Err(e) = restored {
            kill_all(&pids);
            panic!("restore of {n}: {e}");
        }
        let again = wait_ticks(&report, n, "after restore");
        kill_all(&pids);
        assert_eq!(again, pids, "restored pids differ");
        rows.push((n, dump_time, restore_time));
    }
    println!(
        "| processes | dump (ms) | dump per task (ms) | restore (ms) | restore per task (ms) |"
    );
    println!("|---:|---:|---:|---:|---:|");
    for (n, d, r) in rows {
        println!(
            "| {n} | {:.0} | {:.2} | {:.0} | {:.2} |",
            ms(d),
            ms(d) / n as f64,
            ms(r),
            ms(r) / n as f64
        );
    }
}
