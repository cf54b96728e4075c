//! POSIX timers that signal one thread (`SIGEV_THREAD_ID`; zdtm pthread_timers): Linux shows
//! them in `/proc/PID/timers` as `notify: signal/tid.N`. The C workload
//! (`workloads/timer_thread.c`) has glibc's `SIGEV_THREAD` timer (a kernel timer aimed at
//! glibc's helper thread) and a timer aimed at a thread of its own with SIGUSR1; after dump,
//! kill and restore both must still tick at their threads.

use criu_core::restore::{RestoreOptions, restore};
use criu_tests::{PidGuard, skip_unless_root};

use criu_plugin_eventfd as _;
use criu_plugin_files as _;
use criu_plugin_pipes as _;

#[path = "mqueue_support/mod.rs"]
mod c_workload;

use c_workload::{Workload, dump_and_kill, have_gcc};

#[test]
fn timers_aimed_at_threads_still_tick_there_after_restore() {
    let test = "timers_aimed_at_threads_still_tick_there_after_restore";
    if skip_unless_root(test) || !have_gcc(test) {
        return;
    }
    let wl = Workload::start("timer_thread");
    let guard = PidGuard::new(wl.pid);
    dump_and_kill(wl.pid, &wl.images);
    drop(guard);

    let opts = RestoreOptions {
        images_dir: wl.images.clone(),
        detach: true,
        ..RestoreOptions::default()
    };
    restore(&opts).unwrap_or_else(|e| panic!("restore: {e:?}"));
    let _restored = PidGuard::new(wl.pid);
    assert_eq!(wl.verdict(), "ok");
}
