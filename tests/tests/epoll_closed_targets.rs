//! Epoll registrations whose fd number no longer names the target, through dump and restore,
//! with the C workload `workloads/epoll_tfd.c` (built with gcc at test time): a target whose
//! number was closed (another fd of the task keeps it), one whose number now names another
//! file, a plain one, and one only a child still holds. The images name each target's own
//! file id under the registered number; after the restore every pipe's events are delivered
//! with their data, the task's fd table is as before (700 and 702 closed, 701 the other pipe)
//! and `EPOLL_CTL_DEL` answers as before.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use criu_plugin_api::{ImageRef, read_messages};
use criu_proto::images::{FdTypes, FileEntry};
use criu_tests::{ScratchDir, TreeGuard, skip_unless_root};
use restore_common::{dump_stopped_and_kill, lines, restore_detached, spawn_bg};

mod plugin_support;
mod restore_common;

use criu_plugin_epoll as _;
use criu_plugin_files as _;
use criu_plugin_pipes as _;

fn have_gcc(test: &str) -> bool {
    let ok = Command::new("gcc")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok || std::env::var_os("CI").is_none(),
        "{test}: no gcc in CI"
    );
    if !ok {
        eprintln!("skipping {test}: gcc is not installed");
    }
    ok
}

fn wait_line(report: &Path, prefix: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(l) = lines(report).into_iter().find(|l| l.starts_with(prefix)) {
            return l;
        }
        assert!(
            Instant::now() < deadline,
            "no {prefix:?} in {:?}",
            lines(report)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn closed_and_reused_targets_keep_delivering_events() {
    let test = "closed_and_reused_targets_keep_delivering_events";
    if skip_unless_root(test) || !have_gcc(test) {
        return;
    }
    let scratch = ScratchDir::new("epoll-tfd");
    let dir = scratch.path().canonicalize().unwrap();
    let exe = dir.join("epoll_tfd");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads/epoll_tfd.c");
    let ok = Command::new("gcc")
        .args(["-O1", "-o"])
        .arg(&exe)
        .arg(src)
        .status()
        .expect("run gcc");
    assert!(ok.success(), "gcc failed");
    let work = dir.join("work");
    std::fs::create_dir(&work).unwrap();
    let report = work.join("report");
    let root = spawn_bg("setsid", &[exe.to_str().unwrap(), work.to_str().unwrap()]);
    let mut guard = TreeGuard::new([root]);
    let child: i32 = wait_line(&report, "child=", Duration::from_secs(10))["child=".len()..]
        .parse()
        .expect("child pid");
    guard.extend([child]);
    wait_line(&report, "ready", Duration::from_secs(10));

    let images = dir.join("images");
    std::fs::create_dir(&images).unwrap();
    dump_stopped_and_kill(root, &images, guard);

    let mut ctx = plugin_support::DirContext::new(&images);
    let files: Vec<FileEntry> = read_messages(&mut ctx, ImageRef::FILES).expect("files.img");
    let ep = files
        .iter()
        .find_map(|e| e.epfd.clone())
        .expect("an EVENTPOLL entry");
    let mut regs: Vec<(u64, u32)> = ep.tfd.iter().map(|t| (t.data, t.tfd)).collect();
    regs.sort_unstable();
    assert_eq!(regs[0], (1, 700));
    assert_eq!(regs[1], (2, 701));
    assert_eq!(regs[3], (4, 702));
    for t in &ep.tfd {
        let target = files
            .iter()
            .find(|e| e.id == t.id)
            .unwrap_or_else(|| panic!("target id {} not in files.img", t.id));
        assert_eq!(target.r#type, FdTypes::Pipe as i32, "{t:?}");
    }
    let ids: std::collections::BTreeSet<u32> = ep.tfd.iter().map(|t| t.id).collect();
    assert_eq!(ids.len(), 4, "four different pipes: {ep:?}");

    std::fs::write(&report, "").unwrap();
    let _restored = restore_detached(&images, root, [child]);
    std::fs::write(work.join("go"), "").unwrap();
    let result = wait_line(&report, "result ", Duration::from_secs(30));
    assert_eq!(result, "result ok", "{:?}", lines(&report));
}
