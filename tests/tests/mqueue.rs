//! POSIX message queues (`mqueue` plugin; CRIU has no format for them). The C workload
//! (`workloads/mqueue.c`) holds a named queue with messages of mixed priorities through two
//! descriptions (nonblocking read-write, blocking read-only), an unlinked queue with
//! messages, an empty queue on which it registered for `SIGEV_SIGNAL` notification with a
//! value, a queue holding a message with such a registration and one holding messages with
//! a `SIGEV_NONE` registration; a child shares every description. After dump, kill and
//! restore it checks attributes, flags, every message in order, that the unlinked queue has
//! no name, that the registrations are there and the next sends notify it with their
//! values. A dump with `--leave-running` must leave it all as it was (every message put back,
//! the registration in place, no notification delivered). A damaged image fails the restore
//! naming the image and the entry, and leaves no queue it created.

use std::time::Duration;

use criu_core::dump::{DumpOptions, dump};
use criu_core::restore::{RestoreOptions, restore};
use criu_plugin_api::{ImageRef, read_messages};
use criu_plugin_mqueue::image::{self, MqueueImage};
use criu_proto::images::{FdTypes, FileEntry};
use criu_tests::{ScratchDir, TreeGuard, skip_unless_root, wait_pid_gone};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use criu_plugin_files as _;
use criu_plugin_mqueue as _;
use criu_plugin_pipes as _;

mod mqueue_support;
mod plugin_support;

use mqueue_support::{Workload, crit_317_decodes, have_gcc};

fn skip(test: &str) -> bool {
    skip_unless_root(test) || !have_gcc(test)
}

fn restore_opts(images: &std::path::Path) -> RestoreOptions {
    RestoreOptions {
        images_dir: images.to_path_buf(),
        detach: true,
        ..RestoreOptions::default()
    }
}

#[test]
fn queues_messages_and_notification_survive_dump_kill_restore() {
    if skip("queues_messages_and_notification_survive_dump_kill_restore") {
        return;
    }
    let wl = Workload::start("mqueue");
    let guard = TreeGuard::new(wl.pids());
    let mut dopts = DumpOptions::new(wl.pid, &wl.images);
    dopts.leave_stopped = true;
    dump(&dopts).unwrap_or_else(|e| panic!("dump: {e:?}"));
    for p in wl.pids() {
        let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
    }
    let left = guard.kill_and_wait(Duration::from_secs(10));
    assert!(left.is_empty(), "pids still taken: {left:?}");

    // files.img: one EXT entry of ours per description; our image: the three queues.
    let mut ctx = plugin_support::DirContext::new(&wl.images);
    let files: Vec<FileEntry> = read_messages(&mut ctx, ImageRef::FILES).expect("files.img");
    let ours = files
        .iter()
        .filter(|e| e.r#type == FdTypes::Ext as i32 && criu_plugin_mqueue::is_ours(e))
        .count();
    assert_eq!(ours, 6, "{files:?}");
    crit_317_decodes(&wl.images.join("files.img"));
    let bytes = std::fs::read(wl.images.join(image::FILE)).expect("mqueue image");
    let img = MqueueImage::decode_file(&bytes).expect("decodes");
    assert_eq!(img.queues.len(), 5, "{img:?}");
    let named = &img.queues[0];
    let order: Vec<(u32, &[u8])> = named
        .messages
        .iter()
        .map(|m| (m.prio, m.data.as_slice()))
        .collect();
    assert_eq!(
        order,
        [(9, &b"high"[..]), (5, b"mid"), (1, b"low-a"), (1, b"low-b")],
        "{named:?}"
    );
    assert!(img.queues[1].unlinked && !named.unlinked);
    let notify = img.queues[2].notify.as_ref().expect("registration dumped");
    assert_eq!(
        (notify.pid, notify.signo, notify.value),
        (wl.pid, libc::SIGUSR1, 4242)
    );
    let notify = img.queues[3].notify.as_ref().expect("registration dumped");
    assert_eq!((notify.signo, notify.value), (libc::SIGUSR2, 77));
    assert_eq!(img.queues[3].messages.len(), 1);
    let notify = img.queues[4].notify.as_ref().expect("registration dumped");
    assert_eq!(notify.sigev_notify, libc::SIGEV_NONE);

    // A damaged image (more messages than maxmsg) fails before any task exists.
    let bad = ScratchDir::new("mqueue-bad");
    for e in std::fs::read_dir(&wl.images).expect("images") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), bad.path().join(e.file_name())).expect("copy");
    }
    let mut damaged = img.clone();
    damaged.queues[0].maxmsg = 2;
    std::fs::write(bad.path().join(image::FILE), damaged.encode_file()).expect("write");
    let err = format!(
        "{:?}",
        restore(&restore_opts(bad.path())).expect_err("damaged image restored")
    );
    assert!(
        err.contains(image::FILE)
            && err.contains("queue entry 0")
            && err.contains("more than its maxmsg 2"),
        "{err}"
    );
    for p in wl.pids() {
        assert!(
            wait_pid_gone(p, Duration::from_secs(5)),
            "{p} left by the failed restore"
        );
    }

    // A restore failing after the queues exist (a registration whose owner has no fd on
    // its queue, found when the descriptions are installed) removes the queues it created.
    let mut damaged = img.clone();
    damaged.queues[2].notify.as_mut().expect("registration").pid = 1;
    std::fs::write(bad.path().join(image::FILE), damaged.encode_file()).expect("write");
    let err = format!(
        "{:?}",
        restore(&restore_opts(bad.path())).expect_err("damaged image restored")
    );
    assert!(err.contains("notification owner pid 1"), "{err}");
    for p in wl.pids() {
        assert!(
            wait_pid_gone(p, Duration::from_secs(5)),
            "{p} left by the failed restore"
        );
    }
    for q in img.queues.iter().filter(|q| !q.unlinked) {
        let left = nix::mqueue::mq_open(
            q.name.as_str(),
            nix::mqueue::MQ_OFlag::O_RDONLY,
            nix::sys::stat::Mode::empty(),
            None,
        );
        assert_eq!(
            left.err(),
            Some(nix::errno::Errno::ENOENT),
            "queue {} left by the failed restore",
            q.name
        );
    }

    let restored = restore(&restore_opts(&wl.images));
    let _restored = TreeGuard::new(wl.pids());
    restored.unwrap_or_else(|e| panic!("restore: {e:?}"));
    assert_eq!(wl.verdict(), "ok");
}

