//! The extra time a tree stays frozen for each io_uring ring it holds, and the extra
//! restore time per ring: the Rust workload (`wl_io_uring rings N`) holds N rings of 8
//! entries with 64 requests behind each; it is dumped with `--leave-running` (the frozen
//! time the dump reports, median of RUNS), then dumped for real and restored (wall time
//! of the restore, median of RUNS), for N = 0 and more.
//!
//! `cargo bench -p criu-tests --bench io_uring_rings` (needs root). Prints a Markdown table.

use std::path::Path;
use std::time::{Duration, Instant};

use criu_core::dump::{DumpOptions, dump};
use criu_core::restore::{RestoreOptions, restore};
use criu_tests::{PidGuard, ScratchDir, Workload, is_root, wait_pid_gone};

// The built-in plugins register through inventory; naming them links them in.
use criu_plugin_files as _;
use criu_plugin_io_uring as _;
use criu_plugin_pipes as _;

const RUNS: usize = 7;

fn start(n: usize) -> Workload {
    Workload::start(
        Path::new(env!("CARGO_BIN_EXE_wl_io_uring")),
        &["rings", &n.to_string()],
        "ready",
        Duration::from_secs(30),
    )
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// (frozen ms of a --leave-running dump, restore ms) for a tree with `n` rings.
fn measure(n: usize, scratch: &Path) -> (f64, f64) {
    let mut frozen = Vec::new();
    let mut restored = Vec::new();
    for run in 0..RUNS {
        let wl = start(n);
        let dir = scratch.join(format!("rings{n}-{run}"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let mut opts = DumpOptions::new(wl.pid(), &dir);
        opts.leave_running = true;
        opts.shell_job = true;
        let report = dump(&opts).expect("leave-running dump");
        frozen.push(report.frozen_time_us as f64 / 1e3);
        std::fs::remove_dir_all(&dir).expect("rm images");
        std::fs::create_dir_all(&dir).expect("mkdir");
        opts.leave_running = false;
        dump(&opts).expect("dump");
        let pid = wl.pid();
        drop(wl);
        assert!(
            wait_pid_gone(pid, Duration::from_secs(10)),
            "pid {pid} left"
        );
        let t = Instant::now();
        restore(&RestoreOptions {
            images_dir: dir.clone(),
            detach: true,
            shell_job: true,
            ..Default::default()
        })
        .expect("restore");
        restored.push(t.elapsed().as_secs_f64() * 1e3);
        let guard = PidGuard::new(pid);
        let first_ring = std::fs::read_link(format!("/proc/{pid}/fd/3"));
        assert!(
            n == 0 || first_ring.is_ok_and(|l| l.to_string_lossy() == "anon_inode:[io_uring]"),
            "restored pid {pid} lacks its rings"
        );
        drop(guard);
        assert!(
            wait_pid_gone(pid, Duration::from_secs(10)),
            "pid {pid} left"
        );
        std::fs::remove_dir_all(&dir).expect("rm images");
    }
    (median(frozen), median(restored))
}

fn main() {
    if !is_root() {
        eprintln!("io_uring_rings bench: needs root (ptrace, clone3 set_tid); skipped");
        return;
    }
    let scratch = ScratchDir::new("bench-uring");
    let (f0, r0) = measure(0, scratch.path());
    println!(
        "| rings | frozen ms | extra frozen ms per ring | restore ms | extra restore ms per ring |"
    );
    println!("|---|---|---|---|---|");
    println!("| 0 | {f0:.2} | - | {r0:.2} | - |");
    for n in [1usize, 8, 32] {
        let (f, r) = measure(n, scratch.path());
        println!(
            "| {n} | {f:.2} | {:.3} | {r:.2} | {:.3} |",
            (f - f0) / n as f64,
            (r - r0) / n as f64
        );
    }
}
