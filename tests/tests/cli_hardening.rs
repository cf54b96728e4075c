//! Failures of `criu` that must leave nothing behind and name their cause: a pidfile that
//! cannot be written (the restored tree is killed), missing or damaged per-process images
//! (named), and a dump of a tree that contains criu itself.

use std::path::Path;
use std::time::Duration;

use criu_tests::{ScratchDir, pid_exists, skip_unless_root, wait_pid_gone};

mod cli_support;
use cli_support::{Counter, assert_exit, criu, stderr};

/// Dumps a fresh `wl_counter` with the command line (which kills it) and waits for its pid
/// to be free.
fn dumped(scratch: &ScratchDir) -> (Counter, std::path::PathBuf) {
    let images = scratch.path().join("images");
    std::fs::create_dir_all(&images).expect("images dir");
    let mut counter = Counter::start(scratch.path());
    let out = criu(&[
        "dump",
        "-t",
        &counter.pid.to_string(),
        "-D",
        images.to_str().expect("utf-8"),
        "-o",
        "dump.log",
        "-v4",
    ]);
    assert_exit(&out, 0, "dump");
    counter.wait_gone();
    (counter, images)
}

fn restore(images: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["restore", "-D", images.to_str().expect("utf-8"), "-d"];
    args.extend(extra);
    criu(&args)
}

/// `--pidfile` into a directory that does not exist: exit 1 naming the file, and the tree
/// that was restored is killed before it ran (its pid is free again).
#[test]
fn unwritable_pidfile_kills_the_restored_tree() {
    if skip_unless_root("unwritable_pidfile_kills_the_restored_tree") {
        return;
    }
    let scratch = ScratchDir::new("cli-pidfile");
    let (counter, images) = dumped(&scratch);
    let lines_at_dump = std::fs::read_to_string(&counter.report).expect("report");
    let out = restore(&images, &["--pidfile", "/nonexistent-dir/criu.pid"]);
    assert_exit(&out, 1, "restore with a bad pidfile");
    let err = stderr(&out);
    assert!(err.contains("/nonexistent-dir/criu.pid"), "{err}");
    assert!(
        wait_pid_gone(counter.pid, Duration::from_secs(5)),
        "the restored tree {} is still there",
        counter.pid
    );
    // It never ran: not a single tick after the dump.
    std::thread::sleep(Duration::from_millis(200));
    let now = std::fs::read_to_string(&counter.report).expect("report");
    assert_eq!(now, lines_at_dump, "the restored tree ran");
    // The images are intact: a restore with a good pidfile works.
    let pidfile = scratch.path().join("ok.pid");
    let out = restore(&images, &["--pidfile", pidfile.to_str().expect("utf-8")]);
    assert_exit(&out, 0, "restore with a good pidfile");
    counter.assert_runs_on(3);
}

/// Copies `images` to `to`, applies `damage`, restores, and returns criu's stderr after
/// checking it failed with nothing left running.
fn restore_damaged(images: &Path, to: &Path, pid: i32, damage: impl FnOnce(&Path)) -> String {
    std::fs::create_dir_all(to).expect("copy dir");
    for e in std::fs::read_dir(images).expect("images") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), to.join(e.file_name())).expect("copy image");
    }
    damage(to);
    let out = restore(to, &[]);
    assert_exit(&out, 1, "restore of damaged images");
    assert!(!pid_exists(pid), "pid {pid} runs after a failed restore");
    stderr(&out)
}

/// Every image a core or ids image refers to must be there; a damaged one is named.
#[test]
fn missing_or_damaged_task_images_are_named() {
    if skip_unless_root("missing_or_damaged_task_images_are_named") {
        return;
    }
    let scratch = ScratchDir::new("cli-images");
    let (counter, images) = dumped(&scratch);
    let pid = counter.pid;
    let fdinfo: Vec<_> = std::fs::read_dir(&images)
        .expect("images")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("fdinfo-"))
        .collect();
    assert_eq!(fdinfo.len(), 1, "{fdinfo:?}");
    type Damage<'a> = Box<dyn FnOnce(&Path) + 'a>;
    let cases: Vec<(String, Damage, &str)> = vec![
        (
            fdinfo[0].clone(),
            Box::new(|d: &Path| std::fs::remove_file(d.join(&fdinfo[0])).expect("rm")),
            "missing",
        ),
        (
            format!("fs-{pid}.img"),
            Box::new(move |d: &Path| {
                std::fs::remove_file(d.join(format!("fs-{pid}.img"))).expect("rm")
            }),
            "missing",
        ),
        (
            format!("ids-{pid}.img"),
            Box::new(move |d: &Path| {
                std::fs::remove_file(d.join(format!("ids-{pid}.img"))).expect("rm")
            }),
            "missing",
        ),
        (
            format!("ids-{pid}.img"),
            Box::new(move |d: &Path| {
                let p = d.join(format!("ids-{pid}.img"));
                let mut data = std::fs::read(&p).expect("ids");
                // Keep the header, make the entry's length run past the end of the file.
                data.truncate(8);
                data.extend(1000u32.to_le_bytes());
                data.extend([0u8; 10]);
                std::fs::write(&p, data).expect("write ids");
            }),
            "",
        ),
    ];
    for (i, (file, damage, word)) in cases.into_iter().enumerate() {
        let err = restore_damaged(
            &images,
            &scratch.path().join(format!("case{i}")),
            pid,
            damage,
        );
        assert!(err.contains(&file), "case {i}: {file} not named: {err}");
        assert!(err.contains(word), "case {i}: {err}");
        assert!(!err.contains("no ids (files_id)"), "case {i}: {err}");
    }
}

/// `criu dump -t <criu's own parent>`: refused before anything is frozen, naming criu; the
/// parent (a shell) runs on and reports criu's exit code.
#[test]
fn a_tree_containing_criu_is_refused_by_name() {
    if skip_unless_root("a_tree_containing_criu_is_refused_by_name") {
        return;
    }
    let scratch = ScratchDir::new("cli-self");
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(r#""$0" dump -t $$ -D "$1"; echo "criu exited $?""#)
        .arg(env!("CARGO_BIN_EXE_criu_under_test"))
        .arg(scratch.path())
        .env("HOME", "/nonexistent")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run sh");
    let text = String::from_utf8_lossy(&out.stdout);
    let err = stderr(&out);
    assert!(text.contains("criu exited 1"), "{text} {err}");
    assert!(err.contains("contains criu itself"), "{err}");
    assert!(!err.contains("EPERM"), "{err}");
}