#[test]
fn a_dump_leaving_the_tree_running_puts_every_message_and_the_registration_back() {
    if skip("a_dump_leaving_the_tree_running_puts_every_message_and_the_registration_back") {
        return;
    }
    let wl = Workload::start("mqueue");
    let _guard = TreeGuard::new(wl.pids());
    let mut dopts = DumpOptions::new(wl.pid, &wl.images);
    dopts.leave_running = true;
    dump(&dopts).unwrap_or_else(|e| panic!("dump: {e:?}"));
    assert_eq!(wl.verdict(), "ok");
}

#[test]
fn a_dump_failing_after_the_files_leaves_every_message_and_the_registration() {
    if skip("a_dump_failing_after_the_files_leaves_every_message_and_the_registration") {
        return;
    }
    let wl = Workload::start("mqueue");
    let _guard = TreeGuard::new(wl.pids());
    let mut dopts = DumpOptions::new(wl.pid, &wl.images);
    dopts.fail_after = Some("files");
    let err = dump(&dopts).expect_err("the injected failure");
    assert!(format!("{err:?}").contains("files"), "{err:?}");
    assert_eq!(wl.verdict(), "ok");
}

#[test]
fn a_thread_notification_is_refused_by_name_and_the_workload_runs_on() {
    if skip("a_thread_notification_is_refused_by_name_and_the_workload_runs_on") {
        return;
    }
    let wl = Workload::start("mqueue_thread");
    let _guard = TreeGuard::new(wl.pids());
    let err = dump(&DumpOptions::new(wl.pid, &wl.images)).expect_err("SIGEV_THREAD dumped");
    let err = format!("{err}: {err:?}");
    assert!(
        err.contains("SIGEV_THREAD")
            && err.contains(&format!("pid {}", wl.pid))
            && err.contains("criu-rs-wlt-"),
        "{err}"
    );
    assert_eq!(wl.verdict(), "ok");
}

#[test]
fn a_queue_of_another_ipc_namespace_is_refused_and_left_as_it_was() {
    if skip("a_queue_of_another_ipc_namespace_is_refused_and_left_as_it_was") {
        return;
    }
    let wl = Workload::start("mqueue_foreign");
    let _guard = TreeGuard::new(wl.pids());
    let err = dump(&DumpOptions::new(wl.pid, &wl.images)).expect_err("foreign queue dumped");
    let err = format!("{err}: {err:?}");
    assert!(
        err.contains("another IPC namespace") && err.contains("/criu-rs-foreign"),
        "{err}"
    );
    assert_eq!(wl.verdict(), "ok");
}
