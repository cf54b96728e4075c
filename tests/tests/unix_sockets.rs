//! Unix sockets with data in flight (`unix` plugin): a C workload (compiled with gcc at
//! test time) sets up stream, datagram and seqpacket socketpairs (one end in a child), a
//! path-bound server with an accepted and a pending connection, an abstract datagram server
//! with named and unnamed senders, options, a shutdown and O_NONBLOCK, with data queued
//! everywhere. It is dumped, killed and restored; then it checks every queue (boundaries,
//! senders), name, option and state itself. Debian's crit decodes the images.

use std::time::Duration;

use criu_tests::{ScratchDir, TreeGuard, skip_unless_root};
use restore_common::{
    descendants, dump_stopped_and_kill, lines, restore_detached, spawn_bg, wait_lines,
};

mod restore_common;
mod unix_common;
use criu_plugin_files as _;
use criu_plugin_pipes as _;
use criu_plugin_unix as _;
use unix_common::{build_c, crit_decodes};

#[test]
fn unix_sockets_with_queued_data_round_trip() {
    if skip_unless_root("unix_sockets_with_queued_data_round_trip") {
        return;
    }
    let dir = ScratchDir::new("unix-sk");
    let Some(exe) = build_c("unix_sockets", dir.path()) else {
        return;
    };
    let report = dir.path().join("report");
    let go = dir.path().join("go");
    let images = dir.path().join("images");
    std::fs::create_dir(&images).expect("mkdir");
    let args = [
        exe.to_str().expect("utf-8"),
        report.to_str().expect("utf-8"),
        go.to_str().expect("utf-8"),
        dir.path().to_str().expect("utf-8"),
    ];
    let root = spawn_bg("setsid", &args);
    let mut guard = TreeGuard::new([root]);
    let ready = wait_lines(&report, 1, Duration::from_secs(20));
    assert_eq!(ready, ["ready"], "workload setup");
    let pids = descendants(root);
    assert_eq!(pids.len(), 2, "root and its child: {pids:?}");
    guard.extend(pids.iter().copied());

    dump_stopped_and_kill(root, &images, guard);
    let files = crit_decodes(&images.join("files.img"));
    if let Some(files) = files {
        assert!(files.contains("UNIXSK"), "crit shows the sockets: {files}");
        let queues = crit_decodes(&images.join("sk-queues.img")).expect("crit ran once");
        assert!(queues.contains("id_for"), "{queues}");
    }

    let _g = restore_detached(&images, root, pids.iter().copied());
    std::fs::write(&go, "").expect("go");
    let out = wait_lines(&report, 2, Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(200));
    let all = lines(&report);
    assert_eq!(
        all.last().map(String::as_str),
        Some("ok"),
        "workload verdict: {all:#?} (first: {out:?})"
    );
}
