//! Epoll and eventfd through dump and restore (the built-in `epoll` and `eventfd` plugins):
//! `wl_epoll` checks level- and edge-triggered reporting, data values and `EPOLL_CTL_MOD`
//! every round, before and after; after the restore an `EPOLL_CTL_DEL` must succeed. The
//! images hold CRIU's EVENTPOLL and EVENTFD entries and decode with Debian's crit. (Targets
//! whose fd number was closed or reused: `epoll_closed_targets`.)

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use criu_core::restore::{RestoreOptions, RestoreOutcome, restore};
use criu_proto::images::{FdTypes, FileEntry};
use criu_tests::{PidGuard, ScratchDir, TreeGuard, skip_unless_root};

use criu_plugin_epoll as _;
use criu_plugin_eventfd as _;
use criu_plugin_files as _;
use criu_plugin_pipes as _;

mod plugin_support;
mod restore_common;

use restore_common::{dump_and_kill, lines, spawn_bg, wait_lines};

const WL: &str = env!("CARGO_BIN_EXE_wl_epoll");

fn files_img(dir: &Path) -> Vec<FileEntry> {
    let mut ctx = plugin_support::DirContext::new(dir);
    criu_plugin_api::read_messages(&mut ctx, criu_plugin_api::ImageRef::FILES)
        .expect("files.img decodes")
}

/// Waits for `n` more lines than `after` ending in `ok`; fails on a FAIL line.
fn wait_ok(report: &Path, after: usize, n: usize) -> Vec<String> {
    let l = wait_lines(report, after + n, Duration::from_secs(15));
    assert!(
        !l.iter().any(|l| l.contains("FAIL")),
        "workload failed: {:?}",
        l.iter().rev().take(5).collect::<Vec<_>>()
    );
    assert!(l.last().is_some_and(|l| l.ends_with(" ok")), "{l:?}");
    l
}

/// `crit decode` of files.img names both entry kinds (skipped without crit).
fn crit_decodes(images: &Path) {
    let crit = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("crit"))
            .find(|p| p.is_file())
    });
    let Some(crit) = crit else {
        assert!(std::env::var_os("CI").is_none(), "crit is missing in CI");
        eprintln!("skipping the crit check: no crit on PATH");
        return;
    };
    let out = Command::new(crit)
        .arg("decode")
        .arg("-i")
        .arg(images.join("files.img"))
        .output()
        .expect("run crit");
    assert!(
        out.status.success(),
        "crit decode: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("crit prints JSON");
    let entries = v["entries"].as_array().expect("entries");
    let ep = entries
        .iter()
        .find(|e| e["type"] == "EVENTPOLL")
        .expect("an EVENTPOLL entry in crit's view");
    assert_eq!(ep["epfd"]["tfd"].as_array().map(Vec::len), Some(3), "{ep}");
    let efd = entries
        .iter()
        .find(|e| e["type"] == "EVENTFD")
        .expect("an EVENTFD entry in crit's view");
    assert!(efd["efd"]["counter"].is_number(), "{efd}");
}

#[test]
fn epoll_registrations_survive_and_del_works_after_restore() {
    if skip_unless_root("epoll_registrations_survive_and_del_works_after_restore") {
        return;
    }
    let work = ScratchDir::new("epoll-sem");
    let report = work.path().join("report");
    let pid = spawn_bg("setsid", &[WL, report.to_str().unwrap()]);
    let guard = PidGuard::new(pid);
    wait_ok(&report, 0, 3);

    let imgs = ScratchDir::new("epoll-sem-imgs");
    dump_and_kill(pid, imgs.path());
    drop(guard);
    let files = files_img(imgs.path());
    let ep = files
        .iter()
        .find_map(|e| e.epfd.as_ref())
        .expect("an EVENTPOLL entry");
    let mut data: Vec<u64> = ep.tfd.iter().map(|t| t.data).collect();
    data.sort_unstable();
    assert_eq!(data, [0xa1, 0xb2, 0xe3]);
    for t in &ep.tfd {
        let target = files
            .iter()
            .find(|e| e.id == t.id)
            .unwrap_or_else(|| panic!("target id {} not in files.img", t.id));
        let want = if t.data == 0xe3 {
            FdTypes::Eventfd
        } else {
            FdTypes::Pipe
        };
        assert_eq!(target.r#type, want as i32, "{t:?}");
        assert!(t.inode.is_some() && t.dev.is_some(), "{t:?}");
    }
    let et = ep.tfd.iter().find(|t| t.data == 0xb2).unwrap();
    assert_ne!(et.events & libc::EPOLLET as u32, 0);
    crit_decodes(imgs.path());

    let before = lines(&report).len();
    let out = restore(&RestoreOptions {
        images_dir: imgs.path().to_path_buf(),
        detach: true,
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("restore: {e:?}"));
    assert_eq!(out, RestoreOutcome::Detached { root: pid });
    let _restored = PidGuard::new(pid);
    let l = wait_ok(&report, before, 3);
    assert!(
        l[before..]
            .iter()
            .all(|l| l.contains(&format!("pid={pid} ")))
    );

    // EPOLL_CTL_DEL of a target added back by criu: found under the task's fd number.
    std::fs::write(format!("{}.del", report.display()), b"").unwrap();
    let l = wait_lines(&report, l.len() + 4, Duration::from_secs(15));
    let del = l
        .iter()
        .position(|l| l.contains("del"))
        .unwrap_or_else(|| panic!("no del line: {l:?}"));
    assert!(l[del].ends_with("del ok"), "{}", l[del]);
    wait_ok(&report, del + 1, 2);
}

/// An epoll shared by a parent and its child (fork after the registrations): the
/// registrations belong to the one epoll and come back once; the parent's checks, MOD and
/// DEL included, hold after the restore.
#[test]
fn an_epoll_shared_with_a_child_round_trips() {
    if skip_unless_root("an_epoll_shared_with_a_child_round_trips") {
        return;
    }
    let work = ScratchDir::new("epoll-fork");
    let report = work.path().join("report");
    let pid = spawn_bg("setsid", &[WL, report.to_str().unwrap(), "fork"]);
    let mut guard = TreeGuard::new([pid]);
    let l = wait_ok(&report, 0, 3);
    let child: i32 = l
        .iter()
        .find_map(|l| l.split("child=").nth(1))
        .expect("child line")
        .trim()
        .parse()
        .expect("child pid");
    guard.extend([child]);
    assert_eq!(restore_common::descendants(pid), [pid, child]);

    let imgs = ScratchDir::new("epoll-fork-imgs");
    let tree = restore_common::tree_ids(pid);
    restore_common::dump_tree_and_kill(pid, imgs.path(), &tree, guard, &report);
    let eps: Vec<_> = files_img(imgs.path())
        .into_iter()
        .filter_map(|e| e.epfd)
        .collect();
    assert_eq!(eps.len(), 1, "one epoll description for both tasks");
    assert_eq!(eps[0].tfd.len(), 3);

    let before = lines(&report).len();
    restore(&RestoreOptions {
        images_dir: imgs.path().to_path_buf(),
        detach: true,
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("restore: {e:?}"));
    let _guards = (PidGuard::new(child), PidGuard::new(pid));
    assert_eq!(restore_common::descendants(pid), [pid, child]);
    let l = wait_ok(&report, before, 3);
    std::fs::write(format!("{}.del", report.display()), b"").unwrap();
    let l = wait_lines(&report, l.len() + 4, Duration::from_secs(15));
    assert!(l.iter().any(|l| l.ends_with("del ok")), "{l:?}");
    wait_ok(&report, l.len(), 2);
}
