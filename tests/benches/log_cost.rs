//! What `-v4` logging costs a dump against `-v0`: a process with 1 GiB of touched memory and a
//! tree of many small processes, each dumped with `--leave-running` by this tree's `criu`
//! binary, alternating -v0 / -v4 (ABAB, so the machine's drift hits both alike), several
//! rounds. Reports the median and the spread (min-max) of the wall time, of the frozen
//! time (`--display-stats`) and of criu's own CPU time (user + system, from
//! `getrusage(RUSAGE_CHILDREN)`: on a shared, loaded machine the wall time mostly measures
//! the other processes, the CPU time what the logging costs criu), and the log's size.
//!
//! `cargo bench -p criu-tests --bench log_cost [-- MIB TASKS ROUNDS]` (default 1024 MiB,
//! 200 tasks, 5 rounds; needs root).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use criu_tests::{ScratchDir, Workload, is_root, wait_pid_gone};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const CRIU: &str = env!("CARGO_BIN_EXE_criu_under_test");

fn main() {
    if !is_root() {
        eprintln!("log_cost bench: needs root (ptrace); skipped");
        return;
    }
    let nums: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let mib = nums.first().copied().unwrap_or(1024);
    let tasks = nums.get(1).copied().unwrap_or(200);
    let rounds = nums.get(2).copied().unwrap_or(5);
    let scratch = ScratchDir::new("bench-logcost");
    println!(
        "| workload | verbosity | wall median (min-max) | frozen median (min-max) | criu CPU median (min-max) | log |"
    );
    println!("|---|---|---:|---:|---:|---:|");

    let report = scratch.path().join("report");
    let wl = Workload::start(
        Path::new(env!("CARGO_BIN_EXE_wl_bigmem")),
        &[&mib.to_string(), report.to_str().unwrap()],
        "ready",
        Duration::from_secs(120),
    );
    measure(&format!("{mib} MiB"), wl.pid(), scratch.path(), rounds);
    drop(wl);

    let (root, pids) = start_tree(scratch.path(), tasks);
    measure(&format!("{tasks} tasks"), root, scratch.path(), rounds);
    for &p in &pids {
        let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
    }
    for &p in &pids {
        wait_pid_gone(p, Duration::from_secs(10));
    }
}

/// Rounds of -v0 then -v4 dumps of `pid`; prints one row per verbosity.
fn measure(what: &str, pid: i32, scratch: &Path, rounds: usize) {
    let mut res: [Vec<(f64, f64, f64)>; 2] = [Vec::new(), Vec::new()];
    let mut log_len = 0;
    for _ in 0..rounds {
        for (i, v) in ["-v0", "-v4"].into_iter().enumerate() {
            let dir = scratch.join("images");
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("mkdir");
            let log = scratch.join("dump.log");
            let _ = std::fs::remove_file(&log);
            nix::unistd::sync();
            let cpu0 = children_cpu();
            let t = Instant::now();
            let out = Command::new(CRIU)
                .args(["dump", "-t", &pid.to_string(), "-D"])
                .arg(&dir)
                .args(["-R", "--shell-job", "--display-stats", v, "-o"])
                .arg(&log)
                .stdin(Stdio::null())
                .output()
                .expect("run criu");
            let wall = t.elapsed().as_secs_f64();
            let cpu = children_cpu() - cpu0;
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "criu dump {v}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let frozen = stdout
                .lines()
                .find_map(|l| l.strip_prefix("Frozen time: "))
                .and_then(|l| l.trim_end_matches(" us").parse::<f64>().ok())
                .expect("frozen time")
                / 1e6;
            res[i].push((wall, frozen, cpu));
            if i == 1 {
                log_len = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
            }
        }
    }
    for (i, v) in ["-v0", "-v4"].into_iter().enumerate() {
        let walls: Vec<f64> = res[i].iter().map(|r| r.0).collect();
        let frozen: Vec<f64> = res[i].iter().map(|r| r.1).collect();
        let cpu: Vec<f64> = res[i].iter().map(|r| r.2).collect();
        let log = if i == 1 {
            format!("{:.1} KiB", log_len as f64 / 1024.0)
        } else {
            "–".into()
        };
        println!(
            "| {what} | {v} | {} | {} | {} | {log} |",
            stats(&walls),
            stats(&frozen),
            stats(&cpu)
        );
    }
}

/// User + system seconds of our waited-for children so far (criu and what it forked).
fn children_cpu() -> f64 {
    let u = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .expect("getrusage");
    let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    secs(u.user_time()) + secs(u.system_time())
}

fn stats(v: &[f64]) -> String {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let med = s[s.len() / 2];
    format!("{:.3} s ({:.3}-{:.3})", med, s[0], s[s.len() - 1])
}

/// Starts `wl_tree_many` outside our process tree; returns its root and every pid.
fn start_tree(scratch: &Path, n: usize) -> (i32, Vec<i32>) {
    const SPAWN: &str = r#""$0" "$@" </dev/null >/dev/null 2>&1 & echo $!"#;
    let report = scratch.join("ticks");
    let out = Command::new("bash")
        .args(["-c", SPAWN])
        .arg(env!("CARGO_BIN_EXE_wl_tree_many"))
        .arg(&report)
        .arg(n.to_string())
        .stdin(Stdio::null())
        .output()
        .expect("start tree");
    let root: i32 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("root pid");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let pids: std::collections::BTreeSet<i32> = std::fs::read_to_string(&report)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                l.strip_prefix("tick ")?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
            .collect();
        if pids.len() >= n {
            return (root, pids.into_iter().collect());
        }
        if Instant::now() > deadline {
            for &p in &pids {
                let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
            }
            panic!("only {} of {n} processes started", pids.len());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
