//! A tree whose root lives in a time namespace of its own (the C workload
//! `workloads/ns_time.c`: monotonic +10 days, boottime +20 days) is dumped into CRIU's
//! `timens-N.img` (the clocks as the tree read them) and restored into a new time namespace
//! whose offsets make the clocks go on from there: root and child check after the restore
//! that neither clock went back nor jumped ahead of the real time that passed. The restored
//! root's time namespace is a new one (not ours), shared with its child; crit 3.17 decodes
//! the image as we do; a clock out of the kernel's range fails the restore naming the image,
//! leaving nothing running; a root whose children would get another time namespace than its
//! own (zdtm's timens_for_kids) is refused at dump, as CRIU refuses it.

mod crit317;
mod restore_common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use criu_core::dump::{DumpOptions, dump};
use criu_core::restore::{RestoreOptions, restore};
use criu_proto::ImageKind;
use criu_proto::images::{TaskKobjIdsEntry, TimensEntry};
use criu_tests::{ScratchDir, TreeGuard, pid_exists, skip_unless_root};
use prost::Message;

use criu_plugin_files as _;

use restore_common::{spawn_bg, wait_lines};

/// The workload: its launcher (outside the tree), the root and its child.
struct Started {
    launcher: i32,
    pid: i32,
    child: i32,
    /// CLOCK_MONOTONIC and CLOCK_BOOTTIME the root read before the dump (rounded seconds).
    clocks: (u64, u64),
    report: PathBuf,
    trigger: PathBuf,
    images: PathBuf,
    _scratch: ScratchDir,
}

impl Started {
    fn pids(&self) -> [i32; 3] {
        [self.launcher, self.pid, self.child]
    }
}

fn gcc_present(test: &str) -> bool {
    let ok = Command::new("gcc")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: gcc missing in CI"
        );
        eprintln!("skipping {test}: gcc is not installed");
    }
    ok
}

fn start(name: &str, extra: &[&str]) -> Started {
    let scratch = ScratchDir::new(name);
    let dir = scratch.path().canonicalize().expect("scratch");
    let exe = dir.join("ns_time");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads/ns_time.c");
    let ok = Command::new("gcc")
        .args(["-O1", "-Wall", "-o"])
        .arg(&exe)
        .arg(src)
        .status()
        .expect("gcc");
    assert!(ok.success(), "gcc failed on ns_time.c");
    let images = dir.join("images");
    std::fs::create_dir(&images).expect("images dir");
    let report = dir.join("report");
    let trigger = dir.join("trigger");
    let mut args = vec![
        report.to_str().expect("path"),
        trigger.to_str().expect("path"),
    ];
    args.extend_from_slice(extra);
    let launcher = spawn_bg(exe.to_str().expect("path"), &args);
    let first = wait_lines(&report, 1, Duration::from_secs(10));
    let w: Vec<&str> = first[0].split_whitespace().collect();
    assert_eq!(w.first(), Some(&"ready"), "{first:?}");
    let num = |i: usize| -> u64 { w[i].parse().expect("number") };
    Started {
        launcher,
        pid: num(1) as i32,
        child: num(2) as i32,
        clocks: (num(3), num(4)),
        report,
        trigger,
        images,
        _scratch: scratch,
    }
}

