//! Fds in flight in unix socket queues (`SCM_RIGHTS`, `unix` plugin): the workload
//! (`tests/workloads/unix_scm.py`) queues messages carrying a pipe with data, a regular
//! file at an offset, a socket with its own queue, a socketpair travelling whole, the
//! receiving socket itself, a listening socket with a connection waiting in its accept
//! queue, a socketpair whose ends travel in two different queues and a seqpacket socket
//! whose peer is gone; a file queued on an unbound datagram socket whose sender closed
//! (CRIU's zdtm scm09), none of them held by
//! any fd; the receiver then refuses fds (`SO_PASSRIGHTS` 0). It is dumped and killed; an
//! image whose queue names a file id that does not exist is refused naming the image and
//! the entry; the images as dumped restore and the workload receives every message and
//! checks each fd. Debian's crit decodes `sk-queues.img` with its `scm` entries.

use std::path::Path;
use std::time::Duration;

use criu_proto::framing::parse;
use criu_proto::images::SkPacketEntry;
use criu_tests::{PidGuard, ScratchDir, skip_unless_root};
use prost::Message;
use restore_common::{dump_and_kill, lines, restore_detached, spawn_bg, wait_lines};

mod restore_common;
mod unix_common;
use criu_plugin_files as _;
use criu_plugin_pipes as _;
use criu_plugin_unix as _;
use unix_common::{copy_images, crit_decodes, edit_image, restore_refused};

/// The queued messages of `sk-queues.img` in `images`.
fn queue_entries(images: &Path) -> Vec<SkPacketEntry> {
    let img = parse(&std::fs::read(images.join("sk-queues.img")).expect("sk-queues.img"))
        .expect("parse sk-queues.img");
    img.entries
        .iter()
        .map(|e| SkPacketEntry::decode(e.payload.as_slice()).expect("sk_packet_entry"))
        .collect()
}

#[test]
fn unix_fds_in_flight_round_trip() {
    if skip_unless_root("unix_fds_in_flight_round_trip") {
        return;
    }
    let dir = ScratchDir::new("unix-scm");
    let report = dir.path().join("report");
    let go = dir.path().join("go");
    let images = dir.path().join("images");
    std::fs::create_dir(&images).expect("mkdir");
    let script = unix_common::workload("unix_scm.py");
    let args = [
        "python3",
        script.to_str().expect("utf-8"),
        report.to_str().expect("utf-8"),
        go.to_str().expect("utf-8"),
        dir.path().to_str().expect("utf-8"),
    ];
    let pid = spawn_bg("setsid", &args);
    let guard = PidGuard::new(pid);
    assert_eq!(wait_lines(&report, 1, Duration::from_secs(20)), ["ready"]);
    dump_and_kill(pid, &images);
    drop(guard);

    // Ten messages carry fds (CRIU's scm_entry: type SCM_RIGHTS, file ids), eleven fds.
    let queued = queue_entries(&images);
    let scm: Vec<_> = queued.iter().flat_map(|e| &e.scm).collect();
    assert_eq!(scm.len(), 10, "messages with fds: {queued:?}");
    assert!(scm.iter().all(|s| s.r#type == libc::SCM_RIGHTS as u32));
    assert_eq!(scm.iter().map(|s| s.rights.len()).sum::<usize>(), 11);
    if let Some(text) = crit_decodes(&images.join("sk-queues.img")) {
        assert!(
            text.contains("scm") && text.contains("rights"),
            "crit shows the fds: {text}"
        );
        crit_decodes(&images.join("files.img"));
    }

    // An fd in flight that points nowhere.
    let at = queued
        .iter()
        .position(|e| !e.scm.is_empty())
        .expect("a message with fds");
    let d = dir.path().join("nowhere");
    copy_images(&images, &d);
    edit_image(&d, "sk-queues.img", |img| {
        let mut e = SkPacketEntry::decode(img.entries[at].payload.as_slice()).expect("entry");
        e.scm[0].rights[0] = 777_777;
        img.entries[at].payload = e.encode_to_vec();
    });
    let entry = format!("entry {at}");
    restore_refused(&d, pid, &["sk-queues.img", &entry, "file id 777777"]);

    let _g = restore_detached(&images, pid, [pid]);
    std::fs::write(&go, "").expect("go");
    let out = wait_lines(&report, 2, Duration::from_secs(20));
    assert_eq!(
        out[1],
        "ok",
        "the workload after the restore: {:?}",
        lines(&report)
    );
}
