//! Tasks living on removed files (`wl_unlinked`), dumped, killed, restored, and judged by
//! themselves: shared and private mappings of an unlinked file (its contents come back from
//! the ghost image, the private copy from the task's pages), and a removed directory as the
//! cwd (recreated as a ghost directory at its old path, so it reads back the same).

use std::path::Path;
use std::time::{Duration, Instant};

use criu_core::dump::{DumpOptions, dump};
use criu_core::restore::{RestoreOptions, restore};
use criu_tests::{PidGuard, ScratchDir, Workload, skip_unless_root, wait_pid_gone};

use criu_plugin_files as _;
use criu_plugin_pipes as _;

fn verdict(path: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(t) = std::fs::read_to_string(path)
            && t.ends_with('\n')
        {
            return t.trim().to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no verdict in {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn usr1(pid: i32) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .expect("SIGUSR1");
}

/// Starts `wl_unlinked MODE`, checks it judges itself right, dumps it (which ends it),
/// restores it and asks it again.
fn dump_restore_verify(mode: &str) {
    let work = ScratchDir::new(&format!("unlinked-{mode}"));
    let v = work.path().join("verdict");
    let w = Workload::start(
        Path::new(env!("CARGO_BIN_EXE_wl_unlinked")),
        &[
            mode,
            work.path().to_str().expect("utf-8"),
            v.to_str().expect("utf-8"),
        ],
        "ready",
        Duration::from_secs(20),
    );
    let pid = w.pid();
    usr1(pid);
    assert_eq!(
        verdict(&v),
        "ok",
        "the workload is wrong about itself before the dump"
    );
    std::fs::remove_file(&v).expect("verdict");

    let images = ScratchDir::new(&format!("unlinked-{mode}-img"));
    dump(&DumpOptions::new(pid, images.path())).unwrap_or_else(|e| panic!("dump: {e}: {e:?}"));
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
    assert!(wait_pid_gone(pid, Duration::from_secs(10)));
    drop(w);
    assert!(
        images.path().join("ghost-file-1.img").exists(),
        "the removed file is carried as a ghost"
    );

    let opts = RestoreOptions {
        images_dir: images.path().to_path_buf(),
        detach: true,
        shell_job: true,
        ..RestoreOptions::default()
    };
    restore(&opts).unwrap_or_else(|e| panic!("restore: {e}: {e:?}"));
    let _restored = PidGuard::new(pid);
    usr1(pid);
    assert_eq!(verdict(&v), "ok");
    // The ghost left no name behind.
    let left: Vec<_> = std::fs::read_dir(work.path())
        .expect("work dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .filter(|n| n != "verdict")
        .collect();
    assert!(left.is_empty(), "leftovers: {left:?}");
}

#[test]
fn mappings_of_an_unlinked_file_survive_dump_and_restore() {
    if !skip_unless_root("mappings_of_an_unlinked_file_survive_dump_and_restore") {
        dump_restore_verify("mmap");
    }
}

#[test]
fn removed_cwd_survives_dump_and_restore() {
    if !skip_unless_root("removed_cwd_survives_dump_and_restore") {
        dump_restore_verify("cwd");
    }
}
