//! Helpers of the `cli_*` tests: run this tree's `criu` command line as a process, start a
//! self-checking workload outside our process tree, and read what it reports.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use criu_tests::{PidGuard, wait_pid_gone};

#[path = "../restore_common/mod.rs"]
mod restore_common;

/// `criu ARGS...` run to completion; stdin on /dev/null, no default config from $HOME.
pub fn criu(args: &[&str]) -> Output {
    criu_env(args, &[])
}

/// [`criu`] with extra environment variables.
pub fn criu_env(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_criu_under_test"));
    cmd.args(args)
        .env_remove("CRIU_CONFIG_FILE")
        .env("HOME", "/nonexistent")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run criu")
}

/// stderr of `out` as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts `out` exited with `code`, showing its output otherwise.
pub fn assert_exit(out: &Output, code: i32, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}: stdout {}\nstderr {}",
        String::from_utf8_lossy(&out.stdout),
        stderr(out)
    );
}

/// A running `wl_counter` (two threads, its own session, not our child), guarded by pid.
pub struct Counter {
    pub pid: i32,
    pub guard: PidGuard,
    pub report: PathBuf,
    /// The last tick written before the dump (set by [`Counter::wait_gone`]).
    pub ticks_at_dump: u64,
}

impl Counter {
    /// Starts it with its report in `dir` and waits for its first ticks.
    pub fn start(dir: &Path) -> Counter {
        let report = dir.join("report.txt");
        let pid = restore_common::spawn_bg(
            env!("CARGO_BIN_EXE_wl_counter"),
            &[report.to_str().expect("utf-8 path"), "2"],
        );
        let guard = PidGuard::new(pid);
        restore_common::wait_lines(&report, 3, Duration::from_secs(20));
        Counter {
            pid,
            guard,
            report,
            ticks_at_dump: 0,
        }
    }

    /// Waits until the dumped (and killed) workload's pid is free; notes its last tick.
    pub fn wait_gone(&mut self) {
        assert!(
            wait_pid_gone(self.pid, Duration::from_secs(10)),
            "pid {} still taken",
            self.pid
        );
        self.ticks_at_dump = last_tick(&self.report);
    }

    /// Empties the report, then waits for `n` new ticks and checks the workload's own
    /// verdicts on its memory and FPU state, and that its counter went on from before.
    pub fn assert_runs_on(&self, n: usize) {
        let before = self.ticks_at_dump;
        std::fs::write(&self.report, "").expect("truncate report");
        let lines = restore_common::wait_lines(&self.report, n, Duration::from_secs(20));
        for l in &lines {
            assert!(
                l.starts_with("tick ") && l.contains("mem=ok") && l.contains("fp=ok"),
                "workload says: {l}"
            );
            assert!(l.contains(&format!("pid={}", self.pid)), "{l}");
        }
        let after = tick_number(&lines[0]);
        assert!(
            after > before,
            "tick {after} after {before}: not a continuation"
        );
    }
}

fn tick_number(line: &str) -> u64 {
    line.split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a tick line: {line}"))
}

fn last_tick(report: &Path) -> u64 {
    restore_common::lines(report)
        .iter()
        .rev()
        .find(|l| l.starts_with("tick "))
        .map_or(0, |l| tick_number(l))
}

/// Waits until `path` holds something (a pidfile), at most 10 s.
pub fn read_when_there(path: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(s) = std::fs::read_to_string(path)
            && !s.trim().is_empty()
        {
            return s.trim().to_string();
        }
        assert!(
            Instant::now() < deadline,
            "{} never written",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The path of this tree's `criu` (built with the test package).
pub fn criu_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_criu_under_test"))
}

/// Runs `program` with `args`, stdin on /dev/null, and returns its output.
pub fn run(program: &Path, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()))
}

/// stdout and stderr of `out`, for messages and assertions.
pub fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
