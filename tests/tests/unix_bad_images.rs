//! Damaged unix socket images are refused at restore with an error naming the image and
//! the entry, before any task exists: a queue entry longer than its data, a queue for a
//! socket that does not exist, a socket inode referenced twice, a peer that does not exist.
//! The undamaged images then restore and the workload finds its queue whole.

use std::time::Duration;

use criu_proto::framing::RawImage;
use criu_proto::images::{FileEntry, SkPacketEntry};
use criu_tests::{PidGuard, ScratchDir, skip_unless_root};
use prost::Message;
use restore_common::{dump_and_kill, restore_detached, spawn_bg, wait_lines};
use unix_common::{copy_images, edit_image, restore_refused};

mod restore_common;
mod unix_common;
use criu_plugin_files as _;
use criu_plugin_pipes as _;
use criu_plugin_unix as _;

fn edit_queue(img: &mut RawImage, f: impl FnOnce(&mut SkPacketEntry)) {
    let mut e = SkPacketEntry::decode(img.entries[0].payload.as_slice()).expect("sk_packet_entry");
    f(&mut e);
    img.entries[0].payload = e.encode_to_vec();
}

fn unix_entries(img: &RawImage) -> Vec<(usize, FileEntry)> {
    img.entries
        .iter()
        .enumerate()
        .filter_map(|(i, e)| {
            let f = FileEntry::decode(e.payload.as_slice()).ok()?;
            f.usk.is_some().then_some((i, f))
        })
        .collect()
}

#[test]
fn damaged_unix_images_are_refused_naming_image_and_entry() {
    if skip_unless_root("damaged_unix_images_are_refused_naming_image_and_entry") {
        return;
    }
    let dir = ScratchDir::new("unix-bad");
    let report = dir.path().join("report");
    let go = dir.path().join("go");
    let images = dir.path().join("images");
    std::fs::create_dir(&images).expect("mkdir");
    let script = unix_common::workload("unix_refuse.py");
    let args = [
        "python3",
        script.to_str().expect("utf-8"),
        "plain",
        report.to_str().expect("utf-8"),
        go.to_str().expect("utf-8"),
    ];
    let pid = spawn_bg("setsid", &args);
    let guard = PidGuard::new(pid);
    assert_eq!(wait_lines(&report, 1, Duration::from_secs(20)), ["ready"]);
    dump_and_kill(pid, &images);
    drop(guard);

    let case = |name: &str| {
        let d = dir.path().join(name);
        copy_images(&images, &d);
        d
    };
    let d = case("longer");
    edit_image(&d, "sk-queues.img", |img| {
        edit_queue(img, |e| e.length += 100)
    });
    restore_refused(&d, pid, &["sk-queues.img", "entry 0", "fewer left"]);

    let d = case("nowhere");
    edit_image(&d, "sk-queues.img", |img| {
        edit_queue(img, |e| e.id_for = 9999)
    });
    restore_refused(&d, pid, &["sk-queues.img", "entry 0", "socket id 9999"]);

    let d = case("twice");
    edit_image(&d, "files.img", |img| {
        let (i, mut f) = unix_entries(img).remove(0);
        f.id = 9998;
        f.usk.as_mut().expect("usk").id = 9998;
        let mut copy = img.entries[i].clone();
        copy.payload = f.encode_to_vec();
        img.entries.push(copy);
    });
    restore_refused(&d, pid, &["files.img", "referenced twice", "9998"]);

    let d = case("peer");
    edit_image(&d, "files.img", |img| {
        let (i, mut f) = unix_entries(img).remove(0);
        f.usk.as_mut().expect("usk").peer = 424242;
        img.entries[i].payload = f.encode_to_vec();
    });
    restore_refused(&d, pid, &["files.img", "peer inode 424242", "entry id "]);

    // The images as dumped restore, and the queue is whole.
    let _g = restore_detached(&images, pid, [pid]);
    std::fs::write(&go, "").expect("go");
    let out = wait_lines(&report, 2, Duration::from_secs(20));
    assert_eq!(out[1], "ok", "the workload after the restore");
}
