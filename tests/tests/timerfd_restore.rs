//! timerfds through dump and restore, with the C workload `workloads/timerfd.c` (built with
//! gcc at test time): a periodic timer never read, a pending one-shot, a fired one-shot whose
//! tick is unread, and a `CLOCK_REALTIME` `TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET`
//! timer. The tree is dumped, killed, left dead for a while and restored; the workload then
//! checks that each timer answers as the kernel would had it only been frozen: the periodic
//! one holds every expiry of the gap and keeps its phase, the deadlines stay. Debian's crit
//! 3.17 decodes the TIMERFD entries as we do, less our clock fields.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use criu_plugin_api::{ImageRef, read_messages};
use criu_proto::ImageKind;
use criu_proto::images::{FdTypes, FileEntry};
use criu_tests::{ScratchDir, TreeGuard, skip_unless_root};
use restore_common::{dump_stopped_and_kill, lines, restore_detached, spawn_bg};

mod crit317;
mod plugin_support;
mod restore_common;

use criu_plugin_files as _;
use criu_plugin_pipes as _;
use criu_plugin_timerfd as _;

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
fn timerfds_keep_period_deadlines_and_ticks() {
    let test = "timerfds_keep_period_deadlines_and_ticks";
    if skip_unless_root(test) || !have_gcc(test) {
        return;
    }
    let scratch = ScratchDir::new("timerfd");
    let dir = scratch.path().canonicalize().unwrap();
    let exe = dir.join("timerfd");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads/timerfd.c");
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
    let root = spawn_bg(exe.to_str().unwrap(), &[work.to_str().unwrap()]);
    let guard = TreeGuard::new([root]);
    wait_line(&report, "ready", Duration::from_secs(10));

    let images = dir.join("images");
    std::fs::create_dir(&images).unwrap();
    dump_stopped_and_kill(root, &images, guard);
    let dead = Instant::now();

    let mut ctx = plugin_support::DirContext::new(&images);
    let files: Vec<FileEntry> = read_messages(&mut ctx, ImageRef::FILES).expect("files.img");
    let timers: Vec<_> = files
        .iter()
        .filter(|e| e.r#type == FdTypes::Timerfd as i32)
        .map(|e| e.tfd.expect("tfd"))
        .collect();
    assert_eq!(timers.len(), 4, "{files:?}");
    assert!(timers.iter().all(|t| t.criu_rs_clock_sec.is_some()));
    assert!(
        timers
            .iter()
            .any(|t| t.settime_flags == 3 && t.clockid == 0)
    );
    crit_317_decodes_timerfds(&images);

    // A gap of a few periods while the tree is dead.
    std::thread::sleep(Duration::from_millis(400).saturating_sub(dead.elapsed()));
    std::fs::write(&report, "").unwrap();
    let _restored = restore_detached(&images, root, []);
    std::fs::write(work.join("go"), "").unwrap();
    let result = wait_line(&report, "result ", Duration::from_secs(30));
    assert_eq!(result, "result ok", "{:?}", lines(&report));
}

/// crit 3.17 decodes files.img (TIMERFD entries with our fields 1001, 1002) as we do, less
/// our fields.
fn crit_317_decodes_timerfds(images: &Path) {
    crit317::decodes_as_we_do(&images.join("files.img"), ImageKind::Files, |ours| {
        let with_clock = ours["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| !e["tfd"]["criu_rs_clock_sec"].is_null())
            .count();
        assert_eq!(with_clock, 4, "our crit shows the fields: {ours}");
    });
}
