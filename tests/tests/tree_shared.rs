//! Processes sharing kernel objects without being threads, from C workloads built with gcc
//! at test time:
//! - a parent and a child sharing an fd table (clone CLONE_FILES) or cwd/root/umask (clone
//!   CLONE_FS) (`workloads/tree_shared.c`): after dump, kill and restore, a change the
//!   parent makes (a new fd, a chdir) must be seen by the child: the table / fs_struct is
//!   shared again, not copied;
//! - an address space shared with CLONE_VM, with and without CLONE_SIGHAND, and a plain fork
//!   below a sharer (`workloads/tree_shared_vm.c`): memory and handlers are shared again
//!   after the restore (checked by the workload and with kcmp), the forked copy is private;
//! - a vfork parent (refused, the tree runs on) and a root sharing its parent's memory
//!   (refused).

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

/// Builds `workloads/NAME.c` into `dir/NAME`.
fn build(dir: &Path, name: &str) -> PathBuf {
    let exe = dir.join(name);
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("workloads/{name}.c"));
    let ok = Command::new("gcc")
        .args(["-O1", "-o"])
        .arg(&exe)
        .arg(src)
        .status()
        .expect("run gcc");
    assert!(ok.success(), "gcc failed");
    exe
}

/// A C workload started from a fresh scratch dir: `work` is its directory argument (and
/// holds its report), `images` an empty images dir.
struct Started {
    work: PathBuf,
    images: PathBuf,
    report: PathBuf,
    root: i32,
    // Last: removed after everything above is done with.
    _scratch: ScratchDir,
}

/// Builds `workloads/NAME.c` and starts it as `NAME MODE WORK`.
fn start(scratch: &str, name: &str, mode: &str) -> Started {
    let scratch = ScratchDir::new(scratch);
    let dir = scratch.path().canonicalize().expect("scratch path");
    let exe = build(&dir, name);
    let work = dir.join("work");
    std::fs::create_dir(&work).expect("work dir");
    let images = dir.join("images");
    std::fs::create_dir(&images).expect("images dir");
    let report = work.join("report");
    let root = spawn_bg(
        exe.to_str().expect("utf-8"),
        &[mode, work.to_str().expect("utf-8")],
    );
    Started {
        work,
        images,
        report,
        root,
        _scratch: scratch,
    }
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
    let w = start(&format!("tree-shared-{mode}"), "tree_shared", mode);
    let (work, images, report, root) = (w.work.clone(), w.images.clone(), w.report.clone(), w.root);
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

/// Whether `a` and `b` share their kernel object of kcmp type `kind`.
fn kcmp_same(a: i32, b: i32, kind: i32) -> bool {
    // SAFETY: kcmp takes only integers.
    let r = unsafe { libc::syscall(libc::SYS_kcmp, a, b, kind, 0, 0) };
    assert!(r >= 0, "kcmp({a}, {b}, {kind}) failed");
    r == 0
}

const KCMP_VM: i32 = 1;
const KCMP_SIGHAND: i32 = 4;

/// The pid in a "WHAT PID" report line.
fn pid_in(line: &str) -> i32 {
    line.rsplit(' ')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("pid in report line")
}

/// (vm shared, sighand shared) of B, C and D with the root A.
fn sharing(a: i32, b: i32, c: i32, d: i32) -> Vec<(bool, bool)> {
    [b, c, d]
        .iter()
        .map(|&p| (kcmp_same(a, p, KCMP_VM), kcmp_same(a, p, KCMP_SIGHAND)))
        .collect()
}

/// Debian's crit 3.17 (`criu` package; required in CI) explores the memory of every
/// process of `images`, the CLONE_VM sharers included.
fn crit_explores(images: &Path, pids: &[i32]) {
    let Some(crit) = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("crit"))
            .find(|p| p.is_file())
    }) else {
        assert!(std::env::var_os("CI").is_none(), "crit is missing in CI");
        eprintln!("crit not installed: not exploring the images");
        return;
    };
    for what in ["mems", "rss"] {
        let out = Command::new(&crit)
            .arg("x")
            .arg(images)
            .arg(what)
            .output()
            .expect("run crit");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "crit x {what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for p in pids {
            assert!(
                text.lines().any(|l| l.trim() == p.to_string()),
                "crit x {what} lacks {p}: {text}"
            );
        }
    }
}