fn ns_link(pid: i32, kind: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn time_ns_id(images: &Path, pid: i32) -> u32 {
    let bytes = std::fs::read(images.join(format!("ids-{pid}.img"))).expect("ids image");
    let raw = criu_proto::framing::parse(&bytes).expect("ids framing");
    let ids = TaskKobjIdsEntry::decode(raw.entries[0].payload.as_slice()).expect("ids");
    ids.time_ns_id.expect("time ns id")
}

fn restore_opts(images: &Path) -> RestoreOptions {
    RestoreOptions {
        images_dir: images.to_path_buf(),
        detach: true,
        ..RestoreOptions::default()
    }
}

fn write_timens(file: &Path, e: &TimensEntry) {
    let mut bytes = criu_proto::framing::header_bytes(ImageKind::Timens).expect("header");
    criu_proto::framing::frame_message(&mut bytes, e).expect("frame");
    std::fs::write(file, bytes).expect("write");
}

#[test]
fn time_namespace_clocks_go_on_after_dump_kill_restore() {
    let name = "time_namespace_clocks_go_on_after_dump_kill_restore";
    if skip_unless_root(name) || !gcc_present(name) {
        return;
    }
    let w = start("ns-time", &[]);
    let guard = TreeGuard::new(w.pids());
    let me = std::process::id() as i32;
    let theirs = ns_link(w.pid, "time");
    assert!(!theirs.is_empty() && theirs != ns_link(me, "time"));
    let mut dopts = DumpOptions::new(w.pid, &w.images);
    dopts.leave_stopped = true;
    dump(&dopts).unwrap_or_else(|e| panic!("dump: {e:?}"));
    let left = guard.kill_and_wait(Duration::from_secs(10));
    assert!(left.is_empty(), "pids still taken: {left:?}");

    // The clocks as the tree saw them, not ours; no timens-0.img (criu's), as CRIU.
    let id = time_ns_id(&w.images, w.pid);
    let file = w.images.join(ImageKind::Timens.file_name(u64::from(id)));
    assert!(!w.images.join("timens-0.img").exists());
    let mut dumped = TimensEntry::default();
    crit317::decodes_as_we_do(&file, ImageKind::Timens, |_| {});
    let raw = criu_proto::framing::parse(&std::fs::read(&file).expect("timens")).expect("framing");
    dumped
        .merge(raw.entries[0].payload.as_slice())
        .expect("timens entry");
    assert!(
        dumped.monotonic.tv_sec + 1 >= w.clocks.0 && dumped.monotonic.tv_sec < w.clocks.0 + 60,
        "{dumped:?} vs {:?}",
        w.clocks
    );
    assert!(
        dumped.boottime.tv_sec + 1 >= w.clocks.1 && dumped.boottime.tv_sec < w.clocks.1 + 60,
        "{dumped:?} vs {:?}",
        w.clocks
    );

    // A clock past the kernel's range: refused naming the image, nothing left running.
    let mut bad = dumped;
    bad.monotonic.tv_sec = u64::MAX / 2;
    write_timens(&file, &bad);
    let err = restore(&restore_opts(&w.images)).expect_err("an out-of-range clock");
    let chain = std::iter::successors(Some(&err as &dyn std::error::Error), |e| e.source())
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join(": ");
    assert!(
        chain.contains(&ImageKind::Timens.file_name(u64::from(id))) && chain.contains("monotonic"),
        "{chain}"
    );
    for p in [w.pid, w.child] {
        assert!(!pid_exists(p), "pid {p} left running");
    }
    write_timens(&file, &dumped);

    restore(&restore_opts(&w.images)).unwrap_or_else(|e| panic!("restore: {e:?}"));
    let guard = TreeGuard::new([w.pid, w.child]);
    let restored = ns_link(w.pid, "time");
    assert!(
        // (The dumped namespace's inode number may be reused: it died with the tree.)
        !restored.is_empty() && restored != ns_link(me, "time"),
        "a new time namespace: {restored}"
    );
    assert_eq!(restored, ns_link(w.child, "time"), "the child shares it");
    assert_eq!(restored, ns_link(w.pid, "time_for_children"));
    std::fs::write(&w.trigger, b"").expect("trigger");
    let lines = wait_lines(&w.report, 2, Duration::from_secs(10));
    assert_eq!(lines[1], "ok", "{lines:?}");
    drop(guard);
}

/// zdtm's timens_for_kids: the root unshared a time namespace it stays outside of. CRIU
/// refuses the dump; so do we, naming the pid, and the tree runs on (it checks itself).
#[test]
fn a_pending_time_namespace_for_children_is_refused_at_dump() {
    let name = "a_pending_time_namespace_for_children_is_refused_at_dump";
    if skip_unless_root(name) || !gcc_present(name) {
        return;
    }
    let w = start("ns-time-nested", &["nested"]);
    let guard = TreeGuard::new(w.pids());
    let mut dopts = DumpOptions::new(w.pid, &w.images);
    dopts.leave_stopped = true;
    let err = dump(&dopts).expect_err("refused").to_string();
    assert!(
        err.contains(&format!("pid {}", w.pid)) && err.contains("nested time namespace"),
        "{err}"
    );
    std::fs::write(&w.trigger, b"").expect("trigger");
    let lines = wait_lines(&w.report, 2, Duration::from_secs(10));
    assert_eq!(lines[1], "ok", "the tree ran on: {lines:?}");
    drop(guard);
}
