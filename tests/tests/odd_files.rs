//! Deleted and odd files (CRIU's zdtm ghost_holes_large00, unlink_fstat03, symlink01,
//! proc-self, memfd04/05): each C workload (`workloads/odd_files.h`, one scenario per file)
//! sets its file up, is dumped, killed and restored, and checks itself afterwards.

use std::path::Path;

use criu_core::dump::{DumpOptions, dump};
use criu_core::restore::{RestoreOptions, restore};
use criu_plugin_api::{ImageRef, read_messages};
use criu_proto::images::{FdTypes, FileEntry, RemapFilePathEntry, RemapType};
use criu_tests::{TreeGuard, skip_unless_root, wait_pid_gone};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use criu_plugin_files as _;
use criu_plugin_memfd as _;
use criu_plugin_pipes as _;

#[path = "mqueue_support/mod.rs"]
mod c_workload;
mod plugin_support;

use c_workload::{Workload, have_gcc};

/// Dumps `pid` with `opts` (left stopped), then kills it and waits until its pid is free.
fn dump_and_kill_with(pid: i32, mut opts: DumpOptions) {
    opts.leave_stopped = true;
    dump(&opts).unwrap_or_else(|e| panic!("dump: {e}: {e:?}"));
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    assert!(
        wait_pid_gone(pid, std::time::Duration::from_secs(10)),
        "pid {pid} still taken"
    );
}

fn restore_and_verdict(wl: &Workload) -> String {
    let opts = RestoreOptions {
        images_dir: wl.images.clone(),
        detach: true,
        // The workload stays in the test's session.
        shell_job: true,
        ..RestoreOptions::default()
    };
    let restored = restore(&opts);
    let _guard = TreeGuard::new(wl.pids());
    restored.unwrap_or_else(|e| panic!("restore: {e:?}"));
    wl.verdict()
}

/// Starts workload `name`, dumps it with the default options, restores it and returns it
/// with its verdict.
fn round_trip(name: &str) -> (Workload, String) {
    let wl = Workload::start(name);
    let guard = TreeGuard::new(wl.pids());
    dump_and_kill_with(wl.pid, DumpOptions::new(wl.pid, &wl.images));
    drop(guard);
    let verdict = restore_and_verdict(&wl);
    (wl, verdict)
}

fn files(images: &Path) -> Vec<FileEntry> {
    let mut ctx = plugin_support::DirContext::new(images);
    read_messages(&mut ctx, ImageRef::FILES).expect("files.img")
}

fn remaps(images: &Path) -> Vec<RemapFilePathEntry> {
    let mut ctx = plugin_support::DirContext::new(images);
    read_messages(&mut ctx, ImageRef::REMAP_FPATH).expect("remap-fpath.img")
}

fn ready(test: &str) -> bool {
    !skip_unless_root(test) && have_gcc(test)
}

/// A 1 GiB sparse deleted file with 8 KiB of data: over the default ghost limit by size,
/// under it by blocks (CRIU counts blocks); its image holds the data only, and it comes
/// back sparse.
#[test]
fn sparse_ghost_file_keeps_its_holes() {
    if !ready("sparse_ghost_file_keeps_its_holes") {
        return;
    }
    let (wl, verdict) = round_trip("ghost_sparse");
    assert_eq!(verdict, "ok");
    let ghost = std::fs::metadata(wl.images.join("ghost-file-1.img")).expect("ghost image");
    assert!(
        ghost.len() < 64 * 1024,
        "the ghost image holds {} bytes: holes were copied",
        ghost.len()
    );
}

/// A file whose open name was removed while another name remains: refused without
/// `--link-remap`, naming the option; with it, a temporary link carries it and is gone once
/// the tree is restored.
#[test]
fn link_remap_of_a_file_with_another_name() {
    if !ready("link_remap_of_a_file_with_another_name") {
        return;
    }
    let wl = Workload::start("link_remap");
    let guard = TreeGuard::new(wl.pids());
    let refused = dump(&DumpOptions::new(wl.pid, &wl.images))
        .expect_err("a dump without --link-remap must be refused");
    assert!(
        format!("{refused:?}").contains("--link-remap"),
        "{refused:?}"
    );
    let dir = wl.report.parent().expect("dir").to_path_buf();
    let links = || {
        std::fs::read_dir(&dir)
            .expect("dir")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("link_remap."))
            .count()
    };
    assert_eq!(links(), 0, "a refused dump leaves no link");

    for e in std::fs::read_dir(&wl.images).expect("images") {
        std::fs::remove_file(e.expect("entry").path()).expect("clean images");
    }
    let mut opts = DumpOptions::new(wl.pid, &wl.images);
    opts.link_remap = true;
    dump_and_kill_with(wl.pid, opts);
    drop(guard);
    assert_eq!(links(), 1, "the dump links the file as link_remap.N");
    let linked: Vec<_> = remaps(&wl.images)
        .into_iter()
        .filter(|r| r.remap_type == Some(RemapType::Linked as i32))
        .collect();
    assert_eq!(linked.len(), 1, "{linked:?}");
    let target = files(&wl.images)
        .into_iter()
        .find(|f| f.id == linked[0].remap_id)
        .and_then(|f| f.reg)
        .expect("the link's REG entry");
    assert!(target.name.contains("/link_remap."), "{}", target.name);

    assert_eq!(restore_and_verdict(&wl), "ok");
    assert_eq!(links(), 0, "the restore removes the link");
}

/// An `O_PATH | O_NOFOLLOW` fd of a removed symlink comes back as a ghost symlink.
#[test]
fn removed_symlink_held_with_o_path() {
    if !ready("removed_symlink_held_with_o_path") {
        return;
    }
    let (wl, verdict) = round_trip("ghost_symlink");
    assert_eq!(verdict, "ok");
    let left: Vec<_> = std::fs::read_dir(wl.report.parent().expect("dir"))
        .expect("dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".ghost"))
        .collect();
    assert!(left.is_empty(), "ghost leftovers: {left:?}");
}

/// An fd of `/proc/self/ns/net` is CRIU's NS_FILE entry and reopens the same namespace.
#[test]
fn namespace_file_fd() {
    if !ready("namespace_file_fd") {
        return;
    }
    let (wl, verdict) = round_trip("ns_file");
    assert_eq!(verdict, "ok");
    let ns: Vec<_> = files(&wl.images)
        .into_iter()
        .filter(|f| f.r#type == FdTypes::Ns as i32)
        .filter_map(|f| f.nsf)
        .collect();
    assert_eq!(ns.len(), 1, "{ns:?}");
    assert_eq!(ns[0].ns_cflag, libc::CLONE_NEWNET as u32);
}

/// A memfd holding a script stays executable (no ETXTBSY): the restored memfd is not held
/// open for writing by a reopened description, neither as an fd nor behind a mapping.
#[test]
fn restored_memfd_can_be_executed() {
    if !ready("restored_memfd_can_be_executed") {
        return;
    }
    let (_wl, verdict) = round_trip("memfd_exec");
    assert_eq!(verdict, "ok");
}
