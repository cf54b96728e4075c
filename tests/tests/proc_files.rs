//! Files under `/proc/PID/` of the dumped tree (CRIU's zdtm child_opened_proc, fanotify00's
//! fdinfo, memfd02's maps): the C workload (`workloads/proc_files.c`) holds its child's
//! `stat` at an offset, its own `maps` (close-on-exec) and the `fdinfo` of one of its pipe
//! ends. The restorer opens files before the tasks exist, so these are opened once every
//! task does; after dump, kill and restore the workload reads each and checks it describes
//! the restored processes, with the offset and flags it had.

use criu_core::restore::{RestoreOptions, restore};
use criu_plugin_api::{ImageRef, read_messages};
use criu_proto::images::{FdTypes, FileEntry};
use criu_tests::{TreeGuard, skip_unless_root};

use criu_plugin_files as _;
use criu_plugin_pipes as _;

#[path = "mqueue_support/mod.rs"]
mod c_workload;
mod plugin_support;

use c_workload::{Workload, dump_and_kill, have_gcc};

#[test]
fn proc_files_of_the_tree_name_the_restored_tasks() {
    let test = "proc_files_of_the_tree_name_the_restored_tasks";
    if skip_unless_root(test) || !have_gcc(test) {
        return;
    }
    let wl = Workload::start("proc_files");
    let guard = TreeGuard::new(wl.pids());
    dump_and_kill(wl.pid, &wl.images);
    drop(guard);

    let mut ctx = plugin_support::DirContext::new(&wl.images);
    let files: Vec<FileEntry> = read_messages(&mut ctx, ImageRef::FILES).expect("files.img");
    let procs: Vec<String> = files
        .iter()
        .filter(|e| e.r#type == FdTypes::Reg as i32)
        .filter_map(|e| e.reg.as_ref())
        .map(|r| r.name.clone())
        .filter(|n| n.starts_with("/proc/"))
        .collect();
    assert_eq!(procs.len(), 3, "{procs:?}");

    let opts = RestoreOptions {
        images_dir: wl.images.clone(),
        detach: true,
        ..RestoreOptions::default()
    };
    let restored = restore(&opts);
    let _restored = TreeGuard::new(wl.pids());
    restored.unwrap_or_else(|e| panic!("restore: {e:?}"));
    assert_eq!(wl.verdict(), "ok");
}
