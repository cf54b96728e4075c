//! C workloads of the mqueue and signalfd tests (`workloads/NAME.c`, built with gcc at test
//! time), run as `NAME REPORT TRIGGER`: each writes `ready PID`, waits for TRIGGER to exist,
//! checks its own state and writes `ok` or `FAIL: why`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use criu_tests::ScratchDir;

use crate::restore_common::{spawn_bg, wait_lines};

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

/// A started workload: its pid, report, trigger and an empty images dir.
pub struct Workload {
    /// Its pid.
    pub pid: i32,
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
    /// Builds `workloads/NAME.c` and starts it; returns once it reported `ready PID`.
    /// The caller guards the pid.
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
        assert_eq!(first[0], format!("ready {pid}"), "{first:?}");
        Workload {
            pid,
            report,
            trigger,
            images,
            scratch,
        }
    }

    /// Lets the workload check itself and returns its verdict line.
    pub fn verdict(&self) -> String {
        std::fs::write(&self.trigger, b"").expect("trigger");
        let lines = wait_lines(&self.report, 2, Duration::from_secs(10));
        lines[1].clone()
    }
}
