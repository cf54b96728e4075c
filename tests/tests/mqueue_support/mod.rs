//! C workloads of the mqueue and signalfd tests (`workloads/NAME.c`, built with gcc at test
//! time), run as `NAME REPORT TRIGGER`: each writes `ready PID`, waits for TRIGGER to exist,
//! checks its own state and writes `ok` or `FAIL: why`.

#![allow(dead_code)]

#[path = "../crit317/mod.rs"]
mod crit317;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use criu_tests::ScratchDir;

#[path = "../restore_common/mod.rs"]
mod restore_common;

// For the signalfd test; unused by the mqueue ones.
#[allow(unused_imports)]
pub use restore_common::dump_and_kill;
use restore_common::{spawn_bg, wait_lines};

/// Whether gcc runs; in CI (env CI set) its absence is a failure, elsewhere a skip.
pub fn have_gcc(test: &str) -> bool {
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

/// A started workload: its pid, report, trigger and an empty images dir. Dropped, it
/// removes the named queues the mqueue workloads create (`/criu-rs-wl?-PID`), which outlive
/// them when a test fails before they clean up.
pub struct Workload {
    /// Its pid.
    pub pid: i32,
    /// The pids after its own on its `ready` line (children it forked).
    pub children: Vec<i32>,
    /// Its report file.
    pub report: PathBuf,
    /// Created to let it check itself.
    pub trigger: PathBuf,
    /// An empty images directory.
    pub images: PathBuf,
    // Last: removed after everything above is done with.
    scratch: ScratchDir,
}

impl Workload {
    /// Builds `workloads/NAME.c` and starts it; returns once it reported
    /// `ready PID [CHILD...]`. The caller guards the pids ([`Workload::pids`]).
    pub fn start(name: &str) -> Workload {
        let scratch = ScratchDir::new(name);
        let dir = scratch.path().canonicalize().expect("scratch path");
        let exe = dir.join(name);
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("workloads/{name}.c"));
        let ok = Command::new("gcc")
            .args(["-O1", "-Wall", "-o"])
            .arg(&exe)
            .arg(src)
            .status()
            .expect("run gcc");
        assert!(ok.success(), "gcc failed on {name}.c");
        let images = dir.join("images");
        std::fs::create_dir(&images).expect("images dir");
        let report = dir.join("report");
        let trigger = dir.join("trigger");
        let pid = spawn_bg(
            exe.to_str().expect("path"),
            &[
                report.to_str().expect("path"),
                trigger.to_str().expect("path"),
            ],
        );
        let first = wait_lines(&report, 1, Duration::from_secs(10));
        let mut words = first[0].split_whitespace();
        assert_eq!(words.next(), Some("ready"), "{first:?}");
        assert_eq!(words.next(), Some(pid.to_string().as_str()), "{first:?}");
        let children = words.map(|w| w.parse().expect("child pid")).collect();
        Workload {
            pid,
            children,
            report,
            trigger,
            images,
            scratch,
        }
    }

    /// Its pid and its children's.
    pub fn pids(&self) -> Vec<i32> {
        std::iter::once(self.pid)
            .chain(self.children.iter().copied())
            .collect()
    }

    /// Lets the workload check itself and returns its verdict line.
    pub fn verdict(&self) -> String {
        std::fs::write(&self.trigger, b"").expect("trigger");
        let lines = wait_lines(&self.report, 2, Duration::from_secs(10));
        lines[1].clone()
    }
}

/// crit 3.17 decodes `file` (a files.img) as we do; skipped without crit unless under CI.
pub fn crit_317_decodes(file: &std::path::Path) {
    crit317::decodes_as_we_do(file, criu_proto::ImageKind::Files, |_| {});
}

/// The queue name prefixes of `workloads/mqueue*.c`, followed by the workload's pid.
const QUEUE_PREFIXES: [&str; 6] = [
    "/criu-rs-wl-",
    "/criu-rs-wlf-",
    "/criu-rs-wln-",
    "/criu-rs-wls-",
    "/criu-rs-wlt-",
    "/criu-rs-wlg-",
];

impl Drop for Workload {
    fn drop(&mut self) {
        for prefix in QUEUE_PREFIXES {
            let name = std::ffi::CString::new(format!("{prefix}{}", self.pid)).expect("name");
            // SAFETY: a valid NUL-terminated name; a queue that does not exist is ENOENT.
            unsafe { libc::mq_unlink(name.as_ptr()) };
        }
    }
}
