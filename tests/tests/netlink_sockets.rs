//! Netlink sockets end to end, in a network namespace of the test's own (`ip netns add`;
//! criu and the workload join it with `nsenter --net`, so they share every other namespace
//! with criu as the core requires): `wl_netlink` holds an rtnetlink socket subscribed to
//! link and address groups, a uevent listener and a generic socket; `criu dump` (this
//! tree's binary), `criu restore -d`, then the test adds an address to `lo` and the
//! restored workload must see the kernel's notification and still talk to the kernel
//! (RTM_GETLINK dump). Debian's crit 3.17 decodes the files.img written.

mod crit317;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use criu_proto::ImageKind;
use criu_proto::images::{FdTypes, FileEntry};
use criu_tests::{PidGuard, ScratchDir, skip_unless_root, wait_pid_gone};
use restore_common::{lines, spawn_bg, wait_lines};

mod restore_common;

const ADDR: &str = "10.77.0.1";

/// Whether `tool` runs; in CI (env CI set) its absence is a failure, elsewhere a skip.
fn have(tool: &str, test: &str) -> bool {
    let ok = Command::new(tool)
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: {tool} is missing in CI"
        );
        eprintln!("skipping {test}: {tool} is not installed");
    }
    ok
}

/// A named network namespace, deleted when dropped.
struct NetNs(String);

