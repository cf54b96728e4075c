//! A tree whose root is pid 1 of its own pid namespace (started with `unshare --pid
//! --fork`) is dumped with the pids its tasks see and restored into a new pid namespace
//! with the same ones, through the real binary. The C workload (`workloads/pidns_tree.c`)
//! has a child with a thread and a child, a zombie, an inherited orphan and a pipe; after
//! the restore every task checks its pid, its parent's and (the thread) its tid. The
//! restored root's pid namespace is not ours, `--pidfile` holds its pid in ours, the tree
//! runs on, and crit 3.17 decodes pstree.img as we do. Damaged pstree images (two tasks at
//! pid 1, pid 0, a pid over pid_max) fail the restore naming pstree.img and the entry; a
//! root that is not its namespace's init is refused at dump.

mod crit317;
mod restore_common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use criu_proto::ImageKind;
use criu_proto::images::PstreeEntry;
use criu_tests::{ScratchDir, TreeGuard, pid_exists, skip_unless_root, wait_pid_gone};
use prost::Message;

use restore_common::{descendants, spawn_bg, wait_lines};

const CRIU: &str = env!("CARGO_BIN_EXE_criu_under_test");

fn tools_present(test: &str) -> bool {
    for tool in ["gcc", "unshare"] {
        let ok = Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            assert!(
                std::env::var_os("CI").is_none(),
                "{test}: {tool} missing in CI"
            );
            eprintln!("skipping {test}: {tool} is not installed");
            return false;
        }
    }
    true
}

