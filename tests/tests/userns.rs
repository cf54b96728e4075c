//! A tree in a user namespace of its own, a rootless container's shape (the C workload
//! `workloads/ns_user.c`: uid and gid maps "0 100000 65536", root and child uid 0 inside,
//! host uid 100000 outside, the root the init of a pid namespace the user namespace owns) is dumped into CRIU's `userns-N.img` with its credentials as
//! the namespace sees them (uid 0, as CRIU keeps them), and restored into a new user
//! namespace with the same maps: root and child check after the restore their ids inside,
//! their maps and the owner of a file the root holds. The restored root's user namespace is
//! a new one (not ours), shared with its child, and its host uid is 100000 again; crit 3.17
//! decodes the image as we do; damaged maps (overlapping extents, 341 extents) fail the
//! restore naming the image, leaving nothing running.

mod crit317;
mod restore_common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use criu_core::dump::{DumpOptions, dump};
use criu_core::restore::{RestoreOptions, restore};
use criu_proto::ImageKind;
use criu_proto::images::{CoreEntry, TaskKobjIdsEntry, UidGidExtent, UsernsEntry};
use criu_tests::{ScratchDir, TreeGuard, pid_exists, skip_unless_root};
use prost::Message;

use criu_plugin_files as _;

use restore_common::{spawn_bg, wait_lines};

