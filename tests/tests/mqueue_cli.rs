//! The `criu` command line with message queues and the checks of the two IPC plugins:
//! `criu check --all` probes message queues and signalfds, `criu check --plugins` lists the
//! `mqueue` and `signalfd` plugins, and `criu dump` / `criu restore -d` carry the mqueue
//! workload (`workloads/mqueue.c`: queues named and unlinked, messages, notifications, a
//! child sharing them), which checks itself after the restore.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use criu_tests::{TreeGuard, skip_unless_root, wait_pid_gone};

mod mqueue_support;

use mqueue_support::{Workload, have_gcc};

/// This tree's `criu` (`criu_under_test`, the built-in plugins linked) run to completion.
fn criu(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_criu_under_test"))
        .args(args)
        .env_remove("CRIU_CONFIG_FILE")
        .env("HOME", "/nonexistent")
        .stdin(Stdio::null())
        .output()
        .expect("run criu")
}

fn assert_exit(out: &Output, code: i32, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}: stdout {}\nstderr {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_lists_the_ipc_plugins_and_their_kernel_features() {
    let out = criu(&["check", "--all"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for name in ["mqueue", "signalfd"] {
        let line = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no {name} line in criu check --all:\n{text}"));
        assert!(line.contains(" ok"), "{line}");
    }
    let out = criu(&["check", "--plugins"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines().any(|l| l.starts_with("mqueue ")
            && l.contains("[built-in]")
            && l.contains("fd types EXT; restore stages restore-failed")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("signalfd ") && l.ends_with("fd types SIGNALFD")),
        "{text}"
    );
}

#[test]
fn criu_dump_and_restore_carry_message_queues() {
    let test = "criu_dump_and_restore_carry_message_queues";
    if skip_unless_root(test) || !have_gcc(test) {
        return;
    }
    let wl = Workload::start("mqueue");
    let guard = TreeGuard::new(wl.pids());
    let images = wl.images.to_str().expect("path");
    let pid = wl.pid.to_string();
    let out = criu(&["dump", "-t", &pid, "-D", images, "-v4", "-o", "dump.log"]);
    assert_exit(&out, 0, "criu dump");
    for p in wl.pids() {
        assert!(
            wait_pid_gone(p, Duration::from_secs(10)),
            "{p} still taken after the dump"
        );
    }
    drop(guard);
    let out = criu(&["restore", "-D", images, "-d", "-v4", "-o", "restore.log"]);
    let _restored = TreeGuard::new(wl.pids());
    assert_exit(&out, 0, "criu restore");
    assert_eq!(wl.verdict(), "ok");
}
