//! The network lock end to end, through the real binary: a server in the dumped tree
//! (`tests/workloads/netlock_stream.py`) and a client (this test) stream counters to each
//! other both ways, reading slowly so that data is queued both ways, while the tree is
//! dumped with `--tcp-established` (locked, killed), left dead for seconds with the
//! client sending on (its packets dropped by the lock), and restored (lock lifted). Both
//! ends check every byte: nothing lost, duplicated or reordered, no reset. Once with the
//! client in another network namespace over a veth pair, once over loopback.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use criu_proto::images::TcpStreamEntry;
use criu_tests::{ScratchDir, TreeGuard, skip_unless_root};
use netlock_support::NetNs;

mod netlock_support;
mod restore_common;

/// Bytes each way.
const TOTAL: u64 = 8 << 20;
/// How long the tree stays dumped (dead, locked) before its restore.
const DEAD_FOR: Duration = Duration::from_secs(2);

/// Bytes `[pos, pos + n)` of the counter stream (64-bit big-endian 0, 1, 2, ...), as the
/// workload makes it.
fn stream(pos: u64, n: usize) -> Vec<u8> {
    let (first, last) = (pos / 8, (pos + n as u64).div_ceil(8));
    let block: Vec<u8> = (first..last).flat_map(|i| i.to_be_bytes()).collect();
    let off = (pos - first * 8) as usize;
    block[off..off + n].to_vec()
}

/// Sends the stream, blocking while the lock holds (the kernel retransmits).
fn send_all(mut c: TcpStream) -> Result<(), String> {
    let mut sent = 0u64;
    while sent < TOTAL {
        let n = (TOTAL - sent).min(65536) as usize;
        c.write_all(&stream(sent, n))
            .map_err(|e| format!("client send at byte {sent}: {e}"))?;
        sent += n as u64;
    }
    Ok(())
}

/// Reads and checks the server's stream, slowly (data queues in the server).
fn receive_all(mut c: TcpStream) -> Result<(), String> {
    let mut got = 0u64;
    let mut buf = vec![0u8; 16384];
    while got < TOTAL {
        let n = c
            .read(&mut buf)
            .map_err(|e| format!("client receive at byte {got}: {e}"))?;
        if n == 0 {
            return Err(format!("end of stream after {got} of {TOTAL} bytes"));
        }
        if buf[..n] != stream(got, n)[..] {
            return Err(format!(
                "bytes {got}..{} are not the stream's",
                got + n as u64
            ));
        }
        got += n as u64;
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

fn criu(args: &[&str], images: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_criu_under_test"))
        .args(args)
        .arg("-D")
        .arg(images)
        .output()
        .expect("run criu");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The dumped connection had bytes queued both ways: received and not read by the server
/// (`inq_len`), sent and not acknowledged or not sent yet (`outq_len`).
fn assert_queued_both_ways(images: &Path) {
    let streams: Vec<PathBuf> = std::fs::read_dir(images)
        .expect("images")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("tcp-stream-"))
        })
        .collect();
    assert_eq!(streams.len(), 1, "one connection in the tree: {streams:?}");
    let data = std::fs::read(&streams[0]).expect("read the tcp-stream image");
    let entries: Vec<TcpStreamEntry> = criu_proto::framing::parse(&data)
        .and_then(|i| i.decode_entries())
        .expect("decode the tcp-stream image");
    let e = &entries[0];
    assert!(
        e.inq_len > 0 && e.outq_len > 0,
        "nothing queued one way at dump time: inq {} outq {}",
        e.inq_len,
        e.outq_len
    );
}

