//! `--tcp-close` and shutdown states (`inet` plugin) with the Python workload
//! `inet_close.py`. tcp: an established connection and one shut both ways (both ends in the
//! tree, CLOSE after the FINs), dumped with `--tcp-established` or with `--tcp-close` (no
//! stream image then), restored with `--tcp-close`: every end reads EOF, polls POLLHUP,
//! fails writes with EPIPE, and the listener accepts a new connection (CRIU's
//! socket-tcp-close0, socket-tcp-close2, socket-dump-tcp-close). udp: a connected pair shut
//! for writing on one side and reading on the other, and an unbound socket shut both ways
//! (CRIU's socket_udp_shutdown).

use std::path::Path;
use std::time::Duration;

use criu_core::dump::{DumpOptions, dump};
use criu_core::image::{ImageDir, ImageKind};
use criu_core::restore::{RestoreOptions, RestoreOutcome, restore};
use criu_proto::images::InventoryEntry;
use criu_tests::{ScratchDir, TreeGuard, skip_unless_root};

mod inet_common;
mod restore_common;
mod unix_common;
use criu_plugin_files as _;
use criu_plugin_inet as _;
use criu_plugin_pipes as _;
use inet_common::chain;
use restore_common::{lines, spawn_bg, wait_lines};

/// Starts `inet_close.py MODE`, waits for "ready"; the guard kills it.
fn start(dir: &ScratchDir, mode: &str) -> (i32, TreeGuard) {
    let script = unix_common::workload("inet_close.py");
    let report = dir.path().join("report");
    let go = dir.path().join("go");
    let args = [
        "python3",
        script.to_str().expect("utf-8"),
        mode,
        report.to_str().expect("utf-8"),
        go.to_str().expect("utf-8"),
    ];
    let root = spawn_bg("setsid", &args);
    let guard = TreeGuard::new([root]);
    let ready = wait_lines(&report, 1, Duration::from_secs(20));
    assert_eq!(ready, ["ready"], "workload setup");
    (root, guard)
}

fn dump_and_kill(d: &mut DumpOptions, guard: TreeGuard) {
    d.leave_stopped = true;
    dump(d).unwrap_or_else(|e| panic!("dump: {}", chain(&e)));
    let taken = guard.kill_and_wait(Duration::from_secs(10));
    assert!(taken.is_empty(), "pids still taken: {taken:?}");
}

/// Restores `images`, lets the workload go and waits for its "ok".
fn restore_and_verify(dir: &ScratchDir, root: i32, images: &Path, tcp_close: bool) {
    let opts = RestoreOptions {
        images_dir: images.to_path_buf(),
        detach: true,
        tcp_close,
        ..RestoreOptions::default()
    };
    let outcome = restore(&opts);
    let _guard = TreeGuard::new([root]);
    let outcome = outcome.unwrap_or_else(|e| panic!("restore: {}", chain(&e)));
    assert_eq!(outcome, RestoreOutcome::Detached { root });
    std::fs::write(dir.path().join("go"), "").expect("go");
    let report = dir.path().join("report");
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

fn tcp_streams(images: &Path) -> usize {
    std::fs::read_dir(images)
        .expect("images")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().starts_with("tcp-stream-"))
        })
        .count()
}

#[test]
fn established_dump_restored_with_tcp_close_comes_back_closed() {
    if skip_unless_root("established_dump_restored_with_tcp_close_comes_back_closed") {
        return;
    }
    let dir = ScratchDir::new("inet-close-est");
    let images = dir.path().join("images");
    std::fs::create_dir(&images).expect("mkdir");
    let (root, guard) = start(&dir, "tcp");
    let mut d = DumpOptions::new(root, &images);
    d.tcp_established = true;
    dump_and_kill(&mut d, guard);
    assert_eq!(tcp_streams(&images), 2, "one stream image per end");
    let inv: InventoryEntry = ImageDir::open(&images)
        .expect("images")
        .read_single(ImageKind::Inventory, 0)
        .expect("inventory.img");
    assert_eq!(inv.tcp_close, None, "not dumped with --tcp-close");
    restore_and_verify(&dir, root, &images, true);
}

#[test]
fn tcp_close_at_dump_writes_no_stream_and_needs_tcp_close_at_restore() {
    if skip_unless_root("tcp_close_at_dump_writes_no_stream_and_needs_tcp_close_at_restore") {
        return;
    }
    let dir = ScratchDir::new("inet-close-dump");
    let images = dir.path().join("images");
    std::fs::create_dir(&images).expect("mkdir");
    let (root, guard) = start(&dir, "tcp");
    let mut d = DumpOptions::new(root, &images);
    d.tcp_close = true;
    dump_and_kill(&mut d, guard);
    assert_eq!(tcp_streams(&images), 0, "--tcp-close dumps no connection");
    // As CRIU, the inventory records it, and a restore without --tcp-close is refused
    // before any task exists, naming the inventory and the option.
    let inv: InventoryEntry = ImageDir::open(&images)
        .expect("images")
        .read_single(ImageKind::Inventory, 0)
        .expect("inventory.img");
    assert_eq!(inv.tcp_close, Some(true), "inventory_entry.tcp_close");
    let opts = RestoreOptions {
        images_dir: images.clone(),
        detach: true,
        tcp_established: true,
        ..RestoreOptions::default()
    };
    let result = restore(&opts);
    let _guard = TreeGuard::new([root]);
    let msg = chain(&result.expect_err("a restore without --tcp-close must fail"));
    assert!(
        msg.contains("inventory.img") && msg.contains("--tcp-close"),
        "error: {msg}"
    );
    assert!(!criu_tests::pid_exists(root), "pid {root} left running");
    restore_and_verify(&dir, root, &images, true);
}

#[test]
fn udp_shutdown_states_survive() {
    if skip_unless_root("udp_shutdown_states_survive") {
        return;
    }
    let dir = ScratchDir::new("inet-udp-shut");
    let images = dir.path().join("images");
    std::fs::create_dir(&images).expect("mkdir");
    let (root, guard) = start(&dir, "udp");
    let mut d = DumpOptions::new(root, &images);
    dump_and_kill(&mut d, guard);
    restore_and_verify(&dir, root, &images, false);
}
