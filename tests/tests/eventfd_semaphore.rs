//! An eventfd in semaphore mode survives dump and restore through criu-rs's own field of
//! CRIU's EVENTFD entry (`criu_rs_semaphore = 1001`), with no side file: the workload checks
//! after the restore that a read still takes 1 from its semaphore eventfd and the whole
//! counter from its plain one. Debian's crit 3.17 decodes the files.img holding the field as
//! we do, less the field it does not know.

mod crit317;

use std::path::Path;
use std::time::Duration;

use criu_core::restore::{RestoreOptions, restore};
use criu_plugin_api::{ImageRef, read_messages};
use criu_proto::ImageKind;
use criu_proto::images::{FdTypes, FileEntry};
use criu_tests::{PidGuard, ScratchDir, skip_unless_root};

use criu_plugin_eventfd as _;
use criu_plugin_files as _;
use criu_plugin_pipes as _;

mod plugin_support;
mod restore_common;

use restore_common::{dump_and_kill, spawn_bg, wait_lines};

#[test]
fn semaphore_eventfd_round_trips_in_criu_s_entry() {
    if skip_unless_root("semaphore_eventfd_round_trips_in_criu_s_entry") {
        return;
    }
    let work = ScratchDir::new("efd-sem-work");
    let report = work.path().join("report");
    let pid = spawn_bg(
        env!("CARGO_BIN_EXE_wl_eventfd"),
        &[report.to_str().unwrap()],
    );
    let guard = PidGuard::new(pid);
    let first = wait_lines(&report, 3, Duration::from_secs(10));
    assert!(first[0].starts_with(&format!("ready {pid} ")), "{first:?}");
    assert!(first[1].ends_with("sem=ok plain=ok"), "{first:?}");

    let imgs = ScratchDir::new("efd-sem-imgs");
    dump_and_kill(pid, imgs.path());
    drop(guard);

    let mut ctx = plugin_support::DirContext::new(imgs.path());
    let files: Vec<FileEntry> = read_messages(&mut ctx, ImageRef::FILES).expect("files.img");
    let mut modes: Vec<Option<bool>> = files
        .iter()
        .filter(|e| e.r#type == FdTypes::Eventfd as i32)
        .map(|e| e.efd.as_ref().expect("efd").criu_rs_semaphore)
        .collect();
    modes.sort();
    assert_eq!(modes, [None, Some(true)], "{files:?}");
    let side_files: Vec<String> = std::fs::read_dir(imgs.path())
        .expect("images")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("criu-rs-"))
        .collect();
    // The pages digest is the one file of ours (CRIU has no message for it).
    assert_eq!(side_files, ["criu-rs-pages-digest.bin"], "side files");
    crit_317_decodes_files_img(imgs.path());

    let before = restore_common::lines(&report).len();
    let opts = RestoreOptions {
        images_dir: imgs.path().to_path_buf(),
        detach: true,
        ..RestoreOptions::default()
    };
    restore(&opts).unwrap_or_else(|e| panic!("restore: {e:?}"));
    let _restored = PidGuard::new(pid);
    let after = wait_lines(&report, before + 3, Duration::from_secs(10));
    for line in &after[before..] {
        assert!(line.ends_with("sem=ok plain=ok"), "after restore: {line}");
    }
}

/// crit 3.17 decodes our files.img (eventfd entries with and without field 1001) as we do,
/// less our field; skipped without crit unless under CI.
fn crit_317_decodes_files_img(images: &Path) {
    crit317::decodes_as_we_do(&images.join("files.img"), ImageKind::Files, |ours| {
        let ours_sem = ours["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .filter(|e| e["efd"]["criu_rs_semaphore"] == serde_json::json!(true))
            .count();
        assert_eq!(ours_sem, 1, "our crit shows the field: {ours}");
    });
}
