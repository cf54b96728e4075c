//! A fanotify group (FAN_CLASS_NOTIF, non-blocking) survives dump and restore with its
//! inode mark, mount mark, ignored mask and filesystem mark: the workload (`wl_fanotify`)
//! marks files on a tmpfs the test mounts for it; after the restore the test writes to the
//! marked file and to another one, and the workload reports the writes as the marks say
//! (the ignored mask still hides the marked file's close-write) and checks every 20 ms that
//! its fdinfo marks and flags are those it had before the dump. Debian's crit 3.17 decodes
//! the FANOTIFY entry.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use criu_core::restore::{RestoreOptions, restore};
use criu_plugin_api::{ImageRef, read_messages};
use criu_proto::images::{FdTypes, FileEntry, MarkType};
use criu_tests::{PidGuard, ScratchDir, skip_unless_root};

use criu_plugin_files as _;
use criu_plugin_fsnotify as _;
use criu_plugin_pipes as _;

mod fsnotify_support;
mod plugin_support;
mod restore_common;

use restore_common::{dump_and_kill, lines, spawn_bg, wait_lines};

/// A mark as the test compares it: type, path, filesystem flag, mflags, mask, ignored mask.
type MarkRow = (i32, Option<String>, Option<bool>, u32, u32, u32);

/// A tmpfs mounted for the test, detached when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path) -> Tmpfs {
        std::fs::create_dir_all(at).expect("mount point");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "criu-test-fanotify"])
            .arg(at)
            .status()
            .expect("run mount");
        assert!(ok.success(), "mount tmpfs on {}", at.display());
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn wait_for(report: &Path, from: usize, want: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let all = lines(report);
        let seen = &all[from.min(all.len())..];
        if want.iter().all(|w| seen.iter().any(|l| l == w)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "missing {want:?} after line {from}: {:?}",
            &all[from.saturating_sub(3).min(all.len())..]
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn marks_flags_and_ignored_masks_survive_and_report_writes_after_restore() {
    if skip_unless_root("marks_flags_and_ignored_masks_survive_and_report_writes_after_restore") {
        return;
    }
    let _serial = plugin_support::serial();
    let work = ScratchDir::new("fanotify");
    let mnt = work.path().join("mnt");
    let _tmpfs = Tmpfs::mount(&mnt);
    for f in ["file", "other"] {
        std::fs::write(mnt.join(f), b"x").expect("file");
    }
    let report = work.path().join("report");
    let pid = spawn_bg(
        env!("CARGO_BIN_EXE_wl_fanotify"),
        &[report.to_str().unwrap(), mnt.to_str().unwrap()],
    );
    let guard = PidGuard::new(pid);
    let first = wait_lines(&report, 2, Duration::from_secs(10));
    assert_eq!(first[0], format!("ready {pid}"), "{first:?}");
    std::fs::write(mnt.join("file"), b"before").expect("write");
    wait_for(&report, 0, &["event modify file", "event open file"]);
    std::fs::remove_file(mnt.join("held")).expect("unlink held");

    let imgs = ScratchDir::new("fanotify-imgs");
    dump_and_kill(pid, imgs.path());
    drop(guard);

    let mut ctx = plugin_support::DirContext::new(imgs.path());
    let files: Vec<FileEntry> = read_messages(&mut ctx, ImageRef::FILES).expect("files.img");
    let ffy = files
        .iter()
        .find(|e| e.r#type == FdTypes::Fanotify as i32)
        .and_then(|e| e.ffy.as_ref())
        .expect("a FANOTIFY entry");
    let mut marks: Vec<MarkRow> = ffy
        .mark
        .iter()
        .map(|m| {
            let path = match (&m.ie, &m.me) {
                (Some(ie), _) => ie.f_handle.path.clone(),
                (_, Some(me)) => me.path.clone(),
                _ => None,
            };
            (
                m.r#type,
                path,
                m.criu_rs_filesystem,
                m.mflags,
                m.mask,
                m.ignored_mask,
            )
        })
        .collect();
    marks.sort();
    let m = mnt.to_str().unwrap().to_string();
    let (inode, mount) = (MarkType::Inode as i32, MarkType::Mount as i32);
    let (modify, close_write, open) = (0x2, 0x8, 0x20);
    assert_eq!(
        marks,
        [
            (inode, None, None, 0, modify, 0), // held: unlinked, on the tree's file
            (
                inode,
                Some(format!("{m}/file")),
                None,
                0x40,
                modify,
                close_write
            ),
            (mount, Some(m.clone()), None, 0, close_write, 0),
            (mount, Some(m.clone()), Some(true), 0, open, 0),
        ]
    );
    let held = ffy.mark.iter().filter_map(|m| m.ie.as_ref());
    assert_eq!(held.filter(|ie| ie.criu_rs_file_id.is_some()).count(), 1);
    fsnotify_support::crit_317_decodes_files_img(imgs.path(), "ffy");

    let before = lines(&report).len();
    let opts = RestoreOptions {
        images_dir: imgs.path().to_path_buf(),
        detach: true,
        ..RestoreOptions::default()
    };
    restore(&opts).unwrap_or_else(|e| panic!("restore: {e:?}"));
    let _restored = PidGuard::new(pid);
    let after = wait_lines(&report, before + 2, Duration::from_secs(10));
    assert!(
        after[before..].iter().any(|l| l.starts_with("tick ")),
        "{:?}",
        &after[before..]
    );

    std::fs::write(mnt.join("file"), b"after").expect("write file");
    std::fs::write(mnt.join("other"), b"after").expect("write other");
    std::fs::File::create(mnt.join("poke")).expect("poke");
    wait_for(
        &report,
        before,
        &[
            "event modify file",
            "event open file",
            "event open other",
            "event close_write other",
            "event modify held",
        ],
    );
    let n = lines(&report).len();
    wait_lines(&report, n + 3, Duration::from_secs(10));
    for l in &lines(&report)[before..] {
        // Creating and removing DIR/poke (the trigger) is seen by the mount and sb marks.
        let ok = l.ends_with(" ok")
            || l.starts_with("event ") && l.contains("poke")
            || [
                "event modify file",
                "event open file",
                "event open other",
                "event close_write other",
                "event modify held",
                // The restorer's last close of the ghost file it recreated comes after the
                // tree resumed (criu's core keeps it until the restore ends): the mount
                // mark's FAN_CLOSE_WRITE sees it.
                "event close_write held",
            ]
            .contains(&l.as_str());
        assert!(ok, "after restore: {l}");
    }
}
