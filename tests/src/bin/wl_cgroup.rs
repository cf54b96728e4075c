//! Restore workload for cgroups: the root starts one child; each process waits for
//! `GO_FILE` (the test has moved it into its cgroups by then), records its
//! `/proc/self/cgroup`, appends `ready <pid>` to the report, then waits for `CHECK_FILE`
//! (created after the restore) and appends `check <pid> ok` when its cgroups are still the
//! recorded ones, else `check <pid> bad <line now>`.
//!
//! Usage: wl_cgroup REPORT_FILE GO_FILE CHECK_FILE [child]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn wait_for(p: &Path) {
    while !p.exists() {
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn say(report: &str, line: &str) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(report)
        .expect("report");
    // One write per line: the two processes append to the same file.
    f.write_all(format!("{line}\n").as_bytes())
        .expect("write report");
}

fn cgroups() -> String {
    std::fs::read_to_string("/proc/self/cgroup").expect("/proc/self/cgroup")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: wl_cgroup REPORT_FILE GO_FILE CHECK_FILE");
        std::process::exit(2);
    }
    let (report, go, check) = (&args[1], Path::new(&args[2]), Path::new(&args[3]));
    let _child = (args.get(4).is_none()).then(|| {
        Command::new(std::env::current_exe().expect("exe"))
            .args([&args[1], &args[2], &args[3], "child"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child")
    });
    let me = std::process::id();
    if _child.is_some() {
        say(
            report,
            &format!("child {}", _child.as_ref().map_or(0, |c| c.id())),
        );
    }
    wait_for(go);
    let before = cgroups();
    say(report, &format!("ready {me}"));
    wait_for(check);
    let now = cgroups();
    if now == before {
        say(report, &format!("check {me} ok"));
    } else {
        let diff = now
            .lines()
            .find(|l| !before.lines().any(|b| b == *l))
            .unwrap_or("(fewer lines)");
        say(report, &format!("check {me} bad {diff}"));
    }
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}
