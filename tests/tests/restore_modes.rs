//! Restore modes: `-s` (left stopped) with `--pidfile`, and without `-d` (the restorer waits
//! for the restored root and reports how it ended).

use std::time::Duration;

use criu_core::restore::{RestoreOptions, RestoreOutcome, restore};
use criu_tests::{PidGuard, ScratchDir, skip_unless_root};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use restore_common::{dump_and_kill, lines, spawn_bg, wait_lines};

mod restore_common;
use criu_plugin_files as _;
use criu_plugin_pipes as _;

fn dumped(scratch: &ScratchDir) -> (i32, std::path::PathBuf, std::path::PathBuf) {
    dumped_with(scratch, "")
}

fn dumped_with(scratch: &ScratchDir, modes: &str) -> (i32, std::path::PathBuf, std::path::PathBuf) {
    let report = scratch.path().join("report.txt");
    let images = scratch.path().join("images");
    std::fs::create_dir_all(&images).expect("images dir");
    let pid = spawn_bg(
        env!("CARGO_BIN_EXE_wl_counter"),
        &[report.to_str().expect("utf-8 path"), "2", modes],
    );
    let guard = PidGuard::new(pid);
    wait_lines(&report, 3, Duration::from_secs(20));
    dump_and_kill(pid, &images);
    drop(guard);
    (pid, report, images)
}

fn state_of(pid: i32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next())
        .unwrap_or('?')
}

#[test]
fn restore_leave_stopped_with_pidfile() {
    if skip_unless_root("restore_leave_stopped_with_pidfile") {
        return;
    }
    let scratch = ScratchDir::new("restore-stopped");
    let (pid, report, images) = dumped(&scratch);
    let pidfile = scratch.path().join("pidfile");
    let opts = RestoreOptions {
        images_dir: images,
        detach: true,
        leave_stopped: true,
        pidfile: Some(pidfile.clone()),
        ..RestoreOptions::default()
    };
    let outcome = restore(&opts).unwrap_or_else(|e| panic!("restore: {e}"));
    let _restored = PidGuard::new(pid);
    assert_eq!(outcome, RestoreOutcome::Detached { root: pid });
    assert_eq!(
        std::fs::read_to_string(&pidfile).expect("pidfile").trim(),
        pid.to_string()
    );
    let n = lines(&report).len();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(state_of(pid), 'T', "restored task should be stopped");
    assert_eq!(
        lines(&report).len(),
        n,
        "a stopped task wrote to its report"
    );
    kill(Pid::from_raw(pid), Signal::SIGCONT).expect("SIGCONT");
    wait_lines(&report, n + 2, Duration::from_secs(10));
}

#[test]
fn restore_without_detach_reports_how_the_root_ended() {
    if skip_unless_root("restore_without_detach_reports_how_the_root_ended") {
        return;
    }
    let scratch = ScratchDir::new("restore-wait");
    let (pid, report, images) = dumped(&scratch);
    let n = lines(&report).len();
    let opts = RestoreOptions {
        images_dir: images,
        ..RestoreOptions::default()
    };
    let _restored = PidGuard::new(pid);
    // The restoring thread becomes the task's tracer and parent; it waits for it.
    let waiter = std::thread::spawn(move || restore(&opts).map_err(|e| e.to_string()));
    wait_lines(&report, n + 2, Duration::from_secs(20));
    kill(Pid::from_raw(pid), Signal::SIGTERM).expect("SIGTERM");
    let outcome = waiter.join().expect("restore thread").expect("restore");
    assert_eq!(
        outcome,
        RestoreOutcome::Killed {
            root: pid,
            signal: libc::SIGTERM
        }
    );
}

/// A task that stayed in the session it was started in needs --shell-job: refused without
/// it (nothing left behind), restored into our session with it.
#[test]
fn restore_shell_job() {
    if skip_unless_root("restore_shell_job") {
        return;
    }
    let scratch = ScratchDir::new("restore-shell-job");
    let (pid, report, images) = dumped_with(&scratch, "nosid");
    let mut opts = RestoreOptions {
        images_dir: images,
        detach: true,
        ..RestoreOptions::default()
    };
    let err = restore(&opts).expect_err("session not in the images");
    assert!(err.to_string().contains("--shell-job"), "{err}");
    assert!(!criu_tests::pid_exists(pid));

    opts.shell_job = true;
    let n = lines(&report).len();
    let outcome = restore(&opts).unwrap_or_else(|e| panic!("restore: {e}"));
    let _restored = PidGuard::new(pid);
    assert_eq!(outcome, RestoreOutcome::Detached { root: pid });
    wait_lines(&report, n + 2, Duration::from_secs(10));
    let sid = nix::unistd::getsid(Some(Pid::from_raw(pid))).expect("getsid");
    assert_eq!(sid, nix::unistd::getsid(None).expect("own sid"));
}
