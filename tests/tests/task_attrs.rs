//! Task attributes survive dump + restore, judged by the workload itself (wl_task_attrs):
//! per-thread scheduling policy with SCHED_RESET_ON_FORK and nice, madvise flags and a
//! MAP_DROPPABLE mapping, membarrier registrations, the parent-death signal and dumpable
//! flag of a task that dropped root (the kernel clears both on a uid change, so the restore
//! must set them after the credentials), and a pipe's SIGIO owner, signal and O_ASYNC: a
//! write to the pipe after the restore delivers the F_SETSIG signal. A read-only shared
//! mapping of a file opened read-write can be made writable after the restore; the
//! MAP_DROPPABLE mapping comes back empty, the MADV_WIPEONFORK one with its data.

use std::time::Duration;

use criu_core::restore::{RestoreOptions, RestoreOutcome, restore};
use criu_tests::{PidGuard, ScratchDir, skip_unless_root};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use restore_common::{dump_and_kill, lines, spawn_bg, wait_lines};

mod restore_common;
use criu_plugin_files as _;
use criu_plugin_pipes as _;

#[test]
fn task_attributes_survive_restore() {
    if skip_unless_root("task_attributes_survive_restore") {
        return;
    }
    let scratch = ScratchDir::new("task-attrs");
    let report = scratch.path().join("report.txt");
    let images = scratch.path().join("images");
    std::fs::create_dir_all(&images).expect("images dir");
    let pid = spawn_bg(
        env!("CARGO_BIN_EXE_wl_task_attrs"),
        &[report.to_str().expect("utf-8 path")],
    );
    let guard = PidGuard::new(pid);
    let l = wait_lines(&report, 2, Duration::from_secs(20));
    let before = l[1].clone();
    // What the workload set up must show, or the comparison below proves nothing.
    for want in [
        "sched=0x40000003/0/7,0x40000002/3/0",
        "pdeath=28 dumpable=1",
        "membarrier=16",
        "wipe=[wf dd]",
        "nofork=[rr dc]",
        "/35/1",
        "fown=self",
    ] {
        assert!(before.contains(want), "{want} missing in {before}");
    }
    dump_and_kill(pid, &images);
    drop(guard);

    let opts = RestoreOptions {
        images_dir: images.clone(),
        detach: true,
        ..RestoreOptions::default()
    };
    let outcome = restore(&opts).unwrap_or_else(|e| panic!("restore: {e}\n{e:?}"));
    let _restored = PidGuard::new(pid);
    assert_eq!(outcome, RestoreOutcome::Detached { root: pid });

    let n = lines(&report).len();
    kill(Pid::from_raw(pid), Signal::SIGUSR1).expect("SIGUSR1");
    let l = wait_lines(&report, n + 3, Duration::from_secs(10));
    assert_eq!(l[n], before, "state after restore");
    // Kernels before 6.11 have no MAP_DROPPABLE.
    let dropped = if before.contains("droppable=[none]") {
        "none"
    } else {
        "1"
    };
    assert_eq!(
        l[n + 1],
        format!("after mprotect=0 wipe_data=1 droppable_zero={dropped}")
    );
    assert_eq!(
        l[n + 2],
        "sigio 1",
        "F_SETSIG signal after a write to the pipe"
    );
}
