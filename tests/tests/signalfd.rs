//! signalfd (`signalfd` plugin, CRIU's SIGNALFD entry of files.img). The C workload
//! (`workloads/signalfd.c`) blocks SIGUSR1, SIGUSR2 and SIGRTMIN+3, reads SIGUSR1 and
//! SIGRTMIN+3 through a nonblocking signalfd, and has SIGRTMIN+3 (value 77) pending at the
//! dump. After dump, kill and restore it checks that the pending signal (restored by the
//! core as a pending signal) comes out of the signalfd with its value, that the signalfd is
//! still nonblocking and close-on-exec, that SIGUSR1 comes out of it and SIGUSR2 does not.
//! Debian's crit 3.17 decodes the files.img entry as we do.

use criu_core::restore::{RestoreOptions, restore};
use criu_plugin_api::{ImageRef, read_messages};
use criu_proto::images::{FdTypes, FileEntry};
use criu_tests::{PidGuard, skip_unless_root};

use criu_plugin_files as _;
use criu_plugin_pipes as _;
use criu_plugin_signalfd as _;

#[path = "mqueue_support/mod.rs"]
mod c_workload;
mod plugin_support;

use c_workload::{Workload, crit_317_decodes, dump_and_kill, have_gcc};

#[test]
fn signalfd_mask_flags_and_a_pending_signal_survive_dump_kill_restore() {
    let test = "signalfd_mask_flags_and_a_pending_signal_survive_dump_kill_restore";
    if skip_unless_root(test) || !have_gcc(test) {
        return;
    }
    let wl = Workload::start("signalfd");
    let guard = PidGuard::new(wl.pid);
    dump_and_kill(wl.pid, &wl.images);
    drop(guard);

    let mut ctx = plugin_support::DirContext::new(&wl.images);
    let files: Vec<FileEntry> = read_messages(&mut ctx, ImageRef::FILES).expect("files.img");
    let sgfd: Vec<_> = files
        .iter()
        .filter(|e| e.r#type == FdTypes::Signalfd as i32)
        .map(|e| e.sgfd.expect("sgfd"))
        .collect();
    assert_eq!(sgfd.len(), 1, "{files:?}");
    let rt = libc::SIGRTMIN() + 3;
    assert_eq!(
        sgfd[0].sigmask,
        (1 << (libc::SIGUSR1 - 1)) | (1u64 << (rt - 1))
    );
    assert_ne!(sgfd[0].flags & libc::O_NONBLOCK as u32, 0);
    crit_317_decodes(&wl.images.join("files.img"));

    let opts = RestoreOptions {
        images_dir: wl.images.clone(),
        detach: true,
        ..RestoreOptions::default()
    };
    restore(&opts).unwrap_or_else(|e| panic!("restore: {e:?}"));
    let _restored = PidGuard::new(wl.pid);
    assert_eq!(wl.verdict(), "ok");
}
