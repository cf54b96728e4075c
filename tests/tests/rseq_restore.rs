//! rseq critical sections across a dump (the workload `workloads/rseq_cs.c`, built with gcc
//! at test time): a thread that spends nearly all its time inside a section is frozen in it;
//! it must resume at its abort handler, as the kernel would have sent it there, and not
//! finish a section whose `rseq_cs` pointer the kernel cleared while the restore ran it
//! outside the section. The workload checks every section it completes after the restore.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use criu_tests::{ScratchDir, TreeGuard, skip_unless_root};
use restore_common::{dump_stopped_and_kill, lines, restore_detached, spawn_bg};

mod restore_common;

use criu_plugin_files as _;

fn wait_line(report: &Path, prefix: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(l) = lines(report).into_iter().find(|l| l.starts_with(prefix)) {
            return l;
        }
        assert!(
            Instant::now() < deadline,
            "no {prefix:?} in {:?}",
            lines(report)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_thread_frozen_in_an_rseq_section_resumes_at_its_abort_handler() {
    let test = "a_thread_frozen_in_an_rseq_section_resumes_at_its_abort_handler";
    if skip_unless_root(test) {
        return;
    }
    if !cfg!(target_arch = "x86_64") {
        eprintln!("skipping {test}: the workload's section is x86_64 assembly");
        return;
    }
    let scratch = ScratchDir::new("rseq-cs");
    let dir = scratch.path().canonicalize().unwrap();
    let exe = dir.join("rseq_cs");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads/rseq_cs.c");
    let built = Command::new("gcc")
        .args(["-O1", "-o"])
        .arg(&exe)
        .arg(src)
        .status()
        .unwrap_or_else(|e| panic!("{test}: gcc is needed to build the workload: {e}"));
    assert!(built.success(), "gcc failed");
    let work = dir.join("work");
    std::fs::create_dir(&work).unwrap();
    let report = work.join("report");
    let root = spawn_bg("setsid", &[exe.to_str().unwrap(), work.to_str().unwrap()]);
    let guard = TreeGuard::new([root]);
    wait_line(&report, "ready", Duration::from_secs(10));
    // Let it run sections for a while: nearly every instant is inside one.
    std::thread::sleep(Duration::from_millis(300));
    let images = dir.join("images");
    std::fs::create_dir(&images).unwrap();
    dump_stopped_and_kill(root, &images, guard);
    std::fs::write(&report, "").unwrap();

    let _restored = restore_detached(&images, root, []);
    std::fs::write(work.join("go"), "").unwrap();
    let result = wait_line(&report, "result ", Duration::from_secs(60));
    assert!(result.starts_with("result ok"), "{:?}", lines(&report));
}
