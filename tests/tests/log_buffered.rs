//! The buffered log file keeps every line exactly once across forks: a tree whose root is
//! pid 1 of its own pid namespace is dumped by a child criu forks into that namespace, which
//! logs the dump proper while the parent logs before the fork and after reaping it. The
//! `-v4` log must hold the parent's lines and the child's (told apart by the pid in each
//! prefix), every line well formed (no torn or interleaved line) and none twice.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use criu_tests::{ScratchDir, TreeGuard, skip_unless_root, wait_pid_gone};

const CRIU: &str = env!("CARGO_BIN_EXE_criu_under_test");

fn first_child(pid: i32) -> i32 {
    let path = format!("/proc/{pid}/task/{pid}/children");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if let Some(p) = text.split_whitespace().next() {
            return p.parse().expect("pid");
        }
        assert!(Instant::now() < deadline, "no child of {pid}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `(SS.UUUUUU) PID target: LEVEL: ...`: the pid, or None for a malformed line.
fn line_pid(line: &str) -> Option<u32> {
    let rest = line.strip_prefix('(')?;
    let (time, rest) = rest.split_once(") ")?;
    let (secs, micros) = time.split_once('.')?;
    if secs.parse::<u64>().is_err() || micros.len() != 6 || micros.parse::<u32>().is_err() {
        return None;
    }
    let (pid, rest) = rest.split_once(' ')?;
    let (_target, rest) = rest.split_once(": ")?;
    let level = rest.split_once(": ")?.0;
    ["ERROR", "WARN", "INFO", "DEBUG", "TRACE"]
        .contains(&level)
        .then_some(())?;
    pid.parse().ok()
}

#[test]
fn pid_namespace_dump_logs_parent_and_child_lines_once() {
    if skip_unless_root("pid_namespace_dump_logs_parent_and_child_lines_once") {
        return;
    }
    let scratch = ScratchDir::new("log-buffered");
    let images = scratch.path().join("images");
    std::fs::create_dir(&images).expect("images dir");
    let unshare = Command::new("unshare")
        .args(["--pid", "--fork", "sleep", "600"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("unshare (util-linux) is needed");
    let outer = unshare.id() as i32;
    let mut guard = TreeGuard::new([outer]);
    let root = first_child(outer);
    guard.extend([root]);

    let log = images.join("dump.log");
    let criu = Command::new(CRIU)
        .args(["dump", "-t", &root.to_string(), "-D"])
        .arg(&images)
        .args(["-v4", "-o"])
        .arg(&log)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run criu");
    let criu_pid = criu.id();
    let out = criu.wait_with_output().expect("criu");
    let text = std::fs::read_to_string(&log).expect("dump.log");
    assert!(
        out.status.success(),
        "criu dump: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(wait_pid_gone(root, Duration::from_secs(10)), "root left");
    let mut unshare = unshare;
    let _ = unshare.wait();

    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut by_pid: HashMap<u32, usize> = HashMap::new();
    for line in text.lines() {
        let pid = line_pid(line).unwrap_or_else(|| panic!("malformed line {line:?}\n{text}"));
        *by_pid.entry(pid).or_default() += 1;
        *seen.entry(line).or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "lines written twice: {twice:?}");
    assert!(text.ends_with('\n'), "the last line is cut");
    let parent = by_pid.get(&criu_pid).copied().unwrap_or(0);
    let child: usize = by_pid
        .iter()
        .filter(|(p, _)| **p != criu_pid)
        .map(|(_, n)| n)
        .sum();
    assert!(parent >= 2, "criu's own lines missing ({by_pid:?})\n{text}");
    assert!(
        child >= 5,
        "the inner dump's lines missing ({by_pid:?})\n{text}"
    );
    for (what, by_parent) in [
        ("dumping from inside it", true),
        ("inner dump process reaped", true),
        // The inner process logs until it hands over its result (then the outer one kills
        // the namespace, and the inner process with it): its lines from before that.
        ("thread frozen", false),
        ("dump finished", true),
    ] {
        let hits: Vec<&str> = text.lines().filter(|l| l.contains(what)).collect();
        assert_eq!(hits.len(), 1, "{what:?} once\n{text}");
        let pid = line_pid(hits[0]).expect("pid");
        assert_eq!(pid == criu_pid, by_parent, "{what:?} by the wrong process");
    }
    drop(guard);
}
