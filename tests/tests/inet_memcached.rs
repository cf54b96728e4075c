//! A real, unmodified server over TCP: Debian's memcached (`memcached -l 127.0.0.1 -p PORT`)
//! is the tree; the test is its client, outside the tree, with an established connection
//! that stores a value before the dump. The tree is dumped with `--tcp-established`, killed
//! and restored; over the very same connection the value is read back and changed, and a
//! new connection sees the change.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use criu_core::dump::{DumpOptions, dump};
use criu_core::restore::{RestoreOptions, RestoreOutcome, restore};
use criu_tests::{ScratchDir, TreeGuard, skip_unless_root};

mod inet_common;
mod restore_common;
mod unix_common;
use criu_plugin_epoll as _;
use criu_plugin_eventfd as _;
use criu_plugin_files as _;
use criu_plugin_inet as _;
use criu_plugin_pipes as _;
use criu_plugin_unix as _;
use inet_common::chain;
use restore_common::{descendants, spawn_bg};

/// Sends `req` and reads lines until one of `end` (inclusive).
fn ask(c: &mut TcpStream, rd: &mut BufReader<TcpStream>, req: &str, end: &[&str]) -> Vec<String> {
    c.write_all(req.as_bytes()).expect("request");
    let mut out = Vec::new();
    loop {
        let mut l = String::new();
        rd.read_line(&mut l).expect("memcached's answer");
        assert!(
            !l.is_empty(),
            "memcached closed the connection after {out:?}"
        );
        let l = l.trim_end().to_string();
        let done = end.contains(&l.as_str());
        out.push(l);
        if done {
            return out;
        }
    }
}

fn connect(port: u16) -> (TcpStream, BufReader<TcpStream>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(c) => {
                c.set_read_timeout(Some(Duration::from_secs(10)))
                    .expect("timeout");
                let rd = BufReader::new(c.try_clone().expect("clone"));
                return (c, rd);
            }
            Err(e) => assert!(Instant::now() < deadline, "memcached never listened: {e}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn memcached_keeps_an_established_client_connection() {
    if skip_unless_root("memcached_keeps_an_established_client_connection") {
        return;
    }
    if Command::new("memcached").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "memcached is missing in CI"
        );
        eprintln!("skipping: no memcached (apt-get install -y memcached)");
        return;
    }
    let dir = ScratchDir::new("inet-mc");
    let images = dir.path().join("images");
    std::fs::create_dir(&images).expect("mkdir");
    // A free port: bound once by the test, released for memcached.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let p = port.to_string();
    let args = [
        "memcached",
        "-l",
        "127.0.0.1",
        "-p",
        &p,
        "-U",
        "0",
        "-u",
        "root",
        "-t",
        "2",
    ];
    let root = spawn_bg("setsid", &args);
    let mut guard = TreeGuard::new([root]);
    let (mut c, mut rd) = connect(port);
    let stored = ask(
        &mut c,
        &mut rd,
        "set k 0 0 6\r\nbefore\r\n",
        &["STORED", "ERROR"],
    );
    assert_eq!(stored, ["STORED"]);
    guard.extend(descendants(root));

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

    // The connection of before the dump.
    let got = ask(&mut c, &mut rd, "get k\r\n", &["END", "ERROR"]);
    assert_eq!(got, ["VALUE k 0 6", "before", "END"]);
    let stored = ask(
        &mut c,
        &mut rd,
        "set k 0 0 5\r\nafter\r\n",
        &["STORED", "ERROR"],
    );
    assert_eq!(stored, ["STORED"]);
    // A new one.
    let (mut c2, mut rd2) = connect(port);
    let got = ask(&mut c2, &mut rd2, "get k\r\n", &["END", "ERROR"]);
    assert_eq!(got, ["VALUE k 0 5", "after", "END"]);
}
