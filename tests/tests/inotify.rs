//! Inotify watches survive dump and restore with the wd numbers the program got: the
//! workload (`wl_inotify`) watches a directory, a file, a oneshot file and a file the test
//! unlinks while holding it open (restored through its file handle, as CRIU does) and a
//! file the workload holds open and the test unlinks (the watch goes on the file restored
//! as a ghost, as CRIU puts it on its ghost remap: zdtm's inotify00). After
//! the restore the test changes the file and the directory, and the workload reports the
//! events under the names it gave its wds before the dump; it also checks every 20 ms that
//! its fdinfo watches, wds, flags are unchanged. A watched file that is gone for good by the
//! restore fails it, naming the watch. Debian's crit 3.17 decodes the INOTIFY entries.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use criu_core::restore::{RestoreOptions, restore};
use criu_plugin_api::{ImageRef, read_messages};
use criu_proto::images::{FdTypes, FileEntry};
use criu_tests::{PidGuard, ScratchDir, skip_unless_root};

use criu_plugin_files as _;
use criu_plugin_fsnotify as _;
use criu_plugin_pipes as _;

mod fsnotify_support;
mod plugin_support;
mod restore_common;

use restore_common::{dump_and_kill, lines, spawn_bg, wait_lines};

/// The watched directory with its files, the workload's report beside it (not inside: its
/// writes would be events), and the test's handle on the file it unlinks.
struct Setup {
    work: ScratchDir,
    dir: std::path::PathBuf,
    report: std::path::PathBuf,
    gone: File,
}

fn setup(name: &str) -> Setup {
    let work = ScratchDir::new(name);
    let dir = work.path().join("watched-dir");
    std::fs::create_dir(&dir).expect("dir");
    for f in ["watched", "oneshot"] {
        std::fs::write(dir.join(f), b"x").expect("file");
    }
    let gone = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(dir.join("gone"))
        .expect("gone");
    let report = work.path().join("report");
    Setup {
        work,
        dir,
        report,
        gone,
    }
}

/// Starts the workload, checks it works, unlinks `gone`; returns its pid and wds line.
fn start(s: &Setup) -> (PidGuard, String) {
    let pid = spawn_bg(
        env!("CARGO_BIN_EXE_wl_inotify"),
        &[s.report.to_str().unwrap(), s.dir.to_str().unwrap()],
    );
    let guard = PidGuard::new(pid);
    let first = wait_lines(&s.report, 2, Duration::from_secs(10));
    assert!(first[0].starts_with(&format!("ready {pid} ")), "{first:?}");
    // Not contiguous: a watch was added and removed between file and oneshot.
    assert!(
        first[0].ends_with("dir=1 file=2 oneshot=4 gone=5 held=6"),
        "{first:?}"
    );
    std::fs::write(s.dir.join("watched"), b"before").expect("write");
    wait_for(&s.report, 0, &["event file 2 -"]);
    std::fs::remove_file(s.dir.join("gone")).expect("unlink gone");
    std::fs::remove_file(s.dir.join("held")).expect("unlink held");
    wait_for(&s.report, 0, &["event dir 200 gone", "event dir 200 held"]);
    let ready = first[0].clone();
    (guard, ready)
}

/// Waits until every `want` line appears after line `from`; panics with the report.
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
fn watches_keep_their_wds_and_report_changes_after_restore() {
    if skip_unless_root("watches_keep_their_wds_and_report_changes_after_restore") {
        return;
    }
    round_trip(false);
}

/// Images as CRIU writes them, without our `criu_rs_file_id`: the watch on the unlinked file
/// the workload holds is found through its ghost file's device and inode, as CRIU does.
#[test]
fn without_our_field_the_watch_goes_on_the_ghost_file_as_in_criu() {
    if skip_unless_root("without_our_field_the_watch_goes_on_the_ghost_file_as_in_criu") {
        return;
    }
    round_trip(true);
}

