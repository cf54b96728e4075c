//! Plugins that name tasks by pid, through the real binary, in a tree whose root is pid 1
//! of its own pid namespace (restored into a new one, where criu's pids differ from the
//! tree's) and, for comparison, in criu's own namespace. The C workload
//! (`workloads/pidns_plugins.c`) holds a pidfd of its child C, a datagram queue with C's
//! message (`SCM_CREDENTIALS`), a queue with `SO_PASSPIDFD` holding a message of a child
//! that exited before the dump, a pidfd of another exited child in flight only
//! (`SCM_RIGHTS`), an epoll on C's socket, an io_uring ring and a POSIX message queue with a
//! notification; after the restore it checks each itself (C's pid in its message, exited
//! pidfds for the gone senders, the ring, the queue's notification, and that C's pidfd kills
//! and reaps C). Without the pid-namespace awareness of the plugins (`host_pid`) the pidfd
//! named another process, the credentials failed, the ring and epoll helpers looked for
//! their tasks by pids criu does not see. In criu's namespace the pid the gone sender's
//! message names afterwards must not be criu's (the kernel names the sender of a message
//! sent without credentials).

mod restore_common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use criu_tests::{ScratchDir, TreeGuard, skip_unless_root, wait_pid_gone};

use restore_common::{descendants, spawn_bg, wait_lines};

const CRIU: &str = env!("CARGO_BIN_EXE_criu_under_test");

/// gcc, liburing and unshare present (CI installs them; elsewhere a skip saying so).
fn tools_present(test: &str) -> bool {
    let mut missing = Vec::new();
    for tool in ["gcc", "unshare"] {
        let ok = Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            missing.push(tool);
        }
    }
    if !Path::new("/usr/include/liburing.h").exists() {
        missing.push("liburing-dev");
    }
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: {missing:?} missing in CI"
    );
    eprintln!("skipping {test}: {missing:?} not installed");
    false
}

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

fn build(dir: &Path) -> PathBuf {
    let exe = dir.join("pidns_plugins");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads/pidns_plugins.c");
    let ok = Command::new("gcc")
        .args(["-O1", "-Wall", "-o"])
        .arg(&exe)
        .arg(src)
        .arg("-luring")
        .status()
        .expect("gcc");
    assert!(ok.success(), "gcc failed on pidns_plugins.c");
    exe
}

fn log(images: &Path, name: &str) -> String {
    std::fs::read_to_string(images.join(name)).unwrap_or_default()
}

/// Starts the workload (below `unshare --pid --fork` when `pidns`), dumps it with `criu
/// dump` (which kills it), restores it detached and triggers its checks: the report's
/// lines ("ready C E X", then the verdict), and the pid of the `criu restore` that ran.
fn round_trip(name: &str, pidns: bool) -> (Vec<String>, u32) {
    let scratch = ScratchDir::new(name);
    let dir = scratch.path().canonicalize().expect("scratch");
    let exe = build(&dir);
    let images = dir.join("images");
    std::fs::create_dir(&images).expect("images dir");
    let report = dir.join("report");
    let trigger = dir.join("trigger");
    let (r, t) = (
        report.to_str().expect("path"),
        trigger.to_str().expect("path"),
    );
    let exe = exe.to_str().expect("path");
    let mut guard = TreeGuard::new([]);
    let (outer, root) = if pidns {
        let outer = spawn_bg("unshare", &["--pid", "--fork", exe, r, t]);
        guard.extend([outer]);
        (Some(outer), first_child(outer))
    } else {
        (None, spawn_bg(exe, &[r, t]))
    };
    guard.extend([root]);
    let ready = wait_lines(&report, 1, Duration::from_secs(10));
    assert!(ready[0].starts_with("ready "), "{ready:?}");
    guard.extend(descendants(root));

    let out = Command::new(CRIU)
        .args(["dump", "-t", &root.to_string(), "-D"])
        .arg(&images)
        .args(["-v4", "-o", "dump.log"])
        .output()
        .expect("criu dump");
    assert!(
        out.status.success(),
        "criu dump: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        log(&images, "dump.log")
    );
    for p in outer.into_iter().chain([root]) {
        assert!(
            wait_pid_gone(p, Duration::from_secs(10)),
            "pid {p} still there"
        );
    }

    let pidfile = dir.join("restored.pid");
    let child = Command::new(CRIU)
        .args(["restore", "-d", "-D"])
        .arg(&images)
        .arg("--pidfile")
        .arg(&pidfile)
        .args(["-v4", "-o", "restore.log"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("criu restore");
    let criu_pid = child.id();
    let out = child.wait_with_output().expect("criu restore");
    let host: i32 = std::fs::read_to_string(&pidfile)
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or(0);
    if host > 0 {
        guard.extend([host]);
        guard.extend(descendants(host));
    }
    assert!(
        out.status.success(),
        "criu restore: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        log(&images, "restore.log")
    );
    std::fs::write(&trigger, b"").expect("trigger");
    let lines = wait_lines(&report, 2, Duration::from_secs(15));
    drop(guard);
    (lines, criu_pid)
}

/// The pid the gone sender's message names after the restore (`ok <pid>`).
fn ok_pid(line: &str) -> i32 {
    line.strip_prefix("ok ")
        .unwrap_or_else(|| panic!("the workload says: {line}"))
        .parse()
        .expect("pid")
}

#[test]
fn plugins_name_tasks_right_in_a_new_pid_namespace() {
    let name = "plugins_name_tasks_right_in_a_new_pid_namespace";
    if skip_unless_root(name) || !tools_present(name) {
        return;
    }
    let (lines, _) = round_trip("pidns-plugins", true);
    // The gone sender's stand-in is made inside the tree's namespace at the sender's pid
    // (free there): the receiver sees the pid it saw before the dump.
    let e: i32 = lines[0]
        .split_whitespace()
        .nth(2)
        .expect("E")
        .parse()
        .expect("pid");
    assert_eq!(ok_pid(&lines[1]), e, "{lines:?}");
}

#[test]
fn gone_senders_and_pidfds_in_flight_stay_exited() {
    let name = "gone_senders_and_pidfds_in_flight_stay_exited";
    if skip_unless_root(name) || !tools_present(name) {
        return;
    }
    let (lines, criu) = round_trip("plugins-exited", false);
    let named = ok_pid(&lines[1]);
    assert_ne!(named, criu as i32, "the gone sender is named by criu");
}
