//! Options of CRIU's that have their effect here, end to end: `--exec-cmd` (criu becomes
//! the given program, the restored root's parent) and `--timeout` (a freeze that takes
//! longer fails and the tree runs on).

use std::time::Duration;

use criu_tests::{ScratchDir, pid_exists, skip_unless_root};

mod cli_support;
use cli_support::{Counter, assert_exit, criu, stderr};

#[test]
fn exec_cmd_runs_as_the_restored_root_s_parent() {
    if skip_unless_root("exec_cmd_runs_as_the_restored_root_s_parent") {
        return;
    }
    let scratch = ScratchDir::new("cli-exec");
    let images = scratch.path().join("images");
    std::fs::create_dir_all(&images).expect("images dir");
    let mut counter = Counter::start(scratch.path());
    let pid = counter.pid.to_string();
    let dir = images.to_str().expect("utf-8");
    assert_exit(&criu(&["dump", "-t", &pid, "-D", dir]), 0, "dump");
    counter.wait_gone();
    // The command prints its own pid and the restored root's parent: the same process.
    let script = format!("echo $$ $(awk '/^PPid:/ {{print $2}}' /proc/{pid}/status)");
    let out = criu(&[
        "restore",
        "-D",
        dir,
        "--exec-cmd",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    assert_exit(&out, 0, "restore --exec-cmd");
    let text = String::from_utf8_lossy(&out.stdout);
    let words: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(words.len(), 2, "{text}");
    assert_eq!(
        words[0], words[1],
        "the root's parent is not the exec'd command"
    );
    counter.assert_runs_on(3);
    // -d and --exec-cmd exclude each other, as in CRIU.
    let out = criu(&["restore", "-D", dir, "-d", "--exec-cmd", "--", "true"]);
    assert_exit(&out, 1, "-d --exec-cmd");
    assert!(stderr(&out).contains("cannot be used together"));
}

#[test]
fn timeout_bounds_the_freeze_and_the_tree_runs_on() {
    if skip_unless_root("timeout_bounds_the_freeze_and_the_tree_runs_on") {
        return;
    }
    let scratch = ScratchDir::new("cli-timeout");
    let counter = Counter::start(scratch.path());
    let pid = counter.pid.to_string();
    let dir = scratch.path().to_str().expect("utf-8");
    // No time at all: the first thread is already late.
    let out = criu(&["dump", "-t", &pid, "-D", dir, "--timeout", "0"]);
    assert_exit(&out, 1, "dump --timeout 0");
    let err = stderr(&out);
    assert!(
        err.contains(&format!("pid {pid}")) && err.contains("not frozen within --timeout 0 s"),
        "{err}"
    );
    assert!(pid_exists(counter.pid));
    let lines = std::fs::read_to_string(&counter.report)
        .expect("report")
        .len();
    std::thread::sleep(Duration::from_millis(300));
    let more = std::fs::read_to_string(&counter.report)
        .expect("report")
        .len();
    assert!(
        more > lines,
        "the workload stopped ticking after the failed dump"
    );
    // A generous timeout changes nothing.
    let images = scratch.path().join("images");
    std::fs::create_dir_all(&images).expect("images dir");
    let out = criu(&[
        "dump",
        "-t",
        &pid,
        "-D",
        images.to_str().expect("utf-8"),
        "--timeout",
        "10",
        "-R",
    ]);
    assert_exit(&out, 0, "dump --timeout 10 -R");
    assert!(pid_exists(counter.pid));
}
