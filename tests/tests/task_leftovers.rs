//! Task state CRIU restores that zdtm tests (aio00/aio01, maps12, loginuid), each through
//! the real `criu` binary with a C workload (tests/workloads/*.c, built with gcc) that
//! checks itself after the restore:
//! - AIO rings (`io_setup`): an unused ring, one whose tail wrapped behind its head with
//!   events waiting, one with its tail ahead; after the restore each is at the same address
//!   with the same nr/head/tail, the waiting events come out in order, new ones complete.
//! - guard regions (`MADV_GUARD_INSTALL`) in anonymous and file-backed private mappings,
//!   one also `MADV_WIPEONFORK`: they fault again after the restore, and in a child.
//! - the audit login uid (`/proc/self/loginuid`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use criu_core::image::{ImageDir, ImageKind};
use criu_proto::images::MmEntry;
use criu_tests::{ScratchDir, TreeGuard, skip_unless_root};
use restore_common::{lines, spawn_bg};

mod restore_common;

/// One run of a C workload `workloads/NAME.c` in a scratch directory.
struct Run {
    _dir: ScratchDir,
    work: PathBuf,
    images: PathBuf,
    exe: PathBuf,
}

impl Run {
    fn new(name: &str) -> Run {
        let dir = ScratchDir::new(name);
        let root = dir.path().canonicalize().expect("scratch dir");
        let exe = root.join(name);
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("workloads/{name}.c"));
        let built = Command::new("gcc")
            .args(["-O1", "-Wall", "-o"])
            .arg(&exe)
            .arg(&src)
            .status()
            .unwrap_or_else(|e| panic!("gcc is needed to build {}: {e}", src.display()));
        assert!(built.success(), "gcc failed on {}", src.display());
        let (work, images) = (root.join("work"), root.join("images"));
        std::fs::create_dir(&work).expect("mkdir");
        std::fs::create_dir(&images).expect("mkdir");
        Run {
            _dir: dir,
            work,
            images,
            exe,
        }
    }

    fn report(&self) -> PathBuf {
        self.work.join("report")
    }

    /// The first report line starting with `prefix`.
    fn wait_line(&self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let got = lines(&self.report());
            if let Some(l) = got.iter().find(|l| l.starts_with(prefix)) {
                return l.clone();
            }
            assert!(Instant::now() < deadline, "no {prefix:?} in {got:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the workload with `args` after its work dir; returns its pid, guarded, once
    /// it is ready, or `None` (with the reason printed) when it says the kernel lacks what
    /// it tests.
    fn start(&self, args: &[&str]) -> Option<(i32, TreeGuard)> {
        let mut argv = vec![
            self.exe.to_str().expect("utf-8"),
            self.work.to_str().expect("utf-8"),
        ];
        argv.extend(args);
        let pid = spawn_bg("setsid", &argv);
        let guard = TreeGuard::new([pid]);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = lines(&self.report());
            if got.iter().any(|l| l == "ready" || l.starts_with("ready ")) {
                return Some((pid, guard));
            }
            if let Some(l) = got.iter().find(|l| l.starts_with("unsupported ")) {
                eprintln!("skipping: the kernel lacks what this test needs: {l}");
                return None;
            }
            assert!(
                !got.iter().any(|l| l.starts_with("result ")) && Instant::now() < deadline,
                "workload: {got:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn criu(&self, args: &[&str], log: &str) {
        let out = Command::new(env!("CARGO_BIN_EXE_criu_under_test"))
            .args(args)
            .arg("-D")
            .arg(&self.images)
            .args(["-v4", "-o", log])
            .output()
            .expect("run criu");
        let log = std::fs::read_to_string(self.images.join(log)).unwrap_or_default();
        assert!(
            out.status.success(),
            "criu {args:?} failed:\n{}\n{log}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Dumps `pid` (killed by the dump), restores it detached and lets it check itself.
    fn round_trip(&self, pid: i32, guard: TreeGuard, between: impl FnOnce(&Run)) {
        self.criu(&["dump", "-t", &pid.to_string()], "dump.log");
        let taken = guard.kill_and_wait(Duration::from_secs(10));
        assert!(taken.is_empty(), "pids still taken: {taken:?}");
        between(self);
        std::fs::write(self.report(), "").expect("truncate report");
        let _restored = TreeGuard::new([pid]);
        self.criu(&["restore", "-d"], "restore.log");
        std::fs::write(self.work.join("go"), "").expect("go");
        let result = self.wait_line("result ", Duration::from_secs(30));
        assert_eq!(result, "result ok", "{:?}", lines(&self.report()));
    }

    fn mm(&self, pid: i32) -> MmEntry {
        ImageDir::open(&self.images)
            .expect("images")
            .read_single(ImageKind::Mm, pid as u64)
            .expect("mm image")
    }
}

#[test]
fn aio_rings_come_back_with_their_events_head_and_tail() {
    if skip_unless_root("aio_rings_come_back_with_their_events_head_and_tail") {
        return;
    }
    let run = Run::new("aio_rings");
    let Some((pid, guard)) = run.start(&[]) else {
        return;
    };
    run.round_trip(pid, guard, |run| {
        let mm = run.mm(pid);
        assert_eq!(mm.aios.len(), 3, "{:?}", mm.aios);
        for a in &mm.aios {
            let v = mm.vmas.iter().find(|v| v.start == a.id).expect("ring vma");
            assert_eq!(v.status, 1 << 13, "VMA_AREA_AIORING alone, as CRIU");
            assert_eq!(u64::from(a.ring_len), v.end - v.start);
        }
    });
}

#[test]
fn guard_regions_fault_again_after_restore() {
    if skip_unless_root("guard_regions_fault_again_after_restore") {
        return;
    }
    let run = Run::new("guard_regions");
    let Some((pid, guard)) = run.start(&[]) else {
        return;
    };
    run.round_trip(pid, guard, |run| {
        // Seven guarded pages, after the real VMAs (CRIU 4.2's form).
        let mm = run.mm(pid);
        let guards: Vec<_> = mm.vmas.iter().filter(|v| v.status == 1 << 16).collect();
        let pages: u64 = guards.iter().map(|v| (v.end - v.start) / 4096).sum();
        assert_eq!(pages, 7, "{guards:?}");
        let first = mm.vmas.iter().position(|v| v.status == 1 << 16).unwrap();
        assert!(mm.vmas[first..].iter().all(|v| v.status == 1 << 16));
    });
}

#[test]
fn loginuid_is_restored() {
    if skip_unless_root("loginuid_is_restored") {
        return;
    }
    let run = Run::new("loginuid");
    let Some((pid, guard)) = run.start(&["3"]) else {
        return;
    };
    run.round_trip(pid, guard, |_| {});
}

/// zdtm's unhashed_proc: a cwd in `/proc/PID` of a process that has died. CRIU recreates
/// it with a helper process; criu-rs refuses the dump naming the dead process (instead of
/// failing to open the cwd with ESRCH), and the task runs on.
#[test]
fn a_cwd_in_a_dead_process_proc_dir_is_refused_naming_it() {
    if skip_unless_root("a_cwd_in_a_dead_process_proc_dir_is_refused_naming_it") {
        return;
    }
    let dir = ScratchDir::new("deadproc-cwd");
    let report = dir.path().join("report");
    let script = "sleep 1000 & c=$!; cd /proc/$c || exit 1; kill -9 $c; wait $c; \
                  echo $c > \"$1\"; exec sleep 1000";
    let pid = spawn_bg("bash", &["-c", script, "bash", report.to_str().unwrap()]);
    let guard = TreeGuard::new([pid]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let dead: i32 = loop {
        if let Some(l) = lines(&report).first() {
            break l.parse().expect("dead pid");
        }
        assert!(Instant::now() < deadline, "the workload did not start");
        std::thread::sleep(Duration::from_millis(20));
    };
    let images = dir.path().join("images");
    std::fs::create_dir(&images).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_criu_under_test"))
        .args(["dump", "-t", &pid.to_string(), "-D"])
        .arg(&images)
        .output()
        .expect("run criu");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "dump succeeded");
    let want = format!("the /proc directory of process {dead}, which has died");
    assert!(
        err.contains(&want) && err.contains("helper process"),
        "{err}"
    );
    assert!(criu_tests::pid_exists(pid), "the task did not run on");
    drop(guard);
}
