//! TCP and UDP sockets (`inet` plugin) with the C workload `inet_sockets`: a TCP connection
//! inside the tree, full in both directions, dumped with `--tcp-established` (TCP repair),
//! killed, restored: both sides check every byte of both streams, the UDP datagrams and their
//! senders, the options (a corked UDP socket comes back corked, its pending datagram
//! dropped), and accept new connections on the restored listeners.

use criu_tests::skip_unless_root;

mod inet_common;
mod restore_common;
mod unix_common;
use criu_plugin_files as _;
use criu_plugin_inet as _;
use criu_plugin_pipes as _;
use inet_common::{dump_and_kill, established, go_and_verify, restore_established, start};
use unix_common::crit_decodes;

#[test]
fn established_connection_with_queues_both_ways_round_trips() {
    if skip_unless_root("established_connection_with_queues_both_ways_round_trips") {
        return;
    }
    let Some(w) = start("inet-est") else { return };
    let mut d = established(&w);
    let mut w = dump_and_kill(w, &mut d);
    let streams: Vec<_> = std::fs::read_dir(&w.images)
        .expect("images")
        .filter_map(|e| {
            let n = e.expect("entry").file_name().into_string().expect("utf-8");
            n.starts_with("tcp-stream-").then_some(n)
        })
        .collect();
    assert_eq!(
        streams.len(),
        2,
        "one tcp-stream image per end: {streams:?}"
    );
    if let Some(files) = crit_decodes(&w.images.join("files.img")) {
        assert!(files.contains("INETSK"), "crit shows the sockets: {files}");
        for s in &streams {
            let t = crit_decodes(&w.images.join(s)).expect("crit ran once");
            assert!(t.contains("inq_seq"), "{t}");
        }
        let q = crit_decodes(&w.images.join("sk-queues.img")).expect("crit ran once");
        assert!(q.contains("id_for"), "{q}");
    }
    let images = w.images.clone();
    restore_established(&mut w, &images);
    go_and_verify(&w, true);
}

#[test]
fn a_connection_is_refused_without_tcp_established_and_the_tree_runs_on() {
    if skip_unless_root("a_connection_is_refused_without_tcp_established_and_the_tree_runs_on") {
        return;
    }
    let Some(w) = start("inet-refuse") else {
        return;
    };
    let d = criu_core::dump::DumpOptions::new(w.root, &w.images);
    let err = criu_core::dump::dump(&d).expect_err("a connection without --tcp-established");
    let msg = inet_common::chain(&err);
    assert!(
        msg.contains("--tcp-established") && msg.contains("ESTABLISHED") && msg.contains("fd "),
        "{msg}"
    );
    // The 4-tuple and the pid of the holder.
    assert!(
        msg.contains("TCP 127.0.0.1:") && msg.contains(" -> 127.0.0.1:"),
        "{msg}"
    );
    assert!(
        w.pids.iter().any(|p| msg.contains(&format!("pid {p}"))),
        "{msg} names no pid of {:?}",
        w.pids
    );
    go_and_verify(&w, false);
}

#[test]
fn a_failed_dump_leaves_every_connection_working() {
    if skip_unless_root("a_failed_dump_leaves_every_connection_working") {
        return;
    }
    let Some(w) = start("inet-fail") else { return };
    let mut d = established(&w);
    // After every socket was put in repair mode and read.
    d.fail_after = Some("files");
    criu_core::dump::dump(&d).expect_err("injected failure");
    go_and_verify(&w, false);
}

#[test]
fn leave_running_switches_repair_off_after_the_dump() {
    if skip_unless_root("leave_running_switches_repair_off_after_the_dump") {
        return;
    }
    let Some(w) = start("inet-leave") else { return };
    let mut d = established(&w);
    d.leave_running = true;
    criu_core::dump::dump(&d).unwrap_or_else(|e| panic!("dump: {}", inet_common::chain(&e)));
    go_and_verify(&w, false);
}

#[test]
fn bad_stream_images_and_a_missing_option_are_refused_at_restore() {
    if skip_unless_root("bad_stream_images_and_a_missing_option_are_refused_at_restore") {
        return;
    }
    let Some(w) = start("inet-bad") else { return };
    let mut d = established(&w);
    let w = dump_and_kill(w, &mut d);
    inet_common::restore_refused(&w, &w.images, false, &["--tcp-established", "ESTABLISHED"]);
    let stream = std::fs::read_dir(&w.images)
        .expect("images")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
        .find(|n| n.starts_with("tcp-stream-"))
        .expect("a tcp-stream image");
    let path = w.images.join(&stream);
    let mut data = std::fs::read(&path).expect("read");
    data.push(0);
    std::fs::write(&path, &data).expect("write");
    inet_common::restore_refused(&w, &w.images, true, &[&stream, "file id", "disagree"]);
}
