//! A parent and a child sharing an fd table (clone CLONE_FILES) or cwd/root/umask (clone
//! CLONE_FS), from a C workload built with gcc at test time (`workloads/tree_shared.c`).
//! After dump, kill and restore, a change the parent makes (a new fd, a chdir) must be seen
//! by the child: the table / fs_struct is shared again, not copied.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use criu_tests::{ScratchDir, TreeGuard, skip_unless_root};
use restore_common::{dump_stopped_and_kill, lines, restore_detached, spawn_bg};

mod restore_common;
use criu_plugin_files as _;
use criu_plugin_pipes as _;

/// Whether gcc runs; in CI (env CI set) its absence is a failure, elsewhere a skip.
fn have_gcc(test: &str) -> bool {
    let ok = Command::new("gcc")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: gcc is missing in CI"
        );
        eprintln!("skipping {test}: gcc is not installed");
    }
    ok
}

fn build(dir: &Path) -> PathBuf {
    let exe = dir.join("tree_shared");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads/tree_shared.c");
    let ok = Command::new("gcc")
        .args(["-O1", "-o"])
        .arg(&exe)
        .arg(src)
        .status()
        .expect("run gcc");
    assert!(ok.success(), "gcc failed");
    exe
}

/// Waits for a report line starting with `prefix` (and naming `pid` when given).
fn wait_line(report: &Path, prefix: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(l) = lines(report).into_iter().find(|l| l.starts_with(prefix)) {
            return l;
        }
        assert!(
            Instant::now() < deadline,
            "no {prefix:?} line in {:?}",
            lines(report)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ticks_of(report: &Path, pid: i32) -> usize {
    let want = format!("tick {pid}");
    lines(report).iter().filter(|l| **l == want).count()
}

fn round_trip(mode: &str, test: &str) {
    if skip_unless_root(test) || !have_gcc(test) {
        return;
    }
    let scratch = ScratchDir::new(&format!("tree-shared-{mode}"));
    let dir = scratch.path().canonicalize().expect("scratch path");
    let exe = build(&dir);
    let work = dir.join("work");
    std::fs::create_dir(&work).expect("work dir");
    let images = dir.join("images");
    std::fs::create_dir(&images).expect("images dir");
    let report = work.join("report");
    let root = spawn_bg(
        exe.to_str().expect("utf-8"),
        &[mode, work.to_str().expect("utf-8")],
    );
    let mut guards = TreeGuard::new([root]);
    let child: i32 = wait_line(&report, "child ", Duration::from_secs(10))
        .trim_start_matches("child ")
        .parse()
        .expect("child pid");
    guards.extend([child]);
    wait_line(&report, &format!("pre ok {child}"), Duration::from_secs(10));
    assert!(
        !lines(&report).iter().any(|l| l.starts_with("post ok")),
        "post before go"
    );

    dump_stopped_and_kill(root, &images, guards);
    let before = (ticks_of(&report, root), ticks_of(&report, child));

    let _g = restore_detached(&images, root, [child]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while ticks_of(&report, root) <= before.0 || ticks_of(&report, child) <= before.1 {
        assert!(Instant::now() < deadline, "restored tree does not run");
        std::thread::sleep(Duration::from_millis(20));
    }
    let ppid = std::fs::read_to_string(format!("/proc/{child}/stat")).expect("child stat");
    let ppid = ppid
        .rsplit_once(')')
        .expect("stat")
        .1
        .split_whitespace()
        .nth(1);
    assert_eq!(ppid, Some(root.to_string().as_str()), "child's parent");
    std::fs::write(work.join("go"), "").expect("go");
    wait_line(
        &report,
        &format!("post ok {child}"),
        Duration::from_secs(10),
    );
}

#[test]
fn tree_shared_fd_table() {
    round_trip("files", "tree_shared_fd_table");
}

#[test]
fn tree_shared_fs_struct() {
    round_trip("fs", "tree_shared_fs_struct");
}
