//! File locks and leases with `--file-locks` (`filelocks` plugin, CRIU's `filelocks.img`),
//! through this tree's `criu` binary. The C workload (`workloads/filelocks.c`) holds POSIX
//! read and write ranges in the parent and in its child, OFD read and write ranges, a flock
//! shared across fork, a read lease and a write lease being broken to a read lease. After
//! dump (which kills it) it is restored three times:
//! - without `--file-locks`: refused before any task exists, naming the option;
//! - with a conflicting flock held by the test: the restore fails naming the flock, every
//!   restored task is killed and the test's own lock is untouched;
//! - then for real: from a new process the workload finds every lock with its owner, its
//!   own locks unlock and lock again, the lease being broken is still breaking to a read
//!   lease and the restore sent it no second break signal.
//!
//! Debian's crit 3.17 decodes `filelocks.img` as we do.

use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use criu_proto::ImageKind;
use criu_proto::images::FileLockEntry;
use criu_proto::json::{self, DecodeOptions, compat};
use criu_tests::{TreeGuard, pid_exists, skip_unless_root, wait_pid_gone};

#[path = "mqueue_support/mod.rs"]
mod c_workload;

use c_workload::{Workload, have_gcc};

/// This tree's `criu` (`criu_under_test`, the built-in plugins linked) run to completion.
fn criu(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_criu_under_test"))
        .args(args)
        .env_remove("CRIU_CONFIG_FILE")
        .env("HOME", "/nonexistent")
        .stdin(Stdio::null())
        .output()
        .expect("run criu")
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout {}\nstderr {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The entries of `filelocks.img`, decoded by our reader.
fn lock_entries(images: &Path) -> Vec<FileLockEntry> {
    let bytes = std::fs::read(images.join("filelocks.img")).expect("filelocks.img");
    criu_proto::framing::parse_as(ImageKind::FileLocks, &bytes)
        .and_then(|raw| raw.decode_entries())
        .expect("filelocks.img")
}

/// crit 3.17 decodes `filelocks.img` as we do; skipped without crit unless under CI.
fn crit_317_decodes(file: &Path) {
    let Some(crit) = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("crit"))
            .find(|p| p.is_file())
    }) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "crit is not installed (apt-get install -y criu)"
        );
        eprintln!("not checking crit 3.17: no crit on PATH");
        return;
    };
    let out = Command::new(crit)
        .args(["decode", "--pretty", "-i"])
        .arg(file)
        .output()
        .expect("run crit");
    assert!(out.status.success(), "crit: {}", text(&out));
    let theirs: serde_json::Value = serde_json::from_slice(&out.stdout).expect("crit JSON");
    let opts = DecodeOptions {
        pretty: true,
        no_payload: false,
    };
    let bytes = std::fs::read(file).expect("filelocks.img");
    let mut ours = json::decode_as(ImageKind::FileLocks, &bytes, opts).expect("our decode");
    compat::to_crit_317(&mut ours);
    assert_eq!(ours, theirs, "crit 3.17 decodes filelocks.img differently");
}

/// What the dump wrote: one entry per lock (the flock shared by parent and child once),
/// each to be taken again by its owner.
fn check_image(images: &Path, parent: i32, child: i32) {
    let mut got: Vec<(u32, u32, i32, i64, i64)> = lock_entries(images)
        .iter()
        .map(|e| (e.flag, e.r#type, e.pid, e.start, e.len))
        .collect();
    got.sort();
    let (rd, wr, breaking) = (libc::F_RDLCK as u32, libc::F_WRLCK as u32, 4);
    let mut want = vec![
        (1, wr, parent, 0, 10),
        (1, rd, parent, 20, 10),
        (1, wr, child, 100, 0),
        (2, wr, parent, 0, 0),
        (4, wr, parent, 0, 100),
        (4, rd, parent, 200, 100),
        (8, rd, parent, 0, 0),
        (8, rd | breaking, parent, 0, 0),
    ];
    want.sort();
    assert_eq!(got, want);
}

/// The restore refuses with `stderr_has` in its message and leaves no task behind.
fn restore_refused(images: &Path, pids: &[i32], extra: &[&str], stderr_has: &[&str]) {
    let dir = images.to_str().expect("utf-8");
    let mut args = vec![
        "restore",
        "-D",
        dir,
        "-d",
        "-v4",
        "-o",
        "restore-refused.log",
    ];
    args.extend_from_slice(extra);
    let out = criu(&args);
    let _guard = TreeGuard::new(pids.iter().copied());
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    for s in stderr_has {
        assert!(err.contains(s), "no {s:?} in {}", text(&out));
    }
    for &p in pids {
        assert!(wait_pid_gone(p, Duration::from_secs(10)), "pid {p} left");
    }
}

/// Our own flock on `path`, held until the file is dropped.
fn hold_flock(path: &Path) -> std::fs::File {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open");
    // SAFETY: flock on an fd we own, alive for the call.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    assert_eq!(rc, 0, "flock: {}", std::io::Error::last_os_error());
    f
}

/// Whether another description can take an exclusive flock on `path` now.
fn flock_free(path: &Path) -> bool {
    let f = std::fs::File::open(path).expect("open");
    // SAFETY: flock on an fd we own, alive for the call.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    rc == 0
}

#[test]
fn every_kind_of_lock_survives_dump_kill_restore() {
    let test = "every_kind_of_lock_survives_dump_kill_restore";
    if skip_unless_root(test) || !have_gcc(test) {
        return;
    }
    let wl = Workload::start("filelocks");
    let pids = wl.pids();
    let (parent, child) = (pids[0], pids[1]);
    let guard = TreeGuard::new(pids.clone());
    let images = wl.images.to_str().expect("utf-8");
    let pid = parent.to_string();
    let out = criu(&[
        "dump",
        "-t",
        &pid,
        "-D",
        images,
        "--file-locks",
        "-v4",
        "-o",
        "dump.log",
    ]);
    assert_eq!(out.status.code(), Some(0), "dump: {}", text(&out));
    for &p in &pids {
        assert!(
            wait_pid_gone(p, Duration::from_secs(10)),
            "pid {p} not killed"
        );
    }
    drop(guard);
    check_image(&wl.images, parent, child);
    crit_317_decodes(&wl.images.join("filelocks.img"));

    restore_refused(&wl.images, &pids, &[], &["--file-locks", "filelocks.img"]);

    // A flock taken meanwhile outside the tree: the restore fails and kills what it made;
    // the outside lock stays.
    let flock_path = wl.images.parent().expect("dir").join("lk.flock");
    let ours = hold_flock(&flock_path);
    restore_refused(
        &wl.images,
        &pids,
        &["--file-locks"],
        &["flock", "Resource temporarily unavailable"],
    );
    assert!(!flock_free(&flock_path), "the outside flock was released");
    drop(ours);
    assert!(
        flock_free(&flock_path),
        "a lock of the failed restore was left behind"
    );

    let out = criu(&[
        "restore",
        "-D",
        images,
        "-d",
        "--file-locks",
        "-v4",
        "-o",
        "restore.log",
    ]);
    let _restored = TreeGuard::new(pids.clone());
    assert_eq!(out.status.code(), Some(0), "restore: {}", text(&out));
    assert!(pid_exists(parent) && pid_exists(child));
    assert_eq!(wl.verdict(), "ok");
}
