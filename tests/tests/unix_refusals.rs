//! What the unix plugin refuses at dump, naming pid, fd and inodes: a peer outside the
//! tree (without `--ext-unix-sk` / `--external unix[INO]`: `unix_external.rs`), also of a socket travelling in a queue, and data sent on a connection its listener has
//! not accepted yet (as CRIU). (Fds in flight are dumped: `unix_scm.rs`.) The
//! failed dump leaves the task running with every queue as it was (the workload,
//! `tests/workloads/unix_refuse.py`, checks its queues after the dump failed).

use std::os::unix::net::UnixListener;
use std::time::Duration;

use criu_core::dump::{DumpOptions, dump};
use criu_tests::{PidGuard, ScratchDir, skip_unless_root};
use restore_common::{spawn_bg, wait_lines};

mod restore_common;
mod unix_common;
use criu_plugin_files as _;
use criu_plugin_pipes as _;
use criu_plugin_unix as _;

/// Runs the workload in `mode`, dumps it (which must fail with a message containing every
/// `want`), lets it check its queues.
fn refused(mode: &str, name: Option<&str>, want: &[&str]) {
    let dir = ScratchDir::new(&format!("unix-refuse-{mode}"));
    let report = dir.path().join("report");
    let go = dir.path().join("go");
    let images = dir.path().join("images");
    std::fs::create_dir(&images).expect("mkdir");
    let script = unix_common::workload("unix_refuse.py");
    let mut args = vec![
        "python3",
        script.to_str().expect("utf-8"),
        mode,
        report.to_str().expect("utf-8"),
        go.to_str().expect("utf-8"),
    ];
    args.extend(name);
    let pid = spawn_bg("setsid", &args);
    let _guard = PidGuard::new(pid);
    assert_eq!(wait_lines(&report, 1, Duration::from_secs(20)), ["ready"]);

    let err = dump(&DumpOptions::new(pid, &images)).expect_err("the dump must be refused");
    // The whole chain, as the CLI prints it.
    let mut msg = err.to_string();
    let mut src = std::error::Error::source(&err);
    while let Some(e) = src {
        msg += &format!(": {e}");
        src = e.source();
    }
    for w in want
        .iter()
        .chain([&format!("pid {pid}").as_str(), &"socket"])
    {
        assert!(msg.contains(w), "{w:?} missing in: {msg}");
    }
    eprintln!("refused as expected: {msg}");
    std::fs::write(&go, "").expect("go");
    let out = wait_lines(&report, 2, Duration::from_secs(20));
    assert_eq!(out[1], "ok", "queues after the failed dump");
}

#[test]
fn unix_peer_outside_the_tree_is_refused() {
    if skip_unless_root("unix_peer_outside_the_tree_is_refused") {
        return;
    }
    let name = format!("criu-rs-refuse-{}", std::process::id());
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(&name).expect("name");
    let listener = UnixListener::bind_addr(&addr).expect("bind");
    // Accepted by us: the workload's peer is a socket of this (undumped) process.
    let accept = std::thread::spawn(move || listener.accept().map(|(s, _)| s));
    let want = ["peer inode", "outside the dumped tree", "--ext-unix-sk"];
    refused("external", Some(&name), &want);
    drop(accept.join());
}

#[test]
fn unix_socket_in_flight_with_a_peer_outside_the_tree_is_refused() {
    if skip_unless_root("unix_socket_in_flight_with_a_peer_outside_the_tree_is_refused") {
        return;
    }
    let name = format!("criu-rs-refuse-flight-{}", std::process::id());
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(&name).expect("name");
    let listener = UnixListener::bind_addr(&addr).expect("bind");
    let accept = std::thread::spawn(move || listener.accept().map(|(s, _)| s));
    let want = ["in flight", "peer inode", "outside the dumped tree"];
    refused("flight-external", Some(&name), &want);
    drop(accept.join());
}

#[test]
fn unix_data_on_a_connection_not_accepted_is_refused() {
    if skip_unless_root("unix_data_on_a_connection_not_accepted_is_refused") {
        return;
    }
    let want = [
        "bytes sent on a connection not accepted yet",
        "socket inode",
    ];
    refused("pending-data", None, &want);
}