fn dump_lock_restore(tag: &str, listen: SocketAddr, client_ns: Option<&NetNs>) {
    let dir = ScratchDir::new(tag);
    let report = dir.path().join("report");
    let images = dir.path().join("images");
    std::fs::create_dir(&images).expect("mkdir images");
    let script: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads/netlock_stream.py");
    let port = listen.port().to_string();
    let total = TOTAL.to_string();
    // Its own session: the restore makes the tree's session.
    let root = restore_common::spawn_bg(
        "setsid",
        &[
            "python3",
            script.to_str().expect("utf-8"),
            &listen.ip().to_string(),
            &port,
            report.to_str().expect("utf-8"),
            &total,
        ],
    );
    let guard = TreeGuard::new([root]);
    let ready = restore_common::wait_lines(&report, 1, Duration::from_secs(20));
    assert_eq!(ready, ["ready"], "workload setup");
    let connect = || TcpStream::connect_timeout(&listen, Duration::from_secs(5)).expect("connect");
    let conn = match client_ns {
        Some(ns) => ns.enter(connect),
        None => connect(),
    };
    // A hang (the connection never coming back) fails instead of blocking the suite.
    conn.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    conn.set_write_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let sender = {
        let c = conn.try_clone().expect("clone");
        std::thread::spawn(move || send_all(c))
    };
    let receiver = {
        let c = conn.try_clone().expect("clone");
        std::thread::spawn(move || receive_all(c))
    };
    std::thread::sleep(Duration::from_millis(300));
    let (ok, err) = criu(
        &[
            "dump",
            "-t",
            &root.to_string(),
            "--tcp-established",
            "-v4",
            "-o",
            "dump.log",
        ],
        &images,
    );
    let log = std::fs::read_to_string(images.join("dump.log")).unwrap_or_default();
    assert!(ok, "dump: {err}\n{log}");
    assert!(
        log.contains("network locked (eBPF)"),
        "the dump took no lock:\n{log}"
    );
    assert_queued_both_ways(&images);
    let record = std::fs::read_to_string(images.join("criu-rs-netlock.txt")).expect("record");
    let record = criu_plugin_netlock::LockRecord::decode(&record).expect("record");
    let pins = record.pin_dir.clone().expect("an eBPF lock");
    let dropped = |p: &Path| {
        let (i, e) = criu_plugin_netlock::ebpf::dropped(p).expect("stats");
        i + e
    };
    let before = dropped(&pins);
    std::thread::sleep(DEAD_FOR);
    let during = dropped(&pins) - before;
    let (ok, err) = criu(
        &[
            "restore",
            "-d",
            "--tcp-established",
            "-v4",
            "-o",
            "restore.log",
        ],
        &images,
    );
    let log = std::fs::read_to_string(images.join("restore.log")).unwrap_or_default();
    assert!(ok, "restore: {err}\n{log}");
    let deadline = Instant::now() + Duration::from_secs(90);
    let verdict = loop {
        let lines = restore_common::lines(&report);
        if let Some(v) = lines.iter().find(|l| *l == "ok" || l.starts_with("FAIL")) {
            break v.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no verdict from the server: {lines:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let sent = sender.join().expect("sender thread");
    let received = receiver.join().expect("receiver thread");
    assert_eq!(verdict, "ok", "the server's check");
    assert_eq!(sent, Ok(()), "the client's sending");
    assert_eq!(received, Ok(()), "the client's check");
    assert!(
        during > 0,
        "the lock dropped nothing while the tree was dead"
    );
    for t in &record.tuples {
        assert!(
            !criu_plugin_netlock::ebpf::is_listed(&pins, t).expect("look up"),
            "{t} still locked after the restore"
        );
    }
    drop(guard);
}

#[test]
fn a_client_in_another_namespace_streams_through_dump_and_restore() {
    if skip_unless_root("a_client_in_another_namespace_streams_through_dump_and_restore") {
        return;
    }
    let ns = NetNs::with_veth("e2e", 234);
    dump_lock_restore(
        "netlock-e2e-veth",
        "10.234.0.1:7020".parse().unwrap(),
        Some(&ns),
    );
}

#[test]
fn a_loopback_client_streams_through_dump_and_restore() {
    if skip_unless_root("a_loopback_client_streams_through_dump_and_restore") {
        return;
    }
    dump_lock_restore("netlock-e2e-lo", "127.0.0.1:7021".parse().unwrap(), None);
}
