//! pidfds through dump and restore, with the C workload `workloads/pidfd.c` (built with gcc
//! at test time): a parent holding pidfds of a live child (`PIDFD_NONBLOCK`, in an epoll), of one of its
//! threads (`PIDFD_THREAD`), of a reaped child (two pidfds) and of a zombie child, the live
//! child holding a pidfd of its parent. After the restore the workload checks every answer
//! itself (targets, flags, `pidfd_getfd`, `pidfd_send_signal`, `waitid(P_PIDFD)`, the reaped
//! child's exit status through `PIDFD_GET_INFO`, poll). A pidfd of a process outside the
//! tree fails the dump naming the fd, the holder and the target; a pidfd entry naming a pid
//! outside the tree fails the restore naming files.img and the entry. Debian's crit 3.17, which
//! predates CRIU's pidfd format, decodes the files.img as we do less what it lacks.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use criu_core::dump::{DumpOptions, dump};
use criu_core::restore::{RestoreOptions, restore};
use criu_plugin_api::{ImageRef, read_messages};
use criu_proto::ImageKind;
use criu_proto::images::{FdTypes, FileEntry, PidfdEntry};
use criu_proto::json;
use criu_tests::{ScratchDir, TreeGuard, skip_unless_root};
use restore_common::{dump_stopped_and_kill, lines, restore_detached, spawn_bg};

mod crit317;
mod plugin_support;
mod restore_common;

use criu_plugin_epoll as _;
use criu_plugin_eventfd as _;
use criu_plugin_files as _;
use criu_plugin_pidfd as _;
use criu_plugin_pipes as _;

/// Whether gcc runs; in CI (env CI set) its absence is a failure, elsewhere a skip.
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

/// Builds `workloads/pidfd.c` into `dir` and starts it as `pidfd MODE DIR/work`: its pid and
/// the work dir.
fn start(dir: &Path, mode: &str) -> (i32, PathBuf) {
    let exe = dir.join("pidfd");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads/pidfd.c");
    let ok = Command::new("gcc")
        .args(["-O1", "-pthread", "-o"])
        .arg(&exe)
        .arg(src)
        .status()
        .expect("run gcc");
    assert!(ok.success(), "gcc failed");
    let work = dir.join("work");
    std::fs::create_dir_all(&work).expect("work dir");
    let pid = spawn_bg(exe.to_str().unwrap(), &[mode, work.to_str().unwrap()]);
    (pid, work)
}

/// The first report line starting with `prefix`, waiting at most `timeout`.
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

