//! Round trips: a workload is dumped (and killed), restored from the images, and then checks
//! itself. wl_memory: memory contents, FP registers of its threads, the pipe's data, the
//! file offset, its itimer, the still-pending SIGUSR2 and the PROT_NONE pages; wl_seccomp:
//! its filters act in both threads; wl_shmem: its shared memory. Their stdout pipe had its
//! reader outside the tree, so verdicts are read from a file.

use std::path::Path;
use std::time::{Duration, Instant};

use criu_core::dump::{DumpOptions, dump};
use criu_core::restore::{RestoreOptions, restore};
use criu_tests::{PidGuard, ScratchDir, Workload, skip_unless_root, wait_pid_gone};

use criu_plugin_files as _;
use criu_plugin_pipes as _;

/// Start `bin args`, dump + kill it, restore it, SIGUSR1 it, and return its verdict file.
fn round_trip(bin: &str, args: &[&str], verdict: &Path) -> String {
    let w = Workload::start(Path::new(bin), args, "ready", Duration::from_secs(20));
    let pid = w.pid();
    // Let timers fire at least once before the dump.
    std::thread::sleep(Duration::from_millis(1100));
    let d = ScratchDir::new("rt-images");
    dump(&DumpOptions::new(pid, d.path())).expect("dump");
    // We are its parent: reap it so the pid is free for the restore.
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
    assert!(wait_pid_gone(pid, Duration::from_secs(10)));
    drop(w);

    let opts = RestoreOptions {
        images_dir: d.path().to_path_buf(),
        detach: true,
        shell_job: true,
        ..RestoreOptions::default()
    };
    restore(&opts).unwrap_or_else(|e| panic!("restore of {bin}: {e}: {e:?}"));
    let _restored = PidGuard::new(pid);
    std::thread::sleep(Duration::from_millis(300));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(t) = std::fs::read_to_string(verdict)
            && t.ends_with('\n')
        {
            return t.trim().to_string();
        }
        assert!(Instant::now() < deadline, "no verdict from restored {bin}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn wl_memory_survives_dump_and_restore() {
    if skip_unless_root("wl_memory_survives_dump_and_restore") {
        return;
    }
    let work = ScratchDir::new("rt-work");
    let file = work.path().join("data.txt");
    let verdict = work.path().join("data.txt.verdict");
    let v = round_trip(
        env!("CARGO_BIN_EXE_wl_memory"),
        &["8", file.to_str().unwrap()],
        &verdict,
    );
    assert_eq!(v, "ok");
}

#[test]
fn wl_seccomp_keeps_its_filters_through_dump_and_restore() {
    if skip_unless_root("wl_seccomp_keeps_its_filters_through_dump_and_restore") {
        return;
    }
    let work = ScratchDir::new("rt-seccomp");
    let v = work.path().join("verdict");
    let bin = env!("CARGO_BIN_EXE_wl_seccomp");
    assert_eq!(round_trip(bin, &[v.to_str().unwrap()], &v), "ok");
}

#[test]
fn wl_shmem_keeps_its_shared_memory_through_dump_and_restore() {
    if skip_unless_root("wl_shmem_keeps_its_shared_memory_through_dump_and_restore") {
        return;
    }
    let work = ScratchDir::new("rt-shmem");
    let v = work.path().join("verdict");
    let bin = env!("CARGO_BIN_EXE_wl_shmem");
    assert_eq!(round_trip(bin, &[v.to_str().unwrap()], &v), "ok");
}

#[test]
fn process_tree_round_trip() {
    if skip_unless_root("process_tree_round_trip") {
        return;
    }
    let w = Workload::start(
        Path::new("/bin/sh"),
        &["-c", "sleep 600 & echo ready; wait"],
        "ready",
        Duration::from_secs(20),
    );
    let pid = w.pid();
    let kids = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap();
    let kid: i32 = kids.split_whitespace().next().unwrap().parse().unwrap();
    let _kid_guard = PidGuard::new(kid);
    let d = ScratchDir::new("rt-tree");
    dump(&DumpOptions::new(pid, d.path())).expect("dump");
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
    assert!(wait_pid_gone(pid, Duration::from_secs(10)));
    assert!(wait_pid_gone(kid, Duration::from_secs(10)));
    drop(w);
    let opts = RestoreOptions {
        images_dir: d.path().to_path_buf(),
        detach: true,
        shell_job: true,
        ..RestoreOptions::default()
    };
    restore(&opts).unwrap_or_else(|e| panic!("restore: {e}: {e:?}"));
    let _restored = PidGuard::new(pid);
    std::thread::sleep(Duration::from_millis(300));
    // Same pids, same parenthood, both asleep where they were.
    let stat = |p: i32| std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap();
    let field = |s: &str, n: usize| {
        s[s.rfind(')').unwrap() + 2..]
            .split(' ')
            .nth(n)
            .unwrap()
            .to_string()
    };
    let (root, child) = (stat(pid), stat(kid));
    assert_eq!(field(&child, 1), pid.to_string(), "ppid of the child");
    assert_eq!(field(&root, 0), "S");
    assert_eq!(field(&child, 0), "S");
    assert!(
        std::fs::read_link(format!("/proc/{kid}/exe"))
            .unwrap()
            .ends_with("sleep")
    );
}
