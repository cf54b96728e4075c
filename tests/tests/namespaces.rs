//! A tree whose root has UTS and IPC namespaces of its own (started with `unshare -u -i`) is
//! dumped into CRIU's `utsns-N.img` and `ipcns-{var,shm,msg,sem}-N.img` and restored into new
//! namespaces of both kinds: the C workload (`workloads/ns_uts_ipc.c`) checks after the
//! restore its host and domain names, the IPC sysctls it changed, a shm segment's contents
//! (detached) and another's (still attached at the same address), a queue's messages in
//! order and a semaphore set's values, all under their dumped ids; its child checks the
//! names and the set too. The restored root's namespaces are new ones (not ours), crit 3.17
//! decodes the images as we do, and damaged images (a nodename over 64 bytes, a segment
//! whose contents are cut short) fail the restore naming the image, leaving nothing running.

mod crit317;
mod restore_common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use criu_core::dump::{DumpOptions, dump};
use criu_core::restore::{RestoreOptions, restore};
use criu_proto::ImageKind;
use criu_proto::images::{InventoryEntry, TaskKobjIdsEntry, UtsnsEntry};
use criu_tests::{ScratchDir, TreeGuard, pid_exists, skip_unless_root};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use prost::Message;

use criu_plugin_files as _;

use restore_common::{spawn_bg, wait_lines};

/// The workload, built and started in new UTS and IPC namespaces.
struct Started {
    pid: i32,
    child: i32,
    report: PathBuf,
    trigger: PathBuf,
    images: PathBuf,
    _scratch: ScratchDir,
}

fn tools_present(test: &str) -> bool {
    for tool in ["gcc", "unshare"] {
        let ok = Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            assert!(
                std::env::var_os("CI").is_none(),
                "{test}: {tool} missing in CI"
            );
            eprintln!("skipping {test}: {tool} is not installed");
            return false;
        }
    }
    true
}

fn start(name: &str) -> Started {
    start_with(name, &[])
}