fn pidfd_entries(images: &Path) -> Vec<PidfdEntry> {
    let mut ctx = plugin_support::DirContext::new(images);
    let files: Vec<FileEntry> = read_messages(&mut ctx, ImageRef::FILES).expect("files.img");
    files
        .into_iter()
        .filter(|e| e.r#type == FdTypes::Pidfd as i32)
        .map(|e| e.pidfd.expect("pidfd member"))
        .collect()
}

#[test]
fn pidfds_of_live_thread_reaped_and_zombie_targets_survive() {
    let test = "pidfds_of_live_thread_reaped_and_zombie_targets_survive";
    if skip_unless_root(test) || !have_gcc(test) {
        return;
    }
    let scratch = ScratchDir::new("pidfd-tree");
    let dir = scratch.path().canonicalize().unwrap();
    let (root, work) = start(&dir, "tree");
    let mut guard = TreeGuard::new([root]);
    let report = work.join("report");
    let ready = wait_line(&report, "ready ", Duration::from_secs(10));
    let ids: Vec<i32> = ready[6..].split(' ').map(|s| s.parse().unwrap()).collect();
    let (a, t, z) = (ids[0], ids[1], ids[3]);
    guard.extend([a, z]);
    wait_line(&report, "child-ready", Duration::from_secs(10));

    let images = dir.join("images");
    std::fs::create_dir(&images).unwrap();
    dump_stopped_and_kill(root, &images, guard);

    let entries = pidfd_entries(&images);
    let by_target = |nspid: i32| entries.iter().filter(move |p| p.nspid == nspid);
    assert_eq!(by_target(a).count(), 1, "{entries:?}");
    let thread = by_target(t).next().expect("thread pidfd");
    assert_ne!(thread.flags & criu_plugin_pidfd::PIDFD_THREAD, 0);
    assert_eq!(by_target(z).count(), 1, "zombie pidfd: {entries:?}");
    let reaped: Vec<_> = by_target(-1).collect();
    assert_eq!(reaped.len(), 2, "{entries:?}");
    assert_eq!(reaped[0].ino, reaped[1].ino);
    assert!(
        reaped
            .iter()
            .all(|p| p.criu_rs_exit_status == Some(42 << 8))
    );
    // The child's pidfd of its parent.
    assert_eq!(by_target(root).count(), 1, "{entries:?}");

    // crit 3.17 predates pidfds: it shows those entries with their id only.
    crit317::decodes_as_we_do(&images.join("files.img"), ImageKind::Files, |ours| {
        let n = ours["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "PIDFD" && e["pidfd"].is_object())
            .count();
        assert_eq!(n, entries.len(), "{ours}");
    });

    bad_target_is_refused_before_any_task(&images, z, root);

    std::fs::write(&report, "").unwrap();
    let _restored = restore_detached(&images, root, [a, z]);
    std::fs::write(work.join("go"), "").unwrap();
    let result = wait_line(&report, "result ", Duration::from_secs(30));
    assert_eq!(result, "result ok", "{:?}", lines(&report));
}

/// A copy of the images whose zombie pidfd names pid 1 instead: the restore fails before
/// creating any task, naming files.img and the entry.
fn bad_target_is_refused_before_any_task(images: &Path, zombie: i32, root: i32) {
    let bad = images.with_file_name("images-bad");
    std::fs::create_dir(&bad).unwrap();
    for f in std::fs::read_dir(images).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), bad.join(f.file_name())).unwrap();
    }
    let files = bad.join("files.img");
    let opts = json::DecodeOptions {
        pretty: false,
        no_payload: false,
    };
    let mut doc = json::decode(&std::fs::read(&files).unwrap(), opts).unwrap();
    let entry = doc["entries"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|e| e["pidfd"]["nspid"] == zombie)
        .expect("the zombie's pidfd");
    entry["pidfd"]["nspid"] = 1.into();
    let id = entry["id"].clone();
    std::fs::write(&files, json::encode(&doc).unwrap()).unwrap();
    let opts = RestoreOptions {
        images_dir: bad,
        detach: true,
        ..RestoreOptions::default()
    };
    let err = restore(&opts).expect_err("a pidfd of pid 1 must be refused");
    let msg = format!("{err}");
    assert!(
        msg.contains("files.img")
            && msg.contains(&format!("PIDFD entry {id}:"))
            && msg.contains("pid 1 is not a task"),
        "{msg}"
    );
    assert!(!criu_tests::pid_exists(root), "a task was created");
}

#[test]
fn pidfd_of_a_process_outside_the_tree_is_refused() {
    let test = "pidfd_of_a_process_outside_the_tree_is_refused";
    if skip_unless_root(test) || !have_gcc(test) {
        return;
    }
    let scratch = ScratchDir::new("pidfd-outside");
    let dir = scratch.path().canonicalize().unwrap();
    let (pid, work) = start(&dir, "outside");
    let _guard = TreeGuard::new([pid]);
    let fd = wait_line(&work.join("report"), "ready ", Duration::from_secs(10));
    let fd = &fd[6..];
    let images = dir.join("images");
    std::fs::create_dir(&images).unwrap();
    let err = dump(&DumpOptions::new(pid, &images)).expect_err("dump must refuse");
    let mut msg = err.to_string();
    let mut src = std::error::Error::source(&err);
    while let Some(e) = src {
        msg += &format!(": {e}");
        src = e.source();
    }
    assert!(
        msg.contains(&format!("fd {fd} of pid {pid}")) && msg.contains("process 1,"),
        "{msg}"
    );
    assert!(
        criu_tests::pid_exists(pid),
        "the tree runs on after the refusal"
    );
}