#[test]
fn tree_shared_address_space_and_signal_handlers() {
    let test = "tree_shared_address_space_and_signal_handlers";
    if skip_unless_root(test) || !have_gcc(test) {
        return;
    }
    let w = start("tree-shared-vm", "tree_shared_vm", "vm");
    let (work, images, report, a) = (w.work.clone(), w.images.clone(), w.report.clone(), w.root);
    let mut guards = TreeGuard::new([a]);
    let wait = Duration::from_secs(10);
    let b = pid_in(&wait_line(&report, "child B ", wait));
    let c = pid_in(&wait_line(&report, "child C ", wait));
    guards.extend([b, c]);
    let d = pid_in(&wait_line(&report, "child D ", wait));
    guards.extend([d]);
    let t = pid_in(&wait_line(&report, "thread ", wait));
    let b_threads = {
        let mut v = vec![b, t];
        v.sort_unstable();
        v
    };
    for p in [b, c, d] {
        wait_line(&report, &format!("pre ok {p}"), wait);
    }
    assert_eq!(restore_common::tids_of(b), b_threads, "B's threads");
    let expected = vec![(true, true), (true, false), (false, false)];
    assert_eq!(sharing(a, b, c, d), expected, "before the dump");

    dump_stopped_and_kill(a, &images, guards);
    // The sharers' memory is their parent's: dumped once, their images are copies.
    for img in ["mm", "pagemap"] {
        let read = |p: i32| std::fs::read(images.join(format!("{img}-{p}.img"))).expect(img);
        assert_eq!(read(b), read(a), "{img}-{b}.img");
        assert_eq!(read(c), read(a), "{img}-{c}.img");
    }

    crit_explores(&images, &[a, b, c, d]);

    let _g = restore_detached(&images, a, [b, c, d]);
    assert_eq!(sharing(a, b, c, d), expected, "after the restore");
    let tree = restore_common::tree_ids(a);
    assert_eq!(tree.get(&b).map(|t| t.0), Some(a), "B's parent");
    assert_eq!(tree.get(&c).map(|t| t.0), Some(a), "C's parent");
    assert_eq!(tree.get(&d).map(|t| t.0), Some(b), "D's parent");
    assert_eq!(restore_common::tids_of(b), b_threads, "B's threads");
    std::fs::write(work.join("go"), "").expect("go");
    for want in [
        format!("post ticks ok {a}"),
        format!("post mem ok {b}"),
        format!("post sighand shared {b}"),
        format!("post signal ok {b}"),
        format!("post thread ok {b}"),
        format!("post mem ok {c}"),
        format!("post sighand own {c}"),
        format!("post private ok {d}"),
    ] {
        wait_line(&report, &want, wait);
    }
    let bad: Vec<_> = lines(&report)
        .into_iter()
        .filter(|l| l.contains("leaked") || l.contains("broken"))
        .collect();
    assert!(bad.is_empty(), "{bad:?}");
}

#[test]
fn vfork_parent_and_root_sharing_its_parents_memory_are_refused() {
    let test = "vfork_parent_and_root_sharing_its_parents_memory_are_refused";
    if skip_unless_root(test) || !have_gcc(test) {
        return;
    }
    let w = start("tree-shared-vfork", "tree_shared_vm", "vfork");
    let (work, images, report, parent) =
        (w.work.clone(), w.images.clone(), w.report.clone(), w.root);
    let mut guards = TreeGuard::new([parent]);
    let child = pid_in(&wait_line(&report, "vfork child ", Duration::from_secs(10)));
    guards.extend([child]);

    for (pid, wants) in [
        (parent, ["vfork()", "child"]),
        (child, ["CLONE_VM", "outside the dumped tree"]),
    ] {
        std::fs::create_dir_all(&images).expect("images dir");
        let err = criu_core::dump::dump(&criu_core::dump::DumpOptions::new(pid, &images))
            .expect_err("refused")
            .to_string();
        assert!(
            wants.iter().all(|w| err.contains(w)) && err.contains(&child.to_string()),
            "{err}"
        );
        assert!(!images.join("inventory.img").exists(), "images left behind");
        // The child runs on.
        let n = ticks_of(&report, child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while ticks_of(&report, child) <= n + 2 {
            assert!(Instant::now() < deadline, "the vfork child stopped ticking");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // The parent was never left stopped: it resumes once the child exits.
    std::fs::write(work.join("stop"), "").expect("stop");
    wait_line(
        &report,
        &format!("parent resumed {parent}"),
        Duration::from_secs(10),
    );
    drop(guards);
}