/// [`start`] with extra workload arguments ("mixed").
fn start_with(name: &str, extra: &[&str]) -> Started {
    let scratch = ScratchDir::new(name);
    let dir = scratch.path().canonicalize().expect("scratch");
    let exe = dir.join("ns_uts_ipc");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads/ns_uts_ipc.c");
    let ok = Command::new("gcc")
        .args(["-O1", "-Wall", "-o"])
        .arg(&exe)
        .arg(src)
        .status()
        .expect("gcc");
    assert!(ok.success(), "gcc failed on ns_uts_ipc.c");
    let images = dir.join("images");
    std::fs::create_dir(&images).expect("images dir");
    let report = dir.join("report");
    let trigger = dir.join("trigger");
    // unshare execs the workload: its pid is the workload's.
    let mut args = vec![
        "-u",
        "-i",
        exe.to_str().expect("path"),
        report.to_str().expect("path"),
        trigger.to_str().expect("path"),
    ];
    args.extend_from_slice(extra);
    let pid = spawn_bg("unshare", &args);
    let first = wait_lines(&report, 1, Duration::from_secs(10));
    let w: Vec<&str> = first[0].split_whitespace().collect();
    assert_eq!(w.first(), Some(&"ready"), "{first:?}");
    assert_eq!(w.get(1), Some(&pid.to_string().as_str()), "{first:?}");
    let child = w[2].parse().expect("child pid");
    Started {
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

/// Dumps the started tree (left stopped), kills it, waits for its pids.
fn dump_and_kill(w: &Started, guard: TreeGuard) {
    let mut dopts = DumpOptions::new(w.pid, &w.images);
    dopts.leave_stopped = true;
    dump(&dopts).unwrap_or_else(|e| panic!("dump: {e:?}"));
    for p in [w.pid, w.child] {
        let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
    }
    let left = guard.kill_and_wait(Duration::from_secs(10));
    assert!(left.is_empty(), "pids still taken: {left:?}");
}

/// The root's uts and ipc namespace ids from its ids image.
fn root_ns_ids(images: &Path, pid: i32) -> (u32, u32) {
    let bytes = std::fs::read(images.join(format!("ids-{pid}.img"))).expect("ids image");
    let raw = criu_proto::framing::parse(&bytes).expect("ids framing");
    let ids = TaskKobjIdsEntry::decode(raw.entries[0].payload.as_slice()).expect("ids");
    (ids.uts_ns_id.expect("uts"), ids.ipc_ns_id.expect("ipc"))
}

fn restore_opts(images: &Path) -> RestoreOptions {
    RestoreOptions {
        images_dir: images.to_path_buf(),
        detach: true,
        ..RestoreOptions::default()
    }
}

#[test]
fn uts_and_ipc_namespaces_survive_dump_kill_restore() {
    let name = "uts_and_ipc_namespaces_survive_dump_kill_restore";
    if skip_unless_root(name) || !tools_present(name) {
        return;
    }
    let w = start("ns-uts-ipc");
    let guard = TreeGuard::new([w.pid, w.child]);
    let me = std::process::id() as i32;
    assert_ne!(ns_link(w.pid, "uts"), ns_link(me, "uts"), "unshare -u");
    dump_and_kill(&w, guard);

    let (uts, ipc) = root_ns_ids(&w.images, w.pid);
    let inv = std::fs::read(w.images.join("inventory.img")).expect("inventory");
    let inv = criu_proto::framing::parse(&inv).expect("inventory framing");
    let inv = InventoryEntry::decode(inv.entries[0].payload.as_slice()).expect("inventory");
    let criu = inv.root_ids.expect("root_ids");
    assert_ne!(Some(uts), criu.uts_ns_id);
    assert_ne!(Some(ipc), criu.ipc_ns_id);
    let names = [
        ImageKind::Utsns.file_name(u64::from(uts)),
        ImageKind::IpcVar.file_name(u64::from(ipc)),
        ImageKind::IpcnsShm.file_name(u64::from(ipc)),
        ImageKind::IpcnsMsg.file_name(u64::from(ipc)),
        ImageKind::IpcnsSem.file_name(u64::from(ipc)),
    ];
    let kinds = [
        ImageKind::Utsns,
        ImageKind::IpcVar,
        ImageKind::IpcnsShm,
        ImageKind::IpcnsMsg,
        ImageKind::IpcnsSem,
    ];
    for (file, kind) in names.iter().zip(kinds) {
        crit317::decodes_as_we_do(&w.images.join(file), kind, |ours| {
            let n = ours["entries"].as_array().map_or(0, Vec::len);
            assert!(n >= 1, "{file}: {ours}");
            if kind == ImageKind::Utsns {
                assert_eq!(ours["entries"][0]["nodename"], "criu-rs-ns-node", "{ours}");
            }
        });
    }

    restore(&restore_opts(&w.images)).unwrap_or_else(|e| panic!("restore: {e:?}"));
    let guard = TreeGuard::new([w.pid, w.child]);
    for kind in ["uts", "ipc"] {
        let theirs = ns_link(w.pid, kind);
        assert!(
            !theirs.is_empty() && theirs != ns_link(me, kind),
            "{kind}: {theirs}"
        );
        assert_eq!(
            theirs,
            ns_link(w.child, kind),
            "the child shares the root's {kind}"
        );
    }
    std::fs::write(&w.trigger, b"").expect("trigger");
    let lines = wait_lines(&w.report, 2, Duration::from_secs(10));
    assert_eq!(lines[1], "ok", "{lines:?}");
    drop(guard);
}

/// Dumps a fresh workload and returns it with its images (the tree killed).
fn dumped(name: &str) -> (Started, u32, u32) {
    let w = start(name);
    let guard = TreeGuard::new([w.pid, w.child]);
    dump_and_kill(&w, guard);
    let (uts, ipc) = root_ns_ids(&w.images, w.pid);
    (w, uts, ipc)
}

fn restore_fails_naming(w: &Started, image: &str) {
    let err = restore(&restore_opts(&w.images)).expect_err("restore must fail");
    let text = format!("{err:#}");
    let chain = std::iter::successors(Some(&err as &dyn std::error::Error), |e| e.source())
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join(": ");
    assert!(chain.contains(image), "{text} / {chain}");
    for p in [w.pid, w.child] {
        assert!(!pid_exists(p), "pid {p} left running");
    }
}

#[test]
fn bad_namespace_images_fail_the_restore_naming_them() {
    let name = "bad_namespace_images_fail_the_restore_naming_them";
    if skip_unless_root(name) || !tools_present(name) {
        return;
    }
    let (w, uts, ipc) = dumped("ns-bad");
    let uts_file = w.images.join(ImageKind::Utsns.file_name(u64::from(uts)));
    let good_uts = std::fs::read(&uts_file).expect("utsns image");
    let long = UtsnsEntry {
        nodename: "n".repeat(65),
        domainname: "d".into(),
    };
    let mut bytes = criu_proto::framing::header_bytes(ImageKind::Utsns).expect("header");
    criu_proto::framing::frame_message(&mut bytes, &long).expect("frame");
    std::fs::write(&uts_file, bytes).expect("write");
    restore_fails_naming(&w, &ImageKind::Utsns.file_name(u64::from(uts)));

    std::fs::write(&uts_file, good_uts).expect("write");
    let shm = w.images.join(ImageKind::IpcnsShm.file_name(u64::from(ipc)));
    let bytes = std::fs::read(&shm).expect("shm image");
    std::fs::write(&shm, &bytes[..bytes.len() - 100]).expect("cut");
    restore_fails_naming(&w, &ImageKind::IpcnsShm.file_name(u64::from(ipc)));
}

/// A child in another UTS namespace than the root's is refused at dump, naming the child and
/// the kind; the tree runs on untouched (it then checks itself as after a restore). (A root
/// in a pid namespace of its own is dumped when it is the namespace's init: tests/pidns.rs.)
#[test]
fn mixed_trees_and_other_kinds_are_refused_at_dump() {
    let name = "mixed_trees_and_other_kinds_are_refused_at_dump";
    if skip_unless_root(name) || !tools_present(name) {
        return;
    }
    let w = start_with("ns-mixed", &["mixed"]);
    let guard = TreeGuard::new([w.pid, w.child]);
    let mut dopts = DumpOptions::new(w.pid, &w.images);
    dopts.leave_stopped = true;
    let err = dump(&dopts)
        .expect_err("a mixed tree is refused")
        .to_string();
    assert!(
        err.contains(&format!("pid {}", w.child))
            && err.contains("uts namespace other than the tree root's"),
        "{err}"
    );
    std::fs::write(&w.trigger, b"").expect("trigger");
    let lines = wait_lines(&w.report, 2, Duration::from_secs(10));
    assert_eq!(lines[1], "ok", "the tree ran on: {lines:?}");
    drop(guard);
}
