//! Restoring from memory images: what needs --shell-job, and corrupt images.

use criu_plugin_api::testing::MemoryImages;
use criu_plugin_api::{FdHandler, ImageRef, write_message};
use criu_proto::images::{FileEntry, TtyInfoEntry};

use super::{dump_slave, messages, pty};
use crate::TtyPlugin;

fn dumped() -> (MemoryImages, FileEntry) {
    let (_master, slave) = pty(20, 30);
    let mut images = MemoryImages::for_plugin(100, &crate::PLUGIN).unwrap();
    images.dump_options.shell_job = true;
    let e = dump_slave(&mut images, &slave, 1).expect("dump");
    (images, e)
}

fn all_files(images: &MemoryImages, tty: &FileEntry) -> Vec<FileEntry> {
    let mut v: Vec<FileEntry> = messages(images, ImageRef::FILES);
    v.push(tty.clone());
    v
}

#[test]
fn slave_without_shell_job_is_refused() {
    let (mut images, e) = dumped();
    let files = all_files(&images, &e);
    let mut r = TtyPlugin.start_restore(&mut images, &files).expect("start");
    let err = r.open_file(&mut images, &e).unwrap_err().to_string();
    assert!(err.contains("--shell-job"), "{err}");
    assert!(err.contains("/dev/pts/"), "{err}");
}

#[test]
fn with_shell_job_it_is_our_terminal_or_a_clear_error() {
    let (mut images, e) = dumped();
    images.restore_options.shell_job = true;
    let files = all_files(&images, &e);
    let mut r = TtyPlugin.start_restore(&mut images, &files).expect("start");
    let stdin_is_tty = nix::unistd::isatty(std::io::stdin()).unwrap_or(false);
    match r.open_file(&mut images, &e) {
        Ok(fd) => {
            assert!(stdin_is_tty, "opened without a terminal on stdin");
            assert!(nix::unistd::isatty(&fd).expect("isatty"));
        }
        Err(err) => {
            assert!(!stdin_is_tty, "{err}");
            let err = err.to_string();
            assert!(err.contains(crate::NO_TERMINAL_HINT), "{err}");
        }
    }
}

#[test]
fn missing_or_duplicate_info_is_a_bad_image() {
    let (mut images, e) = dumped();
    images.restore_options.shell_job = true;
    let files = all_files(&images, &e);
    images.images.remove("tty-info.img");
    let mut r = TtyPlugin.start_restore(&mut images, &files).expect("start");
    let err = r.open_file(&mut images, &e).unwrap_err().to_string();
    assert!(err.contains("tty-info.img"), "{err}");

    let (mut images, e) = dumped();
    let info: Vec<TtyInfoEntry> = messages(&images, crate::TTY_INFO);
    write_message(&mut images, crate::TTY_INFO, &info[0], &[]).expect("write");
    let files = all_files(&images, &e);
    let err = TtyPlugin
        .start_restore(&mut images, &files)
        .err()
        .expect("refused");
    assert!(err.to_string().contains("duplicate"), "{err}");
}
