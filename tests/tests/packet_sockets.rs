//! Packet sockets (`packet` plugin) with the Python workload `packet_sockets.py`: a raw
//! packet socket on lo with TPACKET_V2, auxdata, a promiscuous membership and rx/tx rings
//! mapped by the task; a datagram packet socket with reserve, origdev, a fanout group and a
//! unicast membership; SOCK_PACKET sockets bound by name and unbound (CRIU's packet_sock,
//! packet_sock_mmap, packet_sock_spkt). Dumped, killed, restored: the workload checks every
//! option, name and membership, finds its ring mapped at the same address, and sees frames
//! it sends over lo in the ring and on the datagram socket. Debian's crit 3.17 decodes the
//! images as we do; entries naming an unknown interface or a ring whose block size is no
//! multiple of the page size are refused naming files.img and the entry.

use std::path::Path;
use std::time::Duration;

use criu_core::dump::{DumpOptions, dump};
use criu_core::image::ImageDir;
use criu_core::restore::{RestoreOptions, RestoreOutcome, restore};
use criu_proto::ImageKind;
use criu_proto::images::{FileEntry, PacketSockEntry};
use criu_tests::{ScratchDir, TreeGuard, skip_unless_root, wait_pid_gone};

mod crit317;
mod inet_common;
mod restore_common;
mod unix_common;
use criu_plugin_files as _;
use criu_plugin_inet as _;
use criu_plugin_packet as _;
use criu_plugin_pipes as _;
use inet_common::chain;
use restore_common::{lines, spawn_bg, wait_lines};

/// The packet entries of `images`' files.img.
fn packet_entries(images: &Path) -> Vec<FileEntry> {
    let dir = ImageDir::open(images).expect("images");
    let files: Vec<FileEntry> = dir.read_all(ImageKind::Files, 0).expect("files.img");
    files.into_iter().filter(|f| f.psk.is_some()).collect()
}

/// A copy of `images` whose packet entry with an rx ring is changed by `spoil`: the
/// restore fails naming files.img, the entry and `want`; `pid` stays free.
fn refuses(
    images: &Path,
    scratch: &Path,
    pid: i32,
    name: &str,
    spoil: impl FnOnce(&mut PacketSockEntry),
    want: &str,
) {
    let bad = scratch.join(name);
    std::fs::create_dir_all(&bad).expect("bad dir");
    for e in std::fs::read_dir(images).expect("images") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), bad.join(e.file_name())).expect("copy");
    }
    let dir = ImageDir::open(&bad).expect("bad images");
    let mut files: Vec<FileEntry> = dir.read_all(ImageKind::Files, 0).expect("files.img");
    let victim = files
        .iter_mut()
        .find(|f| f.psk.as_ref().is_some_and(|p| p.rx_ring.is_some()))
        .expect("a packet entry with a ring");
    spoil(victim.psk.as_mut().expect("psk"));
    let id = victim.id;
    std::fs::remove_file(bad.join("files.img")).expect("rm files.img");
    dir.write_image(ImageKind::Files, 0, &files)
        .expect("write files.img");
    let opts = RestoreOptions {
        images_dir: bad,
        detach: true,
        ..RestoreOptions::default()
    };
    let err = match restore(&opts) {
        Ok(o) => {
            let _guard = TreeGuard::new([pid]);
            panic!("restored a bad image: {o:?}");
        }
        Err(e) => chain(&e),
    };
    assert!(
        err.contains("files.img") && err.contains(&format!("file id {id}")) && err.contains(want),
        "{err}"
    );
    assert!(
        wait_pid_gone(pid, Duration::from_secs(5)),
        "{pid} runs after a refused restore"
    );
}

#[test]
fn packet_sockets_keep_options_rings_and_mappings() {
    if skip_unless_root("packet_sockets_keep_options_rings_and_mappings") {
        return;
    }
    let dir = ScratchDir::new("packet-sockets");
    let report = dir.path().join("report");
    let go = dir.path().join("go");
    let images = dir.path().join("images");
    std::fs::create_dir(&images).expect("mkdir");
    let script = unix_common::workload("packet_sockets.py");
    let args = [
        "python3",
        script.to_str().expect("utf-8"),
        report.to_str().expect("utf-8"),
        go.to_str().expect("utf-8"),
    ];
    let root = spawn_bg("setsid", &args);
    let guard = TreeGuard::new([root]);
    let ready = wait_lines(&report, 1, Duration::from_secs(20));
    assert_eq!(ready, ["ready"], "workload setup");
    let mut d = DumpOptions::new(root, &images);
    d.leave_stopped = true;
    dump(&d).unwrap_or_else(|e| panic!("dump: {}", chain(&e)));
    let taken = guard.kill_and_wait(Duration::from_secs(10));
    assert!(taken.is_empty(), "pids still taken: {taken:?}");

    let psks = packet_entries(&images);
    assert_eq!(psks.len(), 4, "{psks:#?}");
    assert!(
        std::fs::metadata(images.join("packet-maps.txt")).is_ok(),
        "no packet-maps.txt"
    );
    crit317::decodes_as_we_do(&images.join("files.img"), ImageKind::Files, |ours| {
        let psk: Vec<_> = ours["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .filter(|e| e["type"] == "PACKETSK")
            .collect();
        assert_eq!(psk.len(), 4, "{ours}");
        assert!(
            psk.iter().any(|e| e["psk"]["rx_ring"]["block_nr"] == 4),
            "{ours}"
        );
    });
    refuses(
        &images,
        dir.path(),
        root,
        "bad-ifindex",
        |p| p.ifindex = 9999,
        "interface index 9999",
    );
    refuses(
        &images,
        dir.path(),
        root,
        "bad-ring",
        |p| p.rx_ring.as_mut().expect("ring").block_size = 3000,
        "not a multiple of the page size",
    );

    let opts = RestoreOptions {
        images_dir: images.clone(),
        detach: true,
        ..RestoreOptions::default()
    };
    let outcome = restore(&opts);
    let _guard = TreeGuard::new([root]);
    let outcome = outcome.unwrap_or_else(|e| panic!("restore: {}", chain(&e)));
    assert_eq!(outcome, RestoreOutcome::Detached { root });
    std::fs::write(&go, "").expect("go");
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