/// Dump, check the images (`strip`: then remove our field from them), restore, change the
/// watched files, let the workload judge.
fn round_trip(strip: bool) {
    let _serial = plugin_support::serial();
    let mut s = setup(if strip { "inotify-criu" } else { "inotify" });
    let (guard, _) = start(&s);
    let pid = guard.pid();
    let imgs = ScratchDir::new("inotify-imgs");
    dump_and_kill(pid, imgs.path());
    drop(guard);

    let mut ctx = plugin_support::DirContext::new(imgs.path());
    let files: Vec<FileEntry> = read_messages(&mut ctx, ImageRef::FILES).expect("files.img");
    let ify = files
        .iter()
        .find(|e| e.r#type == FdTypes::Inotify as i32)
        .and_then(|e| e.ify.as_ref())
        .expect("an INOTIFY entry");
    let mut wds: Vec<(u32, Option<String>)> = ify
        .wd
        .iter()
        .map(|w| (w.wd, w.f_handle.path.clone()))
        .collect();
    wds.sort();
    let d = s.dir.to_str().unwrap();
    assert_eq!(
        wds,
        [
            (1, Some(d.to_string())),
            (2, Some(format!("{d}/watched"))),
            (4, Some(format!("{d}/oneshot"))),
            (5, None), // unlinked, held by the test: by handle only
            (6, None), // unlinked, held by the workload: on its restored file
        ]
    );
    let held_by_tree: Vec<(u32, bool)> = ify
        .wd
        .iter()
        .filter(|w| w.wd >= 5)
        .map(|w| (w.wd, w.criu_rs_file_id.is_some()))
        .collect();
    assert!(held_by_tree.contains(&(5, false)) && held_by_tree.contains(&(6, true)));
    assert!(
        ify.wd
            .iter()
            .all(|w| w.f_handle.bytes > 0 && w.f_handle.handle.len() == 16)
    );
    fsnotify_support::crit_317_decodes_files_img(imgs.path(), "ify");
    if strip {
        let stripped: Vec<FileEntry> = files
            .iter()
            .cloned()
            .map(|mut e| {
                if let Some(i) = e.ify.as_mut() {
                    i.wd.iter_mut().for_each(|w| w.criu_rs_file_id = None);
                }
                e
            })
            .collect();
        let bytes = criu_proto::framing::encode_messages(criu_proto::ImageKind::Files, &stripped)
            .expect("encode files.img");
        std::fs::write(imgs.path().join("files.img"), bytes).expect("write files.img");
    }

    let before = lines(&s.report).len();
    let opts = RestoreOptions {
        images_dir: imgs.path().to_path_buf(),
        detach: true,
        ..RestoreOptions::default()
    };
    restore(&opts).unwrap_or_else(|e| panic!("restore: {e:?}"));
    let _restored = PidGuard::new(pid);
    let after = wait_lines(&s.report, before + 2, Duration::from_secs(10));
    assert!(after[before].starts_with("tick "), "{:?}", &after[before..]);

    std::fs::write(s.dir.join("watched"), b"after").expect("write");
    File::create(s.dir.join("new")).expect("create");
    std::fs::set_permissions(
        s.dir.join("oneshot"),
        std::fs::Permissions::from_mode(0o600),
    )
    .expect("chmod");
    s.gone
        .write_all(b"written after restore")
        .expect("write gone");
    File::create(s.dir.join("poke")).expect("poke");
    wait_for(
        &s.report,
        before,
        &[
            "event file 2 -",
            "event file 8 -",
            "event dir 2 watched",
            "event dir 100 new",
            "event oneshot 4 -",
            "event oneshot 8000 -",
            "event gone 2 -",
            "event held 2 -",
        ],
    );
    // Some ticks after the oneshot fired, all good.
    let n = lines(&s.report).len();
    wait_lines(&s.report, n + 3, Duration::from_secs(10));
    for l in &lines(&s.report)[before..] {
        assert!(
            l.starts_with("event ") && !l.contains("unknown") || l.ends_with(" ok"),
            "after restore: {l}"
        );
    }
    drop(s.work);
}

#[test]
fn a_watched_file_gone_for_good_fails_the_restore_naming_the_watch() {
    if skip_unless_root("a_watched_file_gone_for_good_fails_the_restore_naming_the_watch") {
        return;
    }
    let _serial = plugin_support::serial();
    let s = setup("inotify-gone");
    let (guard, _) = start(&s);
    let pid = guard.pid();
    let imgs = ScratchDir::new("inotify-gone-imgs");
    dump_and_kill(pid, imgs.path());
    drop(guard);
    // The last reference to the unlinked inode goes: its handle is stale now.
    drop(s.gone);
    let opts = RestoreOptions {
        images_dir: imgs.path().to_path_buf(),
        detach: true,
        ..RestoreOptions::default()
    };
    let res = restore(&opts);
    let _restored = PidGuard::new(pid);
    let err = anyhow_chain(res.expect_err("restore must fail"));
    assert!(
        err.contains("inotify wd 5 on its file handle") && err.contains("open_by_handle_at"),
        "{err}"
    );
}

fn anyhow_chain(e: impl std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        s.push_str(": ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    s
}
