//! io_uring rings end to end through the real `criu` binary: a liburing workload
//! (tests/workloads/io_uring.c, built with gcc) and a Rust one on the `io-uring` crate
//! (tests/src/bin/wl_io_uring.rs, plain and SQPOLL, with a registered file) read and write
//! a file and a pipe through a ring, leaves two CQEs unreaped and one SQE written but not submitted, and after the
//! restore checks them, the kernel's counters and more rounds itself. A plain ring, an
//! SQPOLL ring, a SINGLE_ISSUER + DEFER_TASKRUN ring and a ring with registered files and
//! buffers (sparse tables, fixed-file and fixed-buffer I/O before and after) round-trip; a
//! read in flight on an idle pipe, a registered pipe end and a registered eventfd are
//! refused naming the ring (the tree runs on); a damaged plugin image fails the restore
//! naming it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use criu_tests::{ScratchDir, TreeGuard, skip_unless_root, wait_pid_gone};
use restore_common::{lines, spawn_bg, wait_lines};

mod restore_common;

struct Run {
    _dir: ScratchDir,
    report: PathBuf,
    images: PathBuf,
    exe: PathBuf,
    /// The workload's other processes (a child sharing the ring), from its ready line.
    others: std::cell::RefCell<Vec<i32>>,
}

impl Run {
    /// A run of the Rust workload on the `io-uring` crate (tests/src/bin/wl_io_uring.rs).
    fn rust(name: &str) -> Run {
        let dir = ScratchDir::new(name);
        let images = dir.path().join("images");
        std::fs::create_dir(&images).expect("mkdir");
        Run {
            report: dir.path().join("report"),
            images,
            exe: PathBuf::from(env!("CARGO_BIN_EXE_wl_io_uring")),
            others: Default::default(),
            _dir: dir,
        }
    }

    fn new(name: &str) -> Run {
        assert!(
            Path::new("/usr/include/liburing.h").exists(),
            "liburing-dev is needed for the io_uring workload (apt-get install liburing-dev)"
        );
        let dir = ScratchDir::new(name);
        let exe = dir.path().join("io_uring");
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads/io_uring.c");
        let built = Command::new("gcc")
            .args(["-O1", "-Wall", "-o"])
            .arg(&exe)
            .arg(src)
            .arg("-luring")
            .status()
            .expect("run gcc");
        assert!(built.success(), "gcc failed");
        let images = dir.path().join("images");
        std::fs::create_dir(&images).expect("mkdir");
        Run {
            report: dir.path().join("report"),
            images,
            exe,
            others: Default::default(),
            _dir: dir,
        }
    }

    /// Starts the workload in `mode`; returns its pid once ready, guarded with the other
    /// processes its ready line names (`ready PID [CHILD...]`).
    fn start(&self, mode: &str) -> (i32, TreeGuard) {
        let root = spawn_bg(
            "setsid",
            &[
                self.exe.to_str().expect("utf-8"),
                self.report.to_str().expect("utf-8"),
                mode,
            ],
        );
        let mut guard = TreeGuard::new([root]);
        let got = wait_lines(&self.report, 1, Duration::from_secs(20));
        let words: Vec<&str> = got[0].split_whitespace().collect();
        let others: Vec<i32> = words
            .iter()
            .skip(2)
            .map(|w| w.parse().expect("pid"))
            .collect();
        guard.extend(others.iter().copied());
        assert_eq!(
            words[..2.min(words.len())],
            ["ready", &root.to_string()],
            "workload: {got:?}"
        );
        *self.others.borrow_mut() = others;
        (root, guard)
    }

    fn criu(&self, args: &[&str], log: &str) -> (Output, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_criu_under_test"))
            .args(args)
            .arg("-D")
            .arg(&self.images)
            .args(["-v4", "-o", log])
            .output()
            .expect("run criu");
        let log = std::fs::read_to_string(self.images.join(log)).unwrap_or_default();
        let text = format!("{}\n{log}", String::from_utf8_lossy(&out.stderr));
        (out, text)
    }

    fn dump(&self, pid: i32, guard: TreeGuard) {
        let (out, text) = self.criu(&["dump", "-t", &pid.to_string(), "-s"], "dump.log");
        assert!(out.status.success(), "dump failed:\n{text}");
        let taken = guard.kill_and_wait(Duration::from_secs(10));
        assert!(taken.is_empty(), "pids still taken: {taken:?}");
    }

