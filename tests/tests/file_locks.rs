//! A task holding a file lock or a lease is refused by the dump (as CRIU does without
//! --file-locks) instead of being restored without its lock: the error names the pid, the fd,
//! the path and the kind of lock, and the task keeps running with its lock held.

use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

use criu_core::dump::{DumpError, DumpOptions, dump};
use criu_core::proc::locks::LockKind;
use criu_tests::{ScratchDir, Workload, pid_exists, skip_unless_root};

use criu_plugin_files as _;
use criu_plugin_pipes as _;

/// The task's state letter from /proc/PID/stat (after the command name).
fn state(pid: i32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let after = stat.rsplit_once(") ").expect("stat format").1;
    after.chars().next().expect("state")
}

/// The workload's fd open on `path`.
fn fd_of(pid: i32, path: &Path) -> i32 {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd dir")
        .filter_map(Result::ok)
        .find(|e| std::fs::read_link(e.path()).is_ok_and(|l| l == path))
        .and_then(|e| e.file_name().to_str()?.parse().ok())
        .expect("the workload's fd on its locked file")
}

/// A second description of `path` tries a conflicting lock of `kind`: it must be refused.
/// Not for leases: opening for writing would break a read lease (SIGIO to the holder).
fn conflicting_lock_refused(kind: &str, path: &Path, holder: i32) {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open for a conflicting lock");
    let fd = file.as_raw_fd();
    match kind {
        "posix" | "ofd" => {
            let mut probe = libc::flock {
                l_type: libc::F_WRLCK as i16,
                l_whence: libc::SEEK_SET as i16,
                l_start: 0,
                l_len: 10,
                l_pid: 0,
            };
            let cmd = if kind == "posix" {
                libc::F_GETLK
            } else {
                libc::F_OFD_GETLK
            };
            // SAFETY: F_GETLK/F_OFD_GETLK fill the `struct flock` we pass, alive for the call.
            let rc = unsafe { libc::fcntl(fd, cmd, &mut probe) };
            assert_eq!(rc, 0, "{kind} probe: {}", std::io::Error::last_os_error());
            assert_eq!(probe.l_type, libc::F_WRLCK as i16, "{kind} lock is gone");
            if kind == "posix" {
                assert_eq!(probe.l_pid, holder, "the lock's owner");
            }
        }
        "flock" => {
            // SAFETY: flock on our own fd.
            let rc = unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) };
            let err = std::io::Error::last_os_error();
            assert_eq!(rc, -1, "flock taken while the workload holds it");
            assert_eq!(err.raw_os_error(), Some(libc::EWOULDBLOCK));
        }
        _ => panic!("no conflict probe for {kind}"),
    }
}

fn refused_with_lock_intact(kind: &str, want: LockKind) {
    let dir = ScratchDir::new(&format!("filelock-{kind}"));
    let path = dir.path().join("locked");
    std::fs::write(&path, b"locked file\n").expect("file");
    let w = Workload::start(
        Path::new(env!("CARGO_BIN_EXE_wl_filelock")),
        &[kind, path.to_str().expect("utf-8")],
        "ready",
        Duration::from_secs(20),
    );
    let pid = w.pid();
    let fd = fd_of(pid, &path);
    let images = ScratchDir::new(&format!("filelock-{kind}-img"));
    let err = dump(&DumpOptions::new(pid, images.path())).expect_err("dump must be refused");
    let msg = err.to_string();
    match &err {
        DumpError::FileLock {
            pid: p,
            fd: f,
            path: named,
            lock,
        } => {
            assert_eq!((*p, *f), (pid, fd), "{msg}");
            assert_eq!(Path::new(named), path, "{msg}");
            assert_eq!(lock.kind, want, "{msg}");
        }
        other => panic!("{kind}: expected a file-lock refusal, got {other}: {other:?}"),
    }
    assert!(msg.contains("--file-locks"), "no way out in {msg:?}");

    // Still running, not left stopped or traced, lock held.
    assert!(pid_exists(pid), "{kind}: the workload died");
    std::thread::sleep(Duration::from_millis(100));
    let st = state(pid);
    assert!(matches!(st, 'S' | 'R'), "{kind}: task left in state {st}");
    let fdinfo = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).expect("fdinfo");
    assert!(fdinfo.contains("lock:"), "{kind}: lock gone: {fdinfo}");
    if want != LockKind::Lease {
        conflicting_lock_refused(kind, &path, pid);
    }
    drop(w);
}

#[test]
fn posix_lock_refused_and_kept() {
    if !skip_unless_root("posix_lock_refused_and_kept") {
        refused_with_lock_intact("posix", LockKind::Posix);
    }
}

#[test]
fn ofd_lock_refused_and_kept() {
    if !skip_unless_root("ofd_lock_refused_and_kept") {
        refused_with_lock_intact("ofd", LockKind::Ofd);
    }
}

#[test]
fn flock_refused_and_kept() {
    if !skip_unless_root("flock_refused_and_kept") {
        refused_with_lock_intact("flock", LockKind::Flock);
    }
}

#[test]
fn lease_refused_and_kept() {
    if !skip_unless_root("lease_refused_and_kept") {
        refused_with_lock_intact("lease", LockKind::Lease);
    }
}

/// `--file-locks` with no plugin to dump the locks (this test links none): refused, not
/// dumped without them; the workload runs on with its lock.
#[test]
fn file_locks_without_the_plugin_are_refused() {
    if skip_unless_root("file_locks_without_the_plugin_are_refused") {
        return;
    }
    let dir = ScratchDir::new("filelock-noplugin");
    let path = dir.path().join("locked");
    std::fs::write(&path, b"locked file\n").expect("file");
    let w = Workload::start(
        Path::new(env!("CARGO_BIN_EXE_wl_filelock")),
        &["flock", path.to_str().expect("utf-8")],
        "ready",
        Duration::from_secs(20),
    );
    let pid = w.pid();
    let images = ScratchDir::new("filelock-noplugin-img");
    let mut opts = DumpOptions::new(pid, images.path());
    opts.file_locks = true;
    let err = dump(&opts).expect_err("dump must be refused");
    let msg = err.to_string();
    assert!(
        matches!(err, DumpError::FileLocksNotDumped { .. }),
        "{msg}: {err:?}"
    );
    assert!(msg.contains("filelocks") && msg.contains("flock"), "{msg}");
    assert!(pid_exists(pid), "the workload died");
    conflicting_lock_refused("flock", &path, pid);
    assert!(
        !images.path().join("inventory.img").exists(),
        "images left behind"
    );
    drop(w);
}
