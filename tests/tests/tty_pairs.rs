//! Pty pairs inside the dumped tree (the `tty` plugin), with the C workload
//! `workloads/pty_pair.c` (built with gcc at test time): a master shared with a child, its
//! slave opened twice, the first open the session leader's controlling terminal, termios,
//! window size and packet mode set, and data queued both ways. The images hold CRIU's
//! tty-info entries for both ends (same index) and tty-data.img; after the restore the
//! workload finds /dev/pts/N again with its settings, its controlling terminal, the queued
//! data exactly once each way, and a new exchange works. A restore while the index is taken
//! fails naming it.

use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use criu_core::restore::{RestoreOptions, restore};
use criu_plugin_api::{ImageRef, PluginImageKind, read_messages};
use criu_proto::images::{TtyDataEntry, TtyInfoEntry};
use criu_tests::{ScratchDir, TreeGuard, skip_unless_root};
use restore_common::{dump_stopped_and_kill, lines, restore_detached, spawn_bg};

mod plugin_support;
mod restore_common;

use criu_plugin_files as _;
use criu_plugin_tty as _;

/// The tests of this file take pty indices the other one would need: one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

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

/// Builds the workload, starts it in its own session (as `uid` once the pair is set up, when
/// given) and dumps it (killed afterwards): (scratch, work dir, images dir, root pid, child
/// pid, pty index).
fn dumped_pair(
    name: &str,
    uid: Option<u32>,
) -> (
    ScratchDir,
    std::path::PathBuf,
    std::path::PathBuf,
    i32,
    i32,
    u32,
) {
    let scratch = ScratchDir::new(name);
    let dir = scratch.path().canonicalize().unwrap();
    let exe = dir.join("pty_pair");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads/pty_pair.c");
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
    let uid_arg = uid.map(|u| u.to_string());
    if uid.is_some() {
        // The workload writes its report after dropping to the uid.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&work, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let mut args = vec![exe.to_str().unwrap(), work.to_str().unwrap()];
    args.extend(uid_arg.as_deref());
    let root = spawn_bg("setsid", &args);
    let mut guard = TreeGuard::new([root]);
    let child: i32 = wait_line(&report, "child=", Duration::from_secs(10))["child=".len()..]
        .parse()
        .expect("child pid");
    guard.extend([child]);
    let index: u32 = wait_line(&report, "ready index=", Duration::from_secs(10))
        ["ready index=".len()..]
        .parse()
        .expect("index");
    let images = dir.join("images");
    std::fs::create_dir(&images).unwrap();
    dump_stopped_and_kill(root, &images, guard);
    std::fs::write(&report, "").unwrap();
    (scratch, work, images, root, child, index)
}

#[test]
fn a_pty_pair_keeps_index_settings_ctty_and_queued_data() {
    let test = "a_pty_pair_keeps_index_settings_ctty_and_queued_data";
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if skip_unless_root(test) || !have_gcc(test) {
        return;
    }
    let (_scratch, work, images, root, child, index) = dumped_pair("pty-pair", None);

    let mut ctx = plugin_support::DirContext::new(&images);
    let infos: Vec<TtyInfoEntry> =
        read_messages(&mut ctx, ImageRef::single(PluginImageKind::TtyInfo)).expect("tty-info");
    let ids: Vec<u32> = infos.iter().map(|i| i.id).collect();
    assert!(
        ids.contains(&(index << 1)) && ids.contains(&(index << 1 | 1)),
        "both ends of pty {index}: {infos:?}"
    );
    assert!(
        infos
            .iter()
            .all(|i| i.pty.as_ref().map(|p| p.index) == Some(index))
    );
    let master = infos.iter().find(|i| i.id & 1 == 1).unwrap();
    assert!(master.packet_mode && !master.locked, "{master:?}");
    let slave = infos.iter().find(|i| i.id & 1 == 0).unwrap();
    assert_eq!(
        slave.sid as i32, root,
        "the slave is the root session's terminal"
    );
    let data: Vec<TtyDataEntry> =
        read_messages(&mut ctx, ImageRef::single(PluginImageKind::TtyData)).expect("tty-data");
    let mut got: Vec<(u32, Vec<u8>)> = data.into_iter().map(|d| (d.tty_id, d.data)).collect();
    got.sort();
    assert_eq!(
        got,
        [
            (index << 1, b"hello\n".to_vec()),
            (index << 1 | 1, b"world\r\n".to_vec())
        ]
    );

    let _restored = restore_detached(&images, root, [child]);
    std::fs::write(work.join("go"), "").unwrap();
    let result = wait_line(&work.join("report"), "result ", Duration::from_secs(30));
    assert_eq!(result, "result ok", "{:?}", lines(&work.join("report")));
}

/// The tasks run as another uid (zdtm's default mode) and the leader holds `/dev/tty`: the
/// tty plugin installs it after the credentials are restored, when the task may no longer
/// take fds from criu itself (pidfd_getfd: EPERM; the core's fd lender of the task's uid).
#[test]
fn a_pty_pair_of_another_uid_is_restored() {
    let test = "a_pty_pair_of_another_uid_is_restored";
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if skip_unless_root(test) || !have_gcc(test) {
        return;
    }
    let (_scratch, work, images, root, child, _index) = dumped_pair("pty-uid", Some(65534));
    let _restored = restore_detached(&images, root, [child]);
    let status = std::fs::read_to_string(format!("/proc/{root}/status")).unwrap();
    assert!(status.contains("Uid:\t65534\t65534\t65534"), "{status}");
    std::fs::write(work.join("go"), "").unwrap();
    let result = wait_line(&work.join("report"), "result ", Duration::from_secs(30));
    assert_eq!(result, "result ok", "{:?}", lines(&work.join("report")));
}

#[test]
fn a_taken_pty_index_is_named() {
    let test = "a_taken_pty_index_is_named";
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if skip_unless_root(test) || !have_gcc(test) {
        return;
    }
    let (_scratch, _work, images, root, child, index) = dumped_pair("pty-taken", None);
    // Hold /dev/pts/<index> ourselves: open masters until we have it.
    let mut held = Vec::new();
    loop {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/ptmx")
            .expect("open /dev/ptmx");
        let mut n: libc::c_uint = 0;
        // SAFETY: valid fd; `n` is a live unsigned int the kernel fills.
        let r = unsafe { libc::ioctl(f.as_raw_fd(), libc::TIOCGPTN, &mut n) };
        assert_eq!(r, 0, "TIOCGPTN");
        held.push(f);
        if n >= index {
            assert_eq!(n, index, "index {index} taken by someone else meanwhile");
            break;
        }
    }
    let err = restore(&RestoreOptions {
        images_dir: images.clone(),
        detach: true,
        ..Default::default()
    })
    .expect_err("restore with the pty index taken");
    let _guard = TreeGuard::new([root, child]);
    let msg = format!("{err} {err:?}");
    assert!(
        msg.contains(&format!("/dev/pts/{index}")) && msg.contains("in use"),
        "{msg}"
    );
    drop(held);
}