    fn go(&self) {
        std::fs::write(format!("{}.go", self.report.display()), "").expect("go");
    }

    /// Restores, lets the workload check itself; the restored task is guarded.
    fn restore_and_check(&self, pid: i32) -> TreeGuard {
        self.restore_and_check_phase(pid, 1)
    }

    /// [`Run::restore_and_check`] for the workload's `phase`-th wait (REPORT.go, then
    /// REPORT.go2, ...).
    fn restore_and_check_phase(&self, pid: i32, phase: u32) -> TreeGuard {
        std::fs::write(&self.report, "").expect("truncate report");
        let (out, text) = self.criu(&["restore", "-d"], &format!("restore{phase}.log"));
        let mut guard = TreeGuard::new([pid]);
        guard.extend(self.others.borrow().iter().copied());
        assert!(out.status.success(), "restore failed:\n{text}");
        match phase {
            1 => self.go(),
            n => std::fs::write(format!("{}.go{n}", self.report.display()), "").expect("go"),
        }
        let got = wait_lines(&self.report, 1, Duration::from_secs(20));
        assert!(
            got[0].starts_with("ok "),
            "report: {:?}",
            lines(&self.report)
        );
        guard
    }
}

fn round_trip(name: &str, mode: &str) {
    round_trip_of(name, mode, Run::new);
}

fn round_trip_of(name: &str, mode: &str, make: fn(&str) -> Run) {
    if skip_unless_root(name) {
        return;
    }
    let run = make(name);
    let (pid, guard) = run.start(mode);
    run.dump(pid, guard);
    let bin = run.images.join("criu-rs-io_uring.bin");
    let meta = std::fs::metadata(&bin).expect("plugin image");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o600
    );
    let guard = run.restore_and_check(pid);
    drop(guard);
}

#[test]
fn plain_ring_round_trips_with_its_counters_cqes_and_unsubmitted_sqe() {
    round_trip("io_uring_plain", "plain");
}

#[test]
fn io_uring_crate_ring_round_trips_with_a_registered_file() {
    round_trip_of("io_uring_crate", "plain", Run::rust);
}

#[test]
fn io_uring_crate_sqpoll_ring_round_trips() {
    round_trip_of("io_uring_crate_sqpoll", "sqpoll", Run::rust);
}

#[test]
fn sqpoll_ring_round_trips() {
    round_trip("io_uring_sqpoll", "sqpoll");
}

#[test]
fn single_issuer_defer_taskrun_ring_round_trips() {
    round_trip("io_uring_single", "single");
}

/// A refused dump: the message names the ring and the way out, the workload runs on (it
/// finishes its own checks, the in-flight read included).
fn refused(name: &str, mode: &str, want: &[&str]) {
    if skip_unless_root(name) {
        return;
    }
    let run = Run::new(name);
    let (pid, _guard) = run.start(mode);
    let (out, text) = run.criu(&["dump", "-t", &pid.to_string()], "dump.log");
    assert!(!out.status.success(), "dump succeeded:\n{text}");
    for w in want {
        assert!(text.contains(w), "no {w:?} in:\n{text}");
    }
    assert!(
        !run.images.join("pstree.img").exists(),
        "images left behind"
    );
    std::fs::write(&run.report, "").expect("truncate report");
    run.go();
    let got = wait_lines(&run.report, 1, Duration::from_secs(20));
    assert!(got[0].starts_with("ok "), "after the refusal: {got:?}");
}

#[test]
fn read_in_flight_on_an_idle_pipe_is_refused_and_the_tree_runs_on() {
    refused(
        "io_uring_inflight",
        "inflight",
        &[
            "io_uring ring (fd 3)",
            "requests in flight after 500 ms",
            "IORING_OP_READ",
            "IORING_OP_ASYNC_CANCEL",
        ],
    );
}

#[test]
fn registered_files_and_buffers_round_trip() {
    round_trip("io_uring_registered", "registered");
}

