//! An unlinked FIFO survives dump and restore as CRIU carries it: a ghost image (mode
//! S_IFIFO, no contents) with a remap entry for the FIFO's REG entry, its buffered data in
//! `fifo-data.img`. After the restore the workload reads the data back through its read end
//! and sends a new message from its write end to its read end.

use std::time::Duration;

use criu_core::restore::{RestoreOptions, restore};
use criu_plugin_api::{ImageRef, read_messages};
use criu_proto::images::{FdTypes, FileEntry, RemapFilePathEntry, RemapType};
use criu_tests::{PidGuard, ScratchDir, skip_unless_root};

use criu_plugin_files as _;
use criu_plugin_pipes as _;

mod plugin_support;
mod restore_common;

use restore_common::{dump_and_kill, spawn_bg, wait_lines};

#[test]
fn unlinked_fifo_keeps_its_data_and_works_after_restore() {
    if skip_unless_root("unlinked_fifo_keeps_its_data_and_works_after_restore") {
        return;
    }
    let work = ScratchDir::new("fifo-ghost-work");
    let report = work.path().join("report");
    let pid = spawn_bg(
        env!("CARGO_BIN_EXE_wl_fifo_ghost"),
        &[report.to_str().unwrap(), work.path().to_str().unwrap()],
    );
    let guard = PidGuard::new(pid);
    let first = wait_lines(&report, 1, Duration::from_secs(10));
    assert_eq!(first[0], format!("ready {pid}"), "{first:?}");

    let imgs = ScratchDir::new("fifo-ghost-imgs");
    dump_and_kill(pid, imgs.path());
    drop(guard);

    // Both descriptions' REG entries are remapped to one ghost, as CRIU writes them.
    let mut ctx = plugin_support::DirContext::new(imgs.path());
    let files: Vec<FileEntry> = read_messages(&mut ctx, ImageRef::FILES).expect("files.img");
    let fifo_regs: Vec<u32> = files
        .iter()
        .filter(|e| e.r#type == FdTypes::Fifo as i32)
        .map(|e| e.fifo.as_ref().and_then(|f| f.regf_id).expect("regf_id"))
        .collect();
    assert_eq!(fifo_regs.len(), 2, "{files:?}");
    let remaps: Vec<RemapFilePathEntry> =
        read_messages(&mut ctx, ImageRef::REMAP_FPATH).expect("remap-fpath.img");
    assert_eq!(remaps.len(), 2, "{remaps:?}");
    for r in &remaps {
        assert!(fifo_regs.contains(&r.orig_id), "{r:?}");
        assert_eq!(r.remap_type, Some(RemapType::Ghost as i32));
        assert_eq!(r.remap_id, remaps[0].remap_id, "one ghost per FIFO");
    }
    let ghost: Vec<criu_proto::images::GhostFileEntry> =
        read_messages(&mut ctx, ImageRef::ghost_file(remaps[0].remap_id)).expect("ghost image");
    assert_eq!(ghost.len(), 1);
    assert_eq!(ghost[0].mode, libc::S_IFIFO | 0o640);

    let opts = RestoreOptions {
        images_dir: imgs.path().to_path_buf(),
        detach: true,
        ..RestoreOptions::default()
    };
    restore(&opts).unwrap_or_else(|e| panic!("restore: {e:?}"));
    let _restored = PidGuard::new(pid);
    std::fs::write(work.path().join("go"), b"").expect("go file");
    let after = wait_lines(&report, 2, Duration::from_secs(10));
    assert_eq!(after[1], "after data=ok link=ok again=ok", "{after:?}");
    // The temporary node was removed: only the report and the go file are left.
    let mut left: Vec<String> = std::fs::read_dir(work.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["go", "report"]);
}
