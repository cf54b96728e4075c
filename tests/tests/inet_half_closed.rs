//! Half-closed TCP connections (`inet` plugin, `--tcp-established`) with the Python
//! workload `inet_half_closed.py`: five connections from the tree to the test (the peer,
//! outside the tree) in FIN_WAIT1, FIN_WAIT2, CLOSE_WAIT, LAST_ACK and CLOSING, dumped,
//! killed, restored. The workload checks each state again and what each connection does
//! afterwards; the test checks, as the peer, every byte the tree had queued before its FIN
//! and the end of each stream.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::Duration;

use criu_core::dump::{DumpOptions, dump};
use criu_core::restore::{RestoreOptions, RestoreOutcome, restore};
use criu_tests::{ScratchDir, TreeGuard, skip_unless_root};

mod inet_common;
mod restore_common;
mod unix_common;
use criu_plugin_files as _;
use criu_plugin_inet as _;
// The network lock, as in production (and zdtm): the peer sees nothing of the restore.
use criu_plugin_netlock as _;
use criu_plugin_pipes as _;
use inet_common::chain;
use restore_common::{lines, spawn_bg};

/// Reads one line byte by byte (nothing after it is consumed).
fn read_line(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    while b[0] != b'\n' {
        s.read_exact(&mut b).expect("a line from the workload");
        out.push(b[0]);
    }
    String::from_utf8(out).expect("utf-8")
}

fn wait_for(report: &std::path::Path, want: &str) -> Vec<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let all = lines(report);
        assert!(
            !all.iter().any(|l| l.starts_with("FAIL")) && std::time::Instant::now() < deadline,
            "waiting for {want:?}: {all:#?}"
        );
        if all.iter().any(|l| l == want) {
            return all;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads to the end of the stream: the pattern of `inet_half_closed.py`, `n` bytes.
fn expect_pattern_then_end(s: &mut TcpStream, name: &str, n: usize) {
    let mut got = Vec::new();
    s.read_to_end(&mut got)
        .unwrap_or_else(|e| panic!("{name}: {e} after {} bytes", got.len()));
    assert_eq!(got.len(), n, "{name}: bytes before the FIN");
    let bad = got
        .iter()
        .enumerate()
        .position(|(i, b)| *b != (i % 251) as u8);
    assert_eq!(bad, None, "{name}: a byte out of the pattern");
}

#[test]
fn half_closed_connections_in_every_state_survive() {
    if skip_unless_root("half_closed_connections_in_every_state_survive") {
        return;
    }
    let dir = ScratchDir::new("inet-half");
    let report = dir.path().join("report");
    let go = dir.path().join("go");
    let images = dir.path().join("images");
    std::fs::create_dir(&images).expect("mkdir");
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let port = listener.local_addr().expect("addr").port().to_string();
    let script = unix_common::workload("inet_half_closed.py");
    let args = [
        "python3",
        script.to_str().expect("utf-8"),
        report.to_str().expect("utf-8"),
        go.to_str().expect("utf-8"),
        &port,
    ];
    let root = spawn_bg("setsid", &args);
    let guard = TreeGuard::new([root]);
    let mut peers: HashMap<String, TcpStream> = HashMap::new();
    for _ in 0..5 {
        let (mut s, _) = listener.accept().expect("accept");
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let name = read_line(&mut s);
        peers.insert(name.trim().to_string(), s);
    }
    let mut peer = |n: &str| {
        peers
            .remove(n)
            .unwrap_or_else(|| panic!("no connection {n}"))
    };
    let (mut fw1, mut fw2, mut cw, mut la, mut cl) =
        (peer("fw1"), peer("fw2"), peer("cw"), peer("la"), peer("cl"));
    let mut rest = Vec::new();
    fw2.read_to_end(&mut rest).expect("fw2: the workload's FIN");
    assert!(rest.is_empty(), "fw2: {rest:?}");
    cw.write_all(b"before\n").expect("cw: write");
    cw.shutdown(Shutdown::Write).expect("cw: shutdown");
    la.shutdown(Shutdown::Write).expect("la: shutdown");
    wait_for(&report, "shut cl");
    cl.shutdown(Shutdown::Write).expect("cl: shutdown");
    let all = wait_for(&report, "ready");
    let filled: HashMap<&str, usize> = all
        .iter()
        .filter_map(|l| l.strip_prefix("fill "))
        .filter_map(|l| l.split_once(' '))
        .map(|(n, c)| (n, c.parse().expect("a count")))
        .collect();

    let mut d = DumpOptions::new(root, &images);
    d.tcp_established = true;
    d.leave_stopped = true;
    dump(&d).unwrap_or_else(|e| panic!("dump: {}", chain(&e)));
    let taken = guard.kill_and_wait(Duration::from_secs(10));
    assert!(taken.is_empty(), "pids still taken: {taken:?}");
    let opts = RestoreOptions {
        images_dir: images.clone(),
        detach: true,
        tcp_established: true,
        ..RestoreOptions::default()
    };
    let outcome = restore(&opts);
    let _guard = TreeGuard::new([root]);
    let outcome = outcome.unwrap_or_else(|e| panic!("restore: {}", chain(&e)));
    assert_eq!(outcome, RestoreOutcome::Detached { root });

    std::fs::write(&go, "").expect("go");
    // A FIN of the peer on fw2 before the check would end it (TIME_WAIT): after it.
    wait_for(&report, "states ok");
    fw2.write_all(b"after\n")
        .expect("fw2: write after the restore");
    drop(fw2);
    let mut got = Vec::new();
    cw.read_to_end(&mut got)
        .unwrap_or_else(|e| panic!("cw: {e}; workload: {:#?}", lines(&report)));
    assert_eq!(got, b"reply\n", "cw");
    expect_pattern_then_end(&mut fw1, "fw1", filled["fw1"]);
    expect_pattern_then_end(&mut la, "la", filled["la"]);
    expect_pattern_then_end(&mut cl, "cl", filled["cl"]);
    drop((fw1, la, cl));
    wait_for(&report, "ok");
}
