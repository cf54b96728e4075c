//! A real, unmodified program over unix sockets: Debian's memcached (`memcached -s PATH`),
//! started in one tree with two client workloads (`tests/workloads/mc_client.c`) that each
//! hold one connection and keep checking set/get/incr answers (each round reads back the
//! previous round's value, so memcached's memory is checked across the restore too). The
//! tree is dumped while the clients run, killed and restored; the clients carry on over the
//! same connections.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use criu_tests::{ScratchDir, TreeGuard, skip_unless_root};
use restore_common::{descendants, dump_stopped_and_kill, lines, restore_detached, spawn_bg};

mod restore_common;
mod unix_common;
use criu_plugin_epoll as _;
use criu_plugin_eventfd as _;
use criu_plugin_files as _;
use criu_plugin_pipes as _;
use criu_plugin_unix as _;
use unix_common::build_c;

/// The highest round each client reported; panics on a "FAIL" line.
fn rounds(report: &Path) -> BTreeMap<u32, u64> {
    let mut out = BTreeMap::new();
    for l in lines(report) {
        assert!(!l.starts_with("FAIL"), "client failed: {l}");
        let mut f = l.split_whitespace();
        if let (Some(id), Some(round)) = (f.next(), f.next())
            && let (Ok(id), Ok(round)) = (id.parse(), round.parse::<u64>())
        {
            let e = out.entry(id).or_insert(0);
            *e = round.max(*e);
        }
    }
    out
}

fn wait_rounds(report: &Path, min: &BTreeMap<u32, u64>, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = rounds(report);
        if min.iter().all(|(id, m)| now.get(id).is_some_and(|r| r > m)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: clients at {now:?}, want past {min:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn memcached_with_connected_clients_round_trip() {
    if skip_unless_root("memcached_with_connected_clients_round_trip") {
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
    let dir = ScratchDir::new("unix-mc");
    let Some(client) = build_c("mc_client", dir.path()) else {
        return;
    };
    let sock = dir.path().join("mc.sock");
    let report = dir.path().join("report");
    let images = dir.path().join("images");
    std::fs::create_dir(&images).expect("mkdir");
    let (c, s, r) = (client.display(), sock.display(), report.display());
    let script = format!(
        "memcached -s '{s}' -u root -t 2 </dev/null >/dev/null 2>&1 & '{c}' '{s}' 1 '{r}' & '{c}' '{s}' 2 '{r}' & wait"
    );
    let root = spawn_bg("setsid", &["sh", "-c", &script]);
    let mut guard = TreeGuard::new([root]);
    wait_rounds(
        &report,
        &BTreeMap::from([(1, 40), (2, 40)]),
        "before the dump",
    );
    let pids = descendants(root);
    assert_eq!(pids.len(), 4, "sh, memcached and two clients: {pids:?}");
    guard.extend(pids.iter().copied());

    dump_stopped_and_kill(root, &images, guard);
    let at_dump = rounds(&report);

    let _g = restore_detached(&images, root, pids.iter().copied());
    let want: BTreeMap<u32, u64> = at_dump.iter().map(|(&id, &r)| (id, r + 200)).collect();
    wait_rounds(&report, &want, "after the restore");
    assert_eq!(descendants(root), pids, "the same tree runs");
}
