//! Restore failure paths: a taken PID is refused with a clear error, and a failure after the
//! task exists kills and reaps it and leaves the images untouched.

use std::time::Duration;

use criu_core::dump::{DumpOptions, dump};
use criu_core::restore::imgread::{self, decode_entries};
use criu_core::restore::{RestoreError, RestoreOptions, restore};
use criu_proto::images::MmEntry;
use criu_tests::{PidGuard, ScratchDir, pid_exists, skip_unless_root, wait_pid_gone};
use prost::Message;
use restore_common::{dump_and_kill, spawn_bg, wait_lines};

mod restore_common;
use criu_plugin_files as _;

fn start(scratch: &ScratchDir) -> (i32, PidGuard) {
    let report = scratch.path().join("report.txt");
    let pid = spawn_bg(
        env!("CARGO_BIN_EXE_wl_counter"),
        &[report.to_str().expect("utf-8 path"), "2"],
    );
    let guard = PidGuard::new(pid);
    wait_lines(&report, 2, Duration::from_secs(20));
    (pid, guard)
}

fn opts(images: &std::path::Path) -> RestoreOptions {
    RestoreOptions {
        images_dir: images.to_path_buf(),
        detach: true,
        ..RestoreOptions::default()
    }
}

fn snapshot(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .expect("images")
        .map(|e| {
            let e = e.expect("entry");
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).expect("read"),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn restore_refuses_a_taken_pid() {
    if skip_unless_root("restore_refuses_a_taken_pid") {
        return;
    }
    let scratch = ScratchDir::new("restore-taken");
    let images = scratch.path().join("images");
    std::fs::create_dir_all(&images).expect("images dir");
    let (pid, _guard) = start(&scratch);
    let mut d = DumpOptions::new(pid, &images);
    d.leave_running = true;
    dump(&d).unwrap_or_else(|e| panic!("dump: {e:?}"));
    let err = restore(&opts(&images)).expect_err("the pid is still in use");
    assert!(
        matches!(err, RestoreError::PidTaken { pid: p, .. } if p == pid),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains(&pid.to_string()), "{msg}");
    // The original is untouched and still running.
    assert!(pid_exists(pid));
}

#[test]
fn restore_failure_kills_the_task_and_keeps_the_images() {
    if skip_unless_root("restore_failure_kills_the_task_and_keeps_the_images") {
        return;
    }
    let scratch = ScratchDir::new("restore-fail");
    let images = scratch.path().join("images");
    std::fs::create_dir_all(&images).expect("images dir");
    let (pid, guard) = start(&scratch);
    dump_and_kill(pid, &images);
    drop(guard);

    // brk below start_brk: the kernel refuses PR_SET_MM_MAP, late in the restore, after the
    // task and its memory exist.
    let mm_path = images.join(format!("mm-{pid}.img"));
    let data = std::fs::read(&mm_path).expect("mm image");
    let mut mm: Vec<MmEntry> = decode_entries("mm", imgread::MM_MAGIC, &data).expect("decode mm");
    mm[0].mm_brk = mm[0].mm_start_brk - 4096;
    let body = mm[0].encode_to_vec();
    let mut out = data[..8].to_vec();
    out.extend((body.len() as u32).to_le_bytes());
    out.extend(body);
    std::fs::write(&mm_path, out).expect("write mm");

    let before = snapshot(&images);
    let _restored = PidGuard::new(pid);
    let err = restore(&opts(&images)).expect_err("corrupt brk");
    let msg = err.to_string();
    assert!(
        msg.contains("PR_SET_MM_MAP") && msg.contains(&pid.to_string()),
        "{msg}"
    );
    assert!(
        wait_pid_gone(pid, Duration::from_secs(5)),
        "the half-restored task {pid} is still there"
    );
    assert_eq!(snapshot(&images), before, "images changed");
}

#[test]
fn restore_refuses_a_mapped_file_that_changed() {
    if skip_unless_root("restore_refuses_a_mapped_file_that_changed") {
        return;
    }
    let scratch = ScratchDir::new("restore-changed");
    let images = scratch.path().join("images");
    std::fs::create_dir_all(&images).expect("images dir");
    let (pid, guard) = start(&scratch);
    dump_and_kill(pid, &images);
    drop(guard);

    // Pretend the executable had another size at dump time.
    let exe = env!("CARGO_BIN_EXE_wl_counter");
    let path = images.join("files.img");
    let data = std::fs::read(&path).expect("files.img");
    let mut files: Vec<criu_proto::images::FileEntry> =
        decode_entries("files", imgread::FILES_MAGIC, &data).expect("decode files");
    let reg = files
        .iter_mut()
        .filter_map(|f| f.reg.as_mut())
        .find(|r| r.name == exe)
        .expect("exe in files.img");
    reg.size = Some(reg.size.unwrap_or(0) + 1);
    let mut out = data[..8].to_vec();
    for f in &files {
        let body = f.encode_to_vec();
        out.extend((body.len() as u32).to_le_bytes());
        out.extend(body);
    }
    std::fs::write(&path, out).expect("write files.img");

    let err = restore(&opts(&images)).expect_err("changed exe");
    let msg = err.to_string();
    assert!(
        msg.contains("the file changed") && msg.contains(exe),
        "{msg}"
    );
    assert!(!pid_exists(pid), "nothing may be left running");
}
