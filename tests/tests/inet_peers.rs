//! Inet sockets (`inet` plugin) at the tree's edge, with the Python workload `inet_peer.py`:
//! a connection to a peer outside the tree (the test itself) and a listener with a
//! connection not accepted yet (`--skip-in-flight`).
//!
//! The outside peer is quiet from before the dump until after the restore (no network lock:
//! that is the netlock plugin's), so what it checks is deterministic: bytes it sent before
//! the dump and the workload had not read are read after the restore, and the connection
//! carries data both ways afterwards.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
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

fn script() -> PathBuf {
    unix_common::workload("inet_peer.py")
}

struct Run {
    _dir: ScratchDir,
    report: PathBuf,
    go: PathBuf,
    images: PathBuf,
    root: i32,
}

fn launch(name: &str, mode: &str, port: Option<u16>) -> (Run, TreeGuard) {
    let dir = ScratchDir::new(name);
    let report = dir.path().join("report");
    let go = dir.path().join("go");
    let images = dir.path().join("images");
    std::fs::create_dir(&images).expect("mkdir");
    let port = port.map(|p| p.to_string()).unwrap_or_default();
    let mut args = vec![
        "python3".to_string(),
        script().to_str().expect("utf-8").to_string(),
        mode.to_string(),
        report.to_str().expect("utf-8").to_string(),
        go.to_str().expect("utf-8").to_string(),
    ];
    if !port.is_empty() {
        args.push(port);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // Its own session, as the other restore tests: the restore makes the tree's session.
    let root = spawn_bg("setsid", &args);
    let guard = TreeGuard::new([root]);
    let ready = wait_lines(&report, 1, Duration::from_secs(20));
    assert_eq!(ready, ["ready"], "workload setup");
    (
        Run {
            _dir: dir,
            report,
            go,
            images,
            root,
        },
        guard,
    )
}

fn dump_kill_restore(r: &Run, guard: TreeGuard, d: &mut DumpOptions) -> TreeGuard {
    d.leave_stopped = true;
    dump(d).unwrap_or_else(|e| panic!("dump: {}", chain(&e)));
    let taken = guard.kill_and_wait(Duration::from_secs(10));
    assert!(taken.is_empty(), "pids still taken: {taken:?}");
    let opts = RestoreOptions {
        images_dir: r.images.clone(),
        detach: true,
        tcp_established: true,
        ..RestoreOptions::default()
    };
    let outcome = restore(&opts);
    let guard = TreeGuard::new([r.root]);
    let outcome = outcome.unwrap_or_else(|e| panic!("restore: {}", chain(&e)));
    assert_eq!(outcome, RestoreOutcome::Detached { root: r.root });
    guard
}

fn verdict(r: &Run) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let all = lines(&r.report);
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

#[test]
fn a_connection_to_a_quiet_peer_outside_the_tree_survives() {
    if skip_unless_root("a_connection_to_a_quiet_peer_outside_the_tree_survives") {
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let port = listener.local_addr().expect("addr").port();
    let (r, guard) = launch("inet-outside", "outside", Some(port));
    let (mut conn, _) = listener.accept().expect("accept");
    // Queued in the workload's receive queue (acknowledged) before the dump.
    conn.write_all(b"before the dump\n").expect("write");
    std::thread::sleep(Duration::from_millis(200));
    let mut d = DumpOptions::new(r.root, &r.images);
    d.tcp_established = true;
    let _guard = dump_kill_restore(&r, guard, &mut d);
    std::fs::write(&r.go, "").expect("go");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut rd = BufReader::new(conn.try_clone().expect("clone"));
    let mut line = String::new();
    rd.read_line(&mut line).expect("the queued line, echoed");
    assert_eq!(line, "BEFORE THE DUMP\n");
    for k in 0..3 {
        writeln!(conn, "after the restore {k}").expect("write");
        line.clear();
        rd.read_line(&mut line).expect("echo");
        assert_eq!(line, format!("AFTER THE RESTORE {k}\n"));
    }
    conn.write_all(b"bye\n").expect("bye");
    verdict(&r);
}

#[test]
fn in_flight_connections_are_refused_or_skipped_with_skip_in_flight() {
    if skip_unless_root("in_flight_connections_are_refused_or_skipped_with_skip_in_flight") {
        return;
    }
    let (r, guard) = launch("inet-inflight", "inflight", None);
    let mut d = DumpOptions::new(r.root, &r.images);
    d.tcp_established = true;
    let err = dump(&d).expect_err("a listener with a connection not accepted yet");
    let msg = chain(&err);
    assert!(
        msg.contains("not accepted yet") && msg.contains("--skip-in-flight"),
        "{msg}"
    );
    d.skip_in_flight = true;
    let _guard = dump_kill_restore(&r, guard, &mut d);
    std::fs::write(&r.go, "").expect("go");
    verdict(&r);
}
