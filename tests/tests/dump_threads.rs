//! Freezing a process whose threads (or children) keep being created and reaped: every
//! dump must see a consistent set (pstree threads = core images), and the process must go
//! on.

use std::path::Path;
use std::time::Duration;

use criu_core::dump::{DumpOptions, dump};
use criu_core::image::{ImageDir, ImageKind};
use criu_proto::images::{CoreEntry, PstreeEntry};
use criu_tests::{ScratchDir, Workload, skip_unless_root};

use criu_plugin_files as _;
use criu_plugin_pipes as _;

fn joined(line: &str) -> u64 {
    line.strip_prefix("ok ").unwrap().parse().unwrap()
}

#[test]
fn dump_while_threads_come_and_go() {
    if skip_unless_root("dump_while_threads_come_and_go") {
        return;
    }
    let mut w = Workload::start(
        Path::new(env!("CARGO_BIN_EXE_wl_threads")),
        &["8"],
        "ready",
        Duration::from_secs(20),
    );
    let pid = w.pid();
    let usr1 = || {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGUSR1,
        )
        .unwrap()
    };
    let mut last = 0;
    for round in 0..5 {
        let d = ScratchDir::new("dump-threads");
        let mut o = DumpOptions::new(pid, d.path());
        o.leave_running = true;
        let rep = dump(&o).unwrap_or_else(|e| panic!("round {round}: {e}: {e:?}"));
        let dir = ImageDir::open(d.path()).unwrap();
        let pstree: Vec<PstreeEntry> = dir.read_all(ImageKind::Pstree, 0).unwrap();
        assert_eq!(pstree[0].threads.len(), rep.threads);
        assert!(rep.threads >= 9, "round {round}: {} threads", rep.threads);
        for &t in &pstree[0].threads {
            let _: CoreEntry = dir.read_single(ImageKind::Core, t as u64).unwrap();
        }
        // Still making progress after being let go.
        std::thread::sleep(Duration::from_millis(50));
        usr1();
        let mut line = String::new();
        loop {
            line.clear();
            std::io::BufRead::read_line(&mut w.stdout, &mut line).unwrap();
            if line.starts_with("ok ") {
                break;
            }
        }
        let now = joined(line.trim());
        assert!(now > last, "round {round}: no progress ({now} <= {last})");
        last = now;
    }
}

#[test]
fn dump_while_children_come_and_go() {
    if skip_unless_root("dump_while_children_come_and_go") {
        return;
    }
    let mut w = Workload::start(
        Path::new(env!("CARGO_BIN_EXE_wl_forker")),
        &["4"],
        "ready",
        Duration::from_secs(20),
    );
    let pid = w.pid();
    let mut last = 0;
    for round in 0..5 {
        let d = ScratchDir::new("dump-forker");
        let mut o = DumpOptions::new(pid, d.path());
        o.leave_running = true;
        let rep = dump(&o).unwrap_or_else(|e| panic!("round {round}: {e}: {e:?}"));
        let dir = ImageDir::open(d.path()).unwrap();
        let pstree: Vec<PstreeEntry> = dir.read_all(ImageKind::Pstree, 0).unwrap();
        assert_eq!(pstree.len(), rep.pids.len());
        assert_eq!(pstree[0].pid, pid as u32);
        for e in &pstree[1..] {
            assert_eq!(e.ppid, pid as u32);
            let _: CoreEntry = dir.read_single(ImageKind::Core, e.pid as u64).unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGUSR1,
        )
        .unwrap();
        let mut line = String::new();
        loop {
            line.clear();
            std::io::BufRead::read_line(&mut w.stdout, &mut line).unwrap();
            if line.starts_with("ok ") {
                break;
            }
        }
        let now = joined(line.trim());
        assert!(now > last, "round {round}: no progress ({now} <= {last})");
        last = now;
    }
}
