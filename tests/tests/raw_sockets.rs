//! Raw inet sockets (`inet` plugin) with the Python workload `raw_sockets.py`: raw ICMP and
//! ICMPv6 sockets with their type filters, a raw UDP socket with `IP_HDRINCL`, TTL and TOS,
//! an `IPPROTO_RAW` socket with `IP_NODEFRAG`, a connected raw socket, a raw IPv6 socket
//! with `IPV6_HDRINCL` and `IPV6_FREEBIND` (CRIU's socket-raw, sock_ip_opts00/01). Dumped,
//! killed, restored: the workload checks every option and name, pings 127.0.0.7 and ::1
//! through its raw ICMP sockets and sends a hand-built UDP datagram. Debian's crit 3.17
//! decodes the images as we do; a raw entry with a malformed ICMP filter is refused naming
//! files.img and the entry.

use std::path::Path;
use std::time::Duration;

use criu_core::dump::{DumpOptions, dump};
use criu_core::image::ImageDir;
use criu_core::restore::{RestoreOptions, RestoreOutcome, restore};
use criu_proto::ImageKind;
use criu_proto::images::FileEntry;
use criu_tests::{ScratchDir, TreeGuard, skip_unless_root, wait_pid_gone};

mod crit317;
mod inet_common;
mod restore_common;
mod unix_common;
use criu_plugin_files as _;
use criu_plugin_inet as _;
use criu_plugin_pipes as _;
use inet_common::chain;
use restore_common::{lines, spawn_bg, wait_lines};

/// The raw entries of `images`' files.img.
fn raw_entries(images: &Path) -> Vec<FileEntry> {
    let dir = ImageDir::open(images).expect("images");
    let files: Vec<FileEntry> = dir.read_all(ImageKind::Files, 0).expect("files.img");
    files
        .into_iter()
        .filter(|f| {
            f.isk
                .as_ref()
                .is_some_and(|i| i.r#type as i32 == libc::SOCK_RAW)
        })
        .collect()
}

/// A copy of `images` whose raw ICMP entry has an ICMP filter of 3 words: the restore
/// fails naming files.img, the entry and the filter; `pid` stays free.
fn refuses_a_bad_filter(images: &Path, scratch: &Path, pid: i32) {
    let bad = scratch.join("bad-images");
    std::fs::create_dir_all(&bad).expect("bad dir");
    for e in std::fs::read_dir(images).expect("images") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), bad.join(e.file_name())).expect("copy");
    }
    let dir = ImageDir::open(&bad).expect("bad images");
    let mut files: Vec<FileEntry> = dir.read_all(ImageKind::Files, 0).expect("files.img");
    let victim = files
        .iter_mut()
        .find(|f| {
            f.isk.as_ref().is_some_and(|i| {
                i.r#type as i32 == libc::SOCK_RAW && i.proto as i32 == libc::IPPROTO_ICMP
            })
        })
        .expect("a raw ICMP entry");
    let isk = victim.isk.as_mut().expect("isk");
    let raw = isk
        .ip_opts
        .as_mut()
        .and_then(|o| o.raw.as_mut())
        .expect("raw options");
    raw.icmpv_filter = vec![1, 2, 3];
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
        err.contains("files.img")
            && err.contains(&format!("file id {id}"))
            && err.contains("ICMP filter of 3 words"),
        "{err}"
    );
    assert!(
        wait_pid_gone(pid, Duration::from_secs(5)),
        "{pid} runs after a refused restore"
    );
}

#[test]
fn raw_sockets_keep_options_and_work_after_restore() {
    if skip_unless_root("raw_sockets_keep_options_and_work_after_restore") {
        return;
    }
    let dir = ScratchDir::new("raw-sockets");
    let report = dir.path().join("report");
    let go = dir.path().join("go");
    let images = dir.path().join("images");
    std::fs::create_dir(&images).expect("mkdir");
    let script = unix_common::workload("raw_sockets.py");
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

    let raws = raw_entries(&images);
    assert_eq!(raws.len(), 6, "{raws:#?}");
    crit317::decodes_as_we_do(&images.join("files.img"), ImageKind::Files, |ours| {
        let raw: Vec<_> = ours["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .filter(|e| e["isk"]["type"] == "RAW")
            .collect();
        assert_eq!(raw.len(), 6, "{ours}");
        assert!(
            raw.iter()
                .any(|e| e["isk"]["ip_opts"]["raw"]["hdrincl"] == true),
            "{ours}"
        );
    });
    refuses_a_bad_filter(&images, dir.path(), root);

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