impl NetNs {
    fn new() -> Self {
        let name = format!("criu-nl-{}", std::process::id());
        run("ip", &["netns", "add", &name]);
        NetNs(name)
    }
    fn path(&self) -> String {
        format!("--net=/run/netns/{}", self.0)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn run(tool: &str, args: &[&str]) {
    let out = Command::new(tool).args(args).output().expect("run");
    assert!(
        out.status.success(),
        "{tool} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `criu ARGS` of this tree inside `ns`.
fn criu(ns: &NetNs, args: &[&str], log_dir: &Path) {
    let out = Command::new("nsenter")
        .arg(ns.path())
        .arg(env!("CARGO_BIN_EXE_criu_under_test"))
        .args(args)
        .output()
        .expect("run criu");
    let log = |name: &str| std::fs::read_to_string(log_dir.join(name)).unwrap_or_default();
    assert!(
        out.status.success(),
        "criu {args:?}: {}\n{}{}",
        String::from_utf8_lossy(&out.stderr),
        log("dump.log"),
        log("restore.log")
    );
}

/// Debian's crit 3.17 decodes files.img as we do (our field left out).
fn crit_317_decodes(images: &Path) {
    crit317::decodes_as_we_do(&images.join("files.img"), ImageKind::Files, |ours| {
        let nlsk: Vec<_> = ours["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .filter(|e| e["type"] == "NETLINKSK")
            .collect();
        assert_eq!(nlsk.len(), 3, "{ours}");
        assert!(nlsk.iter().any(|e| e["nlsk"]["protocol"] == 15), "{ours}");
    });
}

/// A copy of the images whose first netlink entry names protocol 77: the restore fails
/// naming files.img and the entry, and nothing is left running.
fn refuses_a_bad_entry(ns: &NetNs, images: &Path, scratch: &Path, pid: i32) {
    let bad = scratch.join("bad-images");
    std::fs::create_dir_all(&bad).expect("bad dir");
    for e in std::fs::read_dir(images).expect("images") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), bad.join(e.file_name())).expect("copy");
    }
    let dir = criu_core::image::ImageDir::open(&bad).expect("bad images");
    let mut files: Vec<FileEntry> = dir.read_all(ImageKind::Files, 0).expect("files.img");
    let victim = files
        .iter_mut()
        .find(|f| f.nlsk.is_some())
        .expect("a netlink entry");
    victim.nlsk.as_mut().expect("nlsk").protocol = 77;
    let id = victim.id;
    std::fs::remove_file(bad.join("files.img")).expect("rm files.img");
    dir.write_image(ImageKind::Files, 0, &files)
        .expect("write files.img");
    let out = Command::new("nsenter")
        .arg(ns.path())
        .arg(env!("CARGO_BIN_EXE_criu_under_test"))
        .args(["restore", "-D", bad.to_str().expect("utf-8"), "-d"])
        .output()
        .expect("run criu");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "restored a bad image: {err}");
    assert!(
        err.contains("files.img")
            && err.contains(&format!("file id {id}"))
            && err.contains("protocol 77"),
        "{err}"
    );
    assert!(
        wait_pid_gone(pid, Duration::from_secs(5)),
        "{pid} runs after a refused restore"
    );
}

#[test]
fn netlink_sockets_hear_the_kernel_after_restore() {
    let test = "netlink_sockets_hear_the_kernel_after_restore";
    if skip_unless_root(test) || !have("ip", test) {
        return;
    }
    let ns = NetNs::new();
    run("nsenter", &[&ns.path(), "ip", "link", "set", "lo", "up"]);
    let scratch = ScratchDir::new("netlink");
    let images = scratch.path().join("images");
    std::fs::create_dir_all(&images).expect("images dir");
    let report = scratch.path().join("report.txt");
    let go = scratch.path().join("go");
    let arg = |p: &Path| p.to_str().expect("utf-8 path").to_string();
    let pid = spawn_bg(
        "nsenter",
        &[
            &ns.path(),
            env!("CARGO_BIN_EXE_wl_netlink"),
            &arg(&report),
            &arg(&go),
            ADDR,
        ],
    );
    let guard = PidGuard::new(pid);
    let first = wait_lines(&report, 1, Duration::from_secs(20));
    assert!(
        first[0].starts_with(&format!("ready {pid} port=")),
        "{first:?}"
    );

    let dir = arg(&images);
    criu(
        &ns,
        &[
            "dump",
            "-t",
            &pid.to_string(),
            "-D",
            &dir,
            "-v4",
            "-o",
            "dump.log",
        ],
        &images,
    );
    drop(guard);
    assert!(
        wait_pid_gone(pid, Duration::from_secs(10)),
        "{pid} still taken"
    );
    let img = criu_core::image::ImageDir::open(&images).expect("images");
    let files: Vec<FileEntry> = img.read_all(ImageKind::Files, 0).expect("files.img");
    let protocols: Vec<u32> = files
        .iter()
        .filter(|f| f.r#type == FdTypes::Netlinksk as i32)
        .filter_map(|f| f.nlsk.as_ref().map(|n| n.protocol))
        .collect();
    assert_eq!(protocols.len(), 3, "{files:?}");
    crit_317_decodes(&images);

    refuses_a_bad_entry(&ns, &images, scratch.path(), pid);

    let _restored = PidGuard::new(pid);
    let pidfile = arg(&scratch.path().join("pid"));
    criu(
        &ns,
        &[
            "restore",
            "-D",
            &dir,
            "-d",
            "--pidfile",
            &pidfile,
            "-v4",
            "-o",
            "restore.log",
        ],
        &images,
    );
    assert_eq!(
        std::fs::read_to_string(&pidfile).unwrap().trim(),
        pid.to_string()
    );
    std::fs::write(&go, "").expect("go file");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !lines(&report)
        .iter()
        .any(|l| l == "listening" || l.starts_with("fail"))
    {
        assert!(std::time::Instant::now() < deadline, "{:?}", lines(&report));
        std::thread::sleep(Duration::from_millis(20));
    }
    run(
        "nsenter",
        &[
            &ns.path(),
            "ip",
            "addr",
            "add",
            &format!("{ADDR}/32"),
            "dev",
            "lo",
        ],
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let last = loop {
        let l = lines(&report);
        let done = l.last().is_some_and(|x| x == "ok" || x.starts_with("fail"));
        if done || std::time::Instant::now() > deadline {
            break l;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(last.last().map(String::as_str), Some("ok"), "{last:?}");
}