/// The workload, running as pid 1 of a new namespace below `unshare`.
struct Started {
    /// `unshare` (outside the namespace).
    outer: i32,
    /// The root, pid 1 inside, by its pid here.
    root: i32,
    /// Inner pids: A, T (A's thread), G, Z (zombie), O2 (orphan).
    inner: [i32; 5],
    report: PathBuf,
    trigger: PathBuf,
    images: PathBuf,
    scratch: ScratchDir,
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

fn start(name: &str, guard: &mut TreeGuard) -> Started {
    let scratch = ScratchDir::new(name);
    let dir = scratch.path().canonicalize().expect("scratch");
    let exe = dir.join("pidns_tree");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads/pidns_tree.c");
    let ok = Command::new("gcc")
        .args(["-O1", "-Wall", "-pthread", "-o"])
        .arg(&exe)
        .arg(src)
        .status()
        .expect("gcc");
    assert!(ok.success(), "gcc failed on pidns_tree.c");
    let images = dir.join("images");
    std::fs::create_dir(&images).expect("images dir");
    let report = dir.join("report");
    let trigger = dir.join("trigger");
    let outer = spawn_bg(
        "unshare",
        &[
            "--pid",
            "--fork",
            exe.to_str().expect("path"),
            report.to_str().expect("path"),
            trigger.to_str().expect("path"),
        ],
    );
    guard.extend([outer]);
    let root = first_child(outer);
    guard.extend([root]);
    let lines = wait_lines(&report, 1, Duration::from_secs(10));
    let w: Vec<i32> = lines[0]
        .strip_prefix("ready ")
        .unwrap_or_else(|| panic!("{lines:?}"))
        .split_whitespace()
        .map(|p| p.parse().expect("pid"))
        .collect();
    guard.extend(descendants(root));
    Started {
        outer,
        root,
        inner: w.try_into().expect("five pids"),
        report,
        trigger,
        images,
        scratch,
    }
}

fn criu(args: &[&str]) -> std::process::Output {
    Command::new(CRIU).args(args).output().expect("run criu")
}

fn ns_link(pid: i32) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/pid"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Dumps the tree with `criu dump` (which kills it); the namespace is gone afterwards.
fn dump_and_kill(w: &Started) {
    let out = criu(&[
        "dump",
        "-t",
        &w.root.to_string(),
        "-D",
        w.images.to_str().expect("path"),
        "-v4",
        "-o",
        "dump.log",
    ]);
    assert!(
        out.status.success(),
        "criu dump: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(w.images.join("dump.log")).unwrap_or_default()
    );
    for p in [w.root, w.outer] {
        assert!(
            wait_pid_gone(p, Duration::from_secs(10)),
            "pid {p} still there"
        );
    }
}

fn pstree(images: &Path) -> Vec<PstreeEntry> {
    let bytes = std::fs::read(images.join("pstree.img")).expect("pstree");
    let raw = criu_proto::framing::parse(&bytes).expect("pstree framing");
    raw.entries
        .iter()
        .map(|e| PstreeEntry::decode(e.payload.as_slice()).expect("pstree entry"))
        .collect()
}

fn write_pstree(images: &Path, entries: &[PstreeEntry]) {
    let mut bytes = criu_proto::framing::header_bytes(ImageKind::Pstree).expect("header");
    for e in entries {
        criu_proto::framing::frame_message(&mut bytes, e).expect("frame");
    }
    std::fs::write(images.join("pstree.img"), bytes).expect("write pstree");
}

#[test]
fn pid_namespace_tree_survives_dump_kill_restore() {
    let name = "pid_namespace_tree_survives_dump_kill_restore";
    if skip_unless_root(name) || !tools_present(name) {
        return;
    }
    let mut guard = TreeGuard::new([]);
    let w = start("pidns-tree", &mut guard);
    let [a, t, g, z, o2] = w.inner;
    let me = std::process::id() as i32;
    assert_ne!(ns_link(w.root), ns_link(me), "unshare --pid");
    dump_and_kill(&w);

    // pstree.img: the pids seen inside, root 1 with no parent.
    let tree = pstree(&w.images);
    let by_pid = |p: i32| {
        tree.iter()
            .find(|e| e.pid == p as u32)
            .unwrap_or_else(|| panic!("pid {p} not in {tree:?}"))
    };
    assert_eq!(
        (tree[0].pid, tree[0].ppid, tree[0].sid),
        (1, 0, 1),
        "{tree:?}"
    );
    assert_eq!(by_pid(a).ppid, 1);
    assert_eq!(by_pid(a).threads, vec![a as u32, t as u32]);
    assert_eq!(by_pid(g).ppid, a as u32);
    assert_eq!(by_pid(z).ppid, 1);
    assert_eq!(by_pid(o2).ppid, 1, "the orphan is pid 1's");
    for p in [1, a, g, z, o2] {
        assert!(
            w.images.join(format!("core-{p}.img")).exists(),
            "core-{p}.img"
        );
    }
    crit317::decodes_as_we_do(&w.images.join("pstree.img"), ImageKind::Pstree, |ours| {
        assert_eq!(ours["entries"][0]["pid"], 1, "{ours}");
    });

    let pidfile = w.scratch.path().join("restored.pid");
    let out = criu(&[
        "restore",
        "-d",
        "-D",
        w.images.to_str().expect("path"),
        "--pidfile",
        pidfile.to_str().expect("path"),
        "-v4",
        "-o",
        "restore.log",
    ]);
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
        std::fs::read_to_string(w.images.join("restore.log")).unwrap_or_default()
    );
    assert!(host > 1, "--pidfile holds the root's pid in our namespace");
    let theirs = ns_link(host);
    assert!(!theirs.is_empty() && theirs != ns_link(me), "{theirs}");
    let status = std::fs::read_to_string(format!("/proc/{host}/status")).expect("status");
    let nspid = status
        .lines()
        .find(|l| l.starts_with("NSpid:"))
        .expect("NSpid");
    assert!(nspid.ends_with("\t1"), "the root is pid 1 inside: {nspid}");
    std::fs::write(&w.trigger, b"").expect("trigger");
    let lines = wait_lines(&w.report, 2, Duration::from_secs(10));
    assert_eq!(lines[1], "ok", "{lines:?}");
    assert!(pid_exists(host), "the restored tree runs on");
    drop(guard);
}

