//! Plugin API 0.5 end to end through the real command line: the out-of-tree example plugin
//! (`libcriu_example_eventfd.so`, loaded with `--plugin-dir`) logs with `tracing` from its
//! own `.so`, and its lines reach criu's `-o` logs under the plugin's name: one per eventfd
//! at dump (numbered by its per-dump state object), and at restore one per installed fd
//! from its restorer's last step, which runs with every task in place and still stopped
//! (remote getpid) and lists exactly the (pid, fd, file id) the images say were installed.
//! The restored workload then checks its eventfd itself.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use criu_proto::images::{FdTypes, FileEntry};
use criu_tests::{PidGuard, ScratchDir, skip_unless_root, wait_pid_gone};

mod plugin_abi_support;
mod plugin_support;
mod restore_common;

use plugin_abi_support::{EXAMPLE_NAME, build_example};
use restore_common::{lines, spawn_bg, wait_lines};

/// Runs `criu ARGS`, failing with its stderr and log when it fails.
fn criu(bin: &Path, args: &[&str], log: &Path) {
    let out = Command::new(bin).args(args).output().expect("run criu");
    assert!(
        out.status.success(),
        "criu {args:?} failed: {}\nlog:\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// The lines of `log` written by the example plugin (its name is the target).
fn plugin_lines(log: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(log).expect("log file");
    let tag = format!(" {EXAMPLE_NAME}: ");
    text.lines()
        .filter(|l| l.contains(&tag))
        .map(str::to_string)
        .collect()
}

#[test]
fn so_plugin_logs_reach_the_logs_and_finish_sees_the_installed_fds() {
    if skip_unless_root("so_plugin_logs_reach_the_logs_and_finish_sees_the_installed_fds") {
        return;
    }
    let Some((plugin_dir, holder)) = build_example("abi-log", &[]) else {
        return;
    };
    // The criu of this tree, built by cargo with the test package (no second build).
    let bin = std::path::PathBuf::from(env!("CARGO_BIN_EXE_criu_under_test"));
    let work = ScratchDir::new("abi-log-work");
    let imgs = work.path().join("images");
    std::fs::create_dir_all(&imgs).expect("images dir");
    let report = work.path().join("report");
    let pid = spawn_bg(holder.to_str().unwrap(), &[report.to_str().unwrap()]);
    let guard = PidGuard::new(pid);
    let first = wait_lines(&report, 2, Duration::from_secs(10));
    let fd: i32 = first[0]
        .split("fd=")
        .nth(1)
        .and_then(|f| f.parse().ok())
        .expect("fd in the ready line");

    let (pid_s, dir_s) = (pid.to_string(), plugin_dir.path().to_str().unwrap());
    let (imgs_s, dump_log) = (imgs.to_str().unwrap(), work.path().join("dump.log"));
    criu(
        &bin,
        &[
            "dump",
            "-t",
            &pid_s,
            "-D",
            imgs_s,
            "-v4",
            "-o",
            dump_log.to_str().unwrap(),
            "--plugin-dir",
            dir_s,
        ],
        &dump_log,
    );
    drop(guard);
    assert!(
        wait_pid_gone(pid, Duration::from_secs(10)),
        "{pid} still there"
    );
    let dumped = plugin_lines(&dump_log);
    assert_eq!(dumped.len(), 1, "{dumped:?}");
    assert!(
        dumped[0].contains("INFO")
            && dumped[0].contains("dumped eventfd #1 of this dump")
            && dumped[0].contains(&format!("pid={pid} fd={fd}"))
            && dumped[0].contains("counter=42"),
        "{dumped:?}"
    );

    // The file id the images give the eventfd.
    let mut ctx = plugin_support::DirContext::new(&imgs);
    let entries: Vec<FileEntry> =
        criu_plugin_api::read_messages(&mut ctx, criu_plugin_api::ImageRef::FILES)
            .expect("files.img decodes");
    let id = entries
        .iter()
        .find(|e| e.r#type == FdTypes::Eventfd as i32)
        .map(|e| e.id)
        .expect("an EVENTFD entry");

    let restore_log = work.path().join("restore.log");
    let pidfile = work.path().join("pidfile");
    let before = lines(&report).len();
    let _restored = PidGuard::new(pid);
    criu(
        &bin,
        &[
            "restore",
            "-D",
            imgs_s,
            "-d",
            "-v4",
            "-o",
            restore_log.to_str().unwrap(),
            "--pidfile",
            pidfile.to_str().unwrap(),
            "--plugin-dir",
            dir_s,
        ],
        &restore_log,
    );
    let restored = plugin_lines(&restore_log);
    assert_eq!(
        restored,
        restored
            .iter()
            .filter(|l| l.contains(&format!(
                "restore finished: pid {pid} fd {fd} id {id} (task stopped, remote getpid {pid})"
            )))
            .cloned()
            .collect::<Vec<_>>(),
        "one finish line per installed fd"
    );
    assert_eq!(restored.len(), 1, "{restored:?}");
    // The workload carries on with its eventfd as it was.
    let after = wait_lines(&report, before + 3, Duration::from_secs(10));
    let last = after.last().unwrap();
    assert!(
        last.contains(&format!("fd={fd} count=42 nonblock=1")),
        "restored task reports {last:?}"
    );
}