/// The workload: its launcher (outside the tree), the root and its child.
struct Started {
    launcher: i32,
    pid: i32,
    child: i32,
    report: PathBuf,
    trigger: PathBuf,
    images: PathBuf,
    _scratch: ScratchDir,
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

/// A file host uid/gid 100000 (uid 0 in the tree's namespace) owns and may write.
fn give_to_container(path: &Path) {
    std::fs::write(path, b"").expect("create");
    std::os::unix::fs::chown(path, Some(100000), Some(100000)).expect("chown");
}

fn start(name: &str) -> Started {
    let scratch = ScratchDir::new(name);
    let dir = scratch.path().canonicalize().expect("scratch");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let exe = dir.join("ns_user");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads/ns_user.c");
    let ok = Command::new("gcc")
        .args(["-O1", "-Wall", "-o"])
        .arg(&exe)
        .arg(src)
        .status()
        .expect("gcc");
    assert!(ok.success(), "gcc failed on ns_user.c");
    let images = dir.join("images");
    std::fs::create_dir(&images).expect("images dir");
    let report = dir.join("report");
    let trigger = dir.join("trigger");
    let owned = dir.join("owned");
    give_to_container(&report);
    give_to_container(&owned);
    let args = [
        report.to_str().expect("path"),
        trigger.to_str().expect("path"),
        owned.to_str().expect("path"),
    ];
    let launcher = spawn_bg(exe.to_str().expect("path"), &args);
    let first = wait_lines(&report, 1, Duration::from_secs(10));
    let w: Vec<&str> = first[0].split_whitespace().collect();
    assert_eq!(w.first(), Some(&"ready"), "{first:?}");
    let pid: i32 = w[1].parse().expect("root pid");
    let child = restore_common::descendants(pid)
        .into_iter()
        .find(|&p| p != pid)
        .expect("the root's child");
    Started {
        launcher,
        pid,
        child,
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

/// The real uid of `pid` as criu's namespace sees it.
fn host_uid(pid: i32) -> u32 {
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    st.lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("Uid line")
}

fn first_entry(images: &Path, name: &str) -> Vec<u8> {
    let bytes = std::fs::read(images.join(name)).expect("image");
    let raw = criu_proto::framing::parse(&bytes).expect("framing");
    raw.entries[0].payload.clone()
}

fn restore_opts(images: &Path) -> RestoreOptions {
    RestoreOptions {
        images_dir: images.to_path_buf(),
        detach: true,
        ..RestoreOptions::default()
    }
}

fn ext(first: u32, lower_first: u32, count: u32) -> UidGidExtent {
    UidGidExtent {
        first,
        lower_first,
        count,
    }
}

fn write_userns(file: &Path, e: &UsernsEntry) {
    let mut bytes = criu_proto::framing::header_bytes(ImageKind::Userns).expect("header");
    criu_proto::framing::frame_message(&mut bytes, e).expect("frame");
    std::fs::write(file, bytes).expect("write");
}

fn restore_fails_naming(w: &Started, image: &str, what: &str) {
    let err = restore(&restore_opts(&w.images)).expect_err("restore must fail");
    let chain = std::iter::successors(Some(&err as &dyn std::error::Error), |e| e.source())
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join(": ");
    assert!(chain.contains(image) && chain.contains(what), "{chain}");
    for p in [w.pid, w.child] {
        assert!(!pid_exists(p), "pid {p} left running");
    }
}

#[test]
#[ignore = "user namespaces stay refused at dump: the restore side was not run end to end yet"]
fn user_namespace_maps_and_ids_survive_dump_kill_restore() {
    let name = "user_namespace_maps_and_ids_survive_dump_kill_restore";
    if skip_unless_root(name) || !gcc_present(name) {
        return;
    }
    let w = start("ns-user");
    // The launcher, the root's parent (which made the namespaces), the tree.
    let parent = restore_common::tree_ids(w.pid)[&w.pid].0;
    let guard = TreeGuard::new([w.launcher, parent, w.pid, w.child]);
    let me = std::process::id() as i32;
    let theirs = ns_link(w.pid, "user");
    assert!(!theirs.is_empty() && theirs != ns_link(me, "user"));
    assert_eq!(host_uid(w.pid), 100000);
    let mut dopts = DumpOptions::new(w.pid, &w.images);
    dopts.leave_stopped = true;
    dump(&dopts).unwrap_or_else(|e| panic!("dump: {e:?}"));
    let left = guard.kill_and_wait(Duration::from_secs(10));
    assert!(left.is_empty(), "pids still taken: {left:?}");

    let ids =
        TaskKobjIdsEntry::decode(first_entry(&w.images, "ids-1.img").as_slice()).expect("ids");
    let id = ids.user_ns_id.expect("user ns id");
    let file_name = ImageKind::Userns.file_name(u64::from(id));
    let file = w.images.join(&file_name);
    crit317::decodes_as_we_do(&file, ImageKind::Userns, |_| {});
    let good = UsernsEntry::decode(first_entry(&w.images, &file_name).as_slice()).expect("userns");
    assert_eq!(good.uid_map, vec![ext(0, 100000, 65536)]);
    assert_eq!(good.gid_map, vec![ext(0, 100000, 65536)]);
    // Credentials as the namespace sees them (CRIU's form), not the host's 100000.
    // The images name the tasks by their pids in the tree's pid namespace.
    for p in [1, 2] {
        let core = CoreEntry::decode(first_entry(&w.images, &format!("core-{p}.img")).as_slice())
            .expect("core");
        let creds = core.thread_core.and_then(|t| t.creds).expect("creds");
        assert_eq!(
            (creds.uid, creds.euid, creds.gid, creds.fsgid),
            (0, 0, 0, 0),
            "pid {p}"
        );
    }

    // Maps the kernel would refuse: named with the image, nothing left running.
    let mut bad = good.clone();
    bad.uid_map = vec![ext(0, 100000, 100), ext(50, 300000, 10)];
    write_userns(&file, &bad);
    restore_fails_naming(&w, &file_name, "overlaps");
    let mut bad = good.clone();
    bad.gid_map = (0..341).map(|i| ext(i, 100000 + i, 1)).collect();
    write_userns(&file, &bad);
    restore_fails_naming(&w, &file_name, "341 extents");
    write_userns(&file, &good);

    restore(&restore_opts(&w.images)).unwrap_or_else(|e| panic!("restore: {e:?}"));
    let guard = TreeGuard::new([w.pid, w.child]);
    let restored = ns_link(w.pid, "user");
    assert!(
        !restored.is_empty() && restored != ns_link(me, "user"),
        "a new user namespace: {restored}"
    );
    assert_eq!(restored, ns_link(w.child, "user"), "the child shares it");
    assert_eq!(host_uid(w.pid), 100000);
    assert_eq!(host_uid(w.child), 100000);
    std::fs::write(&w.trigger, b"").expect("trigger");
    let lines = wait_lines(&w.report, 2, Duration::from_secs(10));
    assert_eq!(lines[1], "ok", "{lines:?}");
    drop(guard);
}
