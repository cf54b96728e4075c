//! SysV shared memory attached by a parent and its child: the dump records the attachments
//! by segment id (the segment stays in the host's IPC namespace, as with CRIU without an IPC
//! namespace dump) and the restore attaches it again, still shared: each process sees the
//! other's counter move after the restore. A segment removed with IPC_RMID (it dies with the
//! tree) is refused at dump, naming it.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use criu_tests::{ScratchDir, TreeGuard, skip_unless_root};
use restore_common::{dump_stopped_and_kill, lines, restore_detached, spawn_bg};

mod restore_common;
use criu_plugin_files as _;
use criu_plugin_pipes as _;

/// Removes the segment when dropped, whatever happened to the test.
struct Segment(i32);

impl Drop for Segment {
    fn drop(&mut self) {
        let _ = Command::new("ipcrm")
            .args(["-m", &self.0.to_string()])
            .status();
    }
}

/// pid -> number of `ok` ticks.
fn oks(report: &Path) -> BTreeMap<i32, usize> {
    let mut m = BTreeMap::new();
    for l in lines(report) {
        let w: Vec<&str> = l.split_whitespace().collect();
        if let ["tick", pid, word] = w[..]
            && let Ok(pid) = pid.parse()
        {
            *m.entry(pid).or_insert(0) += usize::from(word == "ok");
        }
    }
    m
}

fn wait_oks(report: &Path, min: usize) -> Vec<i32> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let m = oks(report);
        if m.len() == 2 && m.values().all(|n| *n >= min) {
            return m.keys().copied().collect();
        }
        assert!(Instant::now() < deadline, "not both ok: {m:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn start(report: &Path, extra: &[&str]) -> (i32, Segment) {
    let mut args = vec![report.to_str().expect("utf-8")];
    args.extend_from_slice(extra);
    let root = spawn_bg(env!("CARGO_BIN_EXE_wl_tree_sysvshm"), &args);
    let deadline = Instant::now() + Duration::from_secs(10);
    let id = loop {
        if let Some(id) = lines(report)
            .iter()
            .find_map(|l| l.strip_prefix("shmid ")?.parse().ok())
        {
            break id;
        }
        assert!(Instant::now() < deadline, "no shmid reported");
        std::thread::sleep(Duration::from_millis(20));
    };
    (root, Segment(id))
}

#[test]
fn tree_sysv_shm_attached_again() {
    if skip_unless_root("tree_sysv_shm_attached_again") {
        return;
    }
    let scratch = ScratchDir::new("tree-sysvshm");
    let report = scratch.path().join("report.txt");
    let images = scratch.path().join("images");
    std::fs::create_dir_all(&images).expect("images dir");
    let (root, _seg) = start(&report, &[]);
    let mut guards = TreeGuard::new([root]);
    let pids = wait_oks(&report, 2);
    guards.extend(pids.iter().copied());

    dump_stopped_and_kill(root, &images, guards);
    std::fs::write(&report, "").expect("truncate report");

    let _g = restore_detached(&images, root, pids.iter().copied());
    assert_eq!(wait_oks(&report, 3), pids);
}

#[test]
fn tree_sysv_shm_removed_is_refused() {
    if skip_unless_root("tree_sysv_shm_removed_is_refused") {
        return;
    }
    let scratch = ScratchDir::new("tree-sysvshm-rmid");
    let report = scratch.path().join("report.txt");
    let images = scratch.path().join("images");
    std::fs::create_dir_all(&images).expect("images dir");
    let (root, seg) = start(&report, &["rmid"]);
    let mut guards = TreeGuard::new([root]);
    let pids = wait_oks(&report, 1);
    guards.extend(pids.iter().copied());
    let d = criu_core::dump::DumpOptions::new(root, &images);
    let e = criu_core::dump::dump(&d).expect_err("a removed segment");
    let msg = e.to_string();
    assert!(
        msg.contains(&seg.0.to_string()) && msg.contains("IPC_RMID"),
        "{msg}"
    );
    // The tree runs on after the refused dump.
    let before = oks(&report);
    let deadline = Instant::now() + Duration::from_secs(10);
    while oks(&report).values().sum::<usize>() <= before.values().sum::<usize>() + 2 {
        assert!(
            Instant::now() < deadline,
            "tree stopped after the refused dump"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
