//! seccomp states CRIU restores (zdtm seccomp_filter_threads, seccomp_strict,
//! seccomp_filter_tsync). The C workload (`workloads/seccomp_modes.c`) holds a thread with a
//! filter of its own that denies `prctl` (the leader has none: the dump must not judge its
//! injected syscalls by the leader's status), a child whose two threads share one filter
//! (after restore it adds a filter with `SECCOMP_FILTER_FLAG_TSYNC`, which the kernel only
//! takes when they still share it) and a child in strict mode waiting in `read()`. After
//! dump, kill and restore every task checks itself.

use criu_core::restore::{RestoreOptions, restore};
use criu_tests::{TreeGuard, skip_unless_root};

use criu_plugin_files as _;
use criu_plugin_pipes as _;

#[path = "mqueue_support/mod.rs"]
mod c_workload;

use c_workload::{Workload, dump_and_kill, have_gcc};

#[test]
fn per_thread_shared_and_strict_seccomp_survive_dump_kill_restore() {
    let test = "per_thread_shared_and_strict_seccomp_survive_dump_kill_restore";
    if skip_unless_root(test) || !have_gcc(test) {
        return;
    }
    let wl = Workload::start("seccomp_modes");
    assert_eq!(wl.children.len(), 2, "tsync and strict children");
    let guard = TreeGuard::new(wl.pids());
    dump_and_kill(wl.pid, &wl.images);
    drop(guard);

    let opts = RestoreOptions {
        images_dir: wl.images.clone(),
        detach: true,
        ..RestoreOptions::default()
    };
    restore(&opts).unwrap_or_else(|e| panic!("restore: {e:?}"));
    let _restored = TreeGuard::new(wl.pids());
    assert_eq!(wl.verdict(), "ok");
}
