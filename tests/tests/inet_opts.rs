//! Inet socket options (`inet` plugin) with the Python workload `inet_opts.py`: classic BPF
//! filters (`SO_ATTACH_FILTER`, kept in `sk_opts_entry.so_filter` as CRIU does) and IPv6
//! sockets bound to an address of no interface with `IP_FREEBIND`, switched off after bind
//! or kept, and two TCP listeners of one port bound with `SO_REUSEPORT`, one of which
//! dropped it (CRIU's sock_filter00, sk-freebind-false, socket-tcp-reuseport). Dumped,
//! killed, restored: the workload checks names, filters (read back and at work),
//! `IP_FREEBIND`, `SO_REUSEPORT` and a new connection to the listeners.

use std::time::Duration;

use criu_core::dump::{DumpOptions, dump};
use criu_core::restore::{RestoreOptions, RestoreOutcome, restore};
use criu_tests::{ScratchDir, TreeGuard, skip_unless_root};

mod inet_common;
mod restore_common;
mod unix_common;
use criu_plugin_files as _;
use criu_plugin_inet as _;
use criu_plugin_pipes as _;
use inet_common::chain;
use restore_common::{lines, spawn_bg, wait_lines};

#[test]
fn socket_filters_freebind_binds_and_reuseport_groups_survive() {
    if skip_unless_root("socket_filters_freebind_binds_and_reuseport_groups_survive") {
        return;
    }
    let dir = ScratchDir::new("inet-opts");
    let report = dir.path().join("report");
    let go = dir.path().join("go");
    let images = dir.path().join("images");
    std::fs::create_dir(&images).expect("mkdir");
    let script = unix_common::workload("inet_opts.py");
    let args = [
        "python3",
        script.to_str().expect("utf-8"),
        report.to_str().expect("utf-8"),
        go.to_str().expect("utf-8"),
    ];
    let root = spawn_bg("setsid", &args);
    let guard = TreeGuard::new([root]);
    let ready = wait_lines(&report, 1, Duration::from_secs(20));
    assert_eq!(ready, ["ready"], "workload setup");
    let mut d = DumpOptions::new(root, &images);
    d.leave_stopped = true;
    dump(&d).unwrap_or_else(|e| panic!("dump: {}", chain(&e)));
    let taken = guard.kill_and_wait(Duration::from_secs(10));
    assert!(taken.is_empty(), "pids still taken: {taken:?}");
    let opts = RestoreOptions {
        images_dir: images.clone(),
        detach: true,
        ..RestoreOptions::default()
    };
    let outcome = restore(&opts);
    let _guard = TreeGuard::new([root]);
    let outcome = outcome.unwrap_or_else(|e| panic!("restore: {}", chain(&e)));
    assert_eq!(outcome, RestoreOutcome::Detached { root });
    std::fs::write(&go, "").expect("go");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let all = lines(&report);
        if all.iter().any(|l| l == "ok") {
            return;
        }
        assert!(
            !all.iter().any(|l| l.starts_with("FAIL")) && std::time::Instant::now() < deadline,
            "workload verdict: {all:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