/// Restores `entries` as pstree.img and expects a failure naming pstree.img and `entry`
/// before any task exists.
fn restore_fails_naming(w: &Started, entries: &[PstreeEntry], entry: usize, what: &str) {
    write_pstree(&w.images, entries);
    let pidfile = w.scratch.path().join("bad.pid");
    let out = criu(&[
        "restore",
        "-d",
        "-D",
        w.images.to_str().expect("path"),
        "--pidfile",
        pidfile.to_str().expect("path"),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{what}: restore must fail");
    assert!(
        err.contains("pstree.img") && err.contains(&format!("entry {entry}")),
        "{what}: {err}"
    );
    assert!(!pidfile.exists(), "{what}: no root was reported");
}

#[test]
fn bad_pid_namespace_pstree_fails_naming_the_entry() {
    let name = "bad_pid_namespace_pstree_fails_naming_the_entry";
    if skip_unless_root(name) || !tools_present(name) {
        return;
    }
    let mut guard = TreeGuard::new([]);
    let w = start("pidns-bad", &mut guard);
    let a = w.inner[0] as u32;
    dump_and_kill(&w);
    let good = pstree(&w.images);
    let i = good.iter().position(|e| e.pid == a).expect("A");

    let mut two_inits = good.clone();
    two_inits[i].pid = 1;
    two_inits[i].threads[0] = 1;
    restore_fails_naming(&w, &two_inits, i, "two tasks at pid 1");

    let mut zero = good.clone();
    zero[i].pid = 0;
    zero[i].threads[0] = 0;
    restore_fails_naming(&w, &zero, i, "pid 0");

    let max: u32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .expect("pid_max")
        .trim()
        .parse()
        .expect("pid_max");
    // With its core image there, so that only the namespace's limit is wrong.
    let t = w.inner[1];
    std::fs::copy(
        w.images.join(format!("core-{t}.img")),
        w.images.join(format!("core-{}.img", max + 5)),
    )
    .expect("copy core");
    let mut over = good.clone();
    over[i].threads[1] = max + 5;
    restore_fails_naming(&w, &over, i, "a tid over pid_max");

    // The good images still restore (nothing of the failed attempts is in the way).
    write_pstree(&w.images, &good);
    drop(guard);
}

/// A root that is not its pid namespace's init (pid 2 there, below a shell at pid 1) is
/// refused at dump naming it and its pid inside; it runs on.
#[test]
fn a_root_that_is_not_the_namespace_init_is_refused() {
    let name = "a_root_that_is_not_the_namespace_init_is_refused";
    if skip_unless_root(name) || !tools_present(name) {
        return;
    }
    let outer = spawn_bg(
        "unshare",
        &["--pid", "--fork", "sh", "-c", "sleep 1000 & wait"],
    );
    let mut guard = TreeGuard::new([outer]);
    let shell = first_child(outer);
    let sleep = first_child(shell);
    guard.extend([shell, sleep]);
    let images = ScratchDir::new("pidns-not-init");
    let out = criu(&[
        "dump",
        "-t",
        &sleep.to_string(),
        "-D",
        images.path().to_str().expect("path"),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!("pid {sleep}")) && err.contains("not its init"),
        "{err}"
    );
    assert!(pid_exists(sleep), "the refused task runs on");
    drop(guard);
}

/// A task in a pid namespace nested inside the root's is refused at dump, naming the pid
/// namespace kind; the tree runs on.
#[test]
fn a_nested_pid_namespace_is_refused() {
    let name = "a_nested_pid_namespace_is_refused";
    if skip_unless_root(name) || !tools_present(name) {
        return;
    }
    let outer = spawn_bg(
        "unshare",
        &[
            "--pid",
            "--fork",
            "sh",
            "-c",
            "unshare --pid --fork sleep 1000 & wait",
        ],
    );
    let mut guard = TreeGuard::new([outer]);
    let root = first_child(outer);
    let inner_unshare = first_child(root);
    let sleep = first_child(inner_unshare);
    guard.extend([root, inner_unshare, sleep]);
    let images = ScratchDir::new("pidns-nested");
    let out = criu(&[
        "dump",
        "-t",
        &root.to_string(),
        "-D",
        images.path().to_str().expect("path"),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("pid namespace other than the tree root's"),
        "{err}"
    );
    for p in [root, sleep] {
        assert!(pid_exists(p), "pid {p} runs on");
    }
    drop(guard);
}
