//! TCP and UDP sockets (`inet` plugin) with the C workload `inet_sockets`: a TCP connection
//! inside the tree, full in both directions, dumped with `--tcp-established` (TCP repair),
//! killed, restored: both sides check every byte of both streams, the UDP datagrams and their
//! senders, the options, and accept new connections on the restored listeners.

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
    go_and_verify(&w);
}