/// A restored ring (IORING_SETUP_NO_MMAP, its memory in memfd mappings of the task) is
/// dumped and restored again, twice, its registered files and buffers with it.
fn round_trips_again(name: &str, mode: &str) {
    if skip_unless_root(name) {
        return;
    }
    let run = Run::new(name);
    let (pid, guard) = run.start(mode);
    run.dump(pid, guard);
    let mut guard = run.restore_and_check(pid);
    for phase in 2..=3 {
        let got = wait_lines(&run.report, 2, Duration::from_secs(20));
        assert_eq!(got[1], format!("again {pid}"), "workload: {got:?}");
        for e in std::fs::read_dir(&run.images).expect("images") {
            std::fs::remove_file(e.expect("entry").path()).expect("rm image");
        }
        run.dump(pid, guard);
        guard = run.restore_and_check_phase(pid, phase);
    }
    drop(guard);
}

#[test]
fn restored_ring_dumps_and_restores_again() {
    round_trips_again("io_uring_again", "registered");
}

#[test]
fn restored_single_issuer_ring_dumps_and_restores_again() {
    round_trips_again("io_uring_again_single", "single");
}

/// A ring set up before a fork: parent and child map it and hold its fd; the child submits
/// (file and pipe I/O into its own buffers, the NOPs left in the CQ ring, the SQE left
/// prepared), the parent reaps and checks. After the restore it is one ring again, its
/// memory shared by both: the same turns go on, through three dumps and restores.
#[test]
fn ring_shared_by_a_forked_child_round_trips() {
    round_trips_again("io_uring_fork", "fork");
}

/// A ring whose fd a child holds without mapping it: after the restore the child's fd is
/// the parent's ring (same inode, same SQ head in its fdinfo), dumped and restored again.
#[test]
fn ring_fd_held_by_another_task_round_trips() {
    round_trips_again("io_uring_forkfd", "forkfd");
}

/// A SINGLE_ISSUER + DEFER_TASKRUN ring whose submitter is a forked child (it enabled the
/// ring) while the parent, first in the tree, only holds and maps it: the restore sets it
/// up in the child, found by asking each holder, and the child goes on submitting.
#[test]
fn single_issuer_ring_submitted_by_a_forked_child_round_trips() {
    round_trips_again("io_uring_forkissuer", "forkissuer");
}

#[test]
fn registered_pipe_end_is_refused_naming_the_slot() {
    refused(
        "io_uring_regpipe",
        "regpipe",
        &[
            "io_uring ring (fd 3)",
            "registered file slot 0 is a pipe or FIFO",
        ],
    );
}

#[test]
fn registered_eventfd_is_refused_naming_the_ring() {
    refused(
        "io_uring_eventfd",
        "eventfd",
        &["io_uring ring (fd 3)", "an eventfd is registered on it"],
    );
}

#[test]
fn ring_with_restrictions_is_refused_naming_them() {
    refused(
        "io_uring_restricted",
        "restricted",
        &[
            "io_uring ring (fd 3)",
            "it has restrictions (IORING_REGISTER_RESTRICTIONS)",
        ],
    );
}

/// A ring without an SQ array (IORING_SETUP_NO_SQARRAY, which shows nowhere) is refused by
/// its array of zeros, not restored as a plain ring that would take SQE 0 for every entry.
#[test]
fn ring_without_sq_array_is_refused_naming_the_flag() {
    refused(
        "io_uring_nosqarray",
        "nosqarray",
        &["its SQ array is all zeros", "IORING_SETUP_NO_SQARRAY"],
    );
}

#[test]
fn damaged_plugin_image_is_refused_naming_it() {
    if skip_unless_root("io_uring_bad_image") {
        return;
    }
    let run = Run::new("io_uring_bad_image");
    let (pid, guard) = run.start("plain");
    run.dump(pid, guard);
    let bin = run.images.join("criu-rs-io_uring.bin");
    let mut bytes = std::fs::read(&bin).expect("read");
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&bin, &bytes).expect("write");
    let (out, text) = run.criu(&["restore", "-d"], "restore-fail.log");
    let _guard = TreeGuard::new([pid]);
    assert!(!out.status.success(), "restore succeeded:\n{text}");
    assert!(text.contains("criu-rs-io_uring.bin"), "{text}");
    assert!(
        wait_pid_gone(pid, Duration::from_secs(10)),
        "pid {pid} left"
    );
}
