//! Dump of a task with seccomp filters: the chains land in seccomp.img (CRIU layout: each
//! thread's `seccomp_filter` names its newest filter, `prev` links to older ones) and the
//! task keeps its filters when left running.

use std::path::Path;
use std::time::Duration;

use criu_core::dump::{DumpOptions, dump};
use criu_core::image::{ImageDir, ImageKind};
use criu_proto::images::{CoreEntry, PstreeEntry, SeccompEntry};
use criu_tests::{ScratchDir, Workload, skip_unless_root};

use criu_plugin_files as _;
use criu_plugin_pipes as _;

#[test]
fn dump_seccomp_filters() {
    if skip_unless_root("dump_seccomp_filters") {
        return;
    }
    let mut w = Workload::start(
        Path::new(env!("CARGO_BIN_EXE_wl_seccomp")),
        &[],
        "ready",
        Duration::from_secs(20),
    );
    let pid = w.pid();
    let d = ScratchDir::new("dump-seccomp");
    let mut o = DumpOptions::new(pid, d.path());
    o.leave_running = true;
    dump(&o).expect("dump of a seccomp-filtered task");

    let dir = ImageDir::open(d.path()).unwrap();
    let sc: SeccompEntry = dir.read_single(ImageKind::Seccomp, 0).unwrap();
    let pstree: Vec<PstreeEntry> = dir.read_all(ImageKind::Pstree, 0).unwrap();
    assert_eq!(pstree[0].threads.len(), 2);
    for &tid in &pstree[0].threads {
        let core: CoreEntry = dir.read_single(ImageKind::Core, tid as u64).unwrap();
        let tcore = core.thread_core.unwrap();
        assert_eq!(tcore.seccomp_mode, Some(2));
        let mut pos = tcore.seccomp_filter.expect("seccomp_filter") as usize;
        let mut chain = Vec::new();
        loop {
            let f = &sc.seccomp_filters[pos];
            chain.push(f.filter.len() / 8);
            match f.prev {
                Some(p) => pos = p as usize,
                None => break,
            }
        }
        // Newest (4 instructions) first, then the allow-all one.
        assert_eq!(chain, vec![4, 1], "thread {tid}");
    }
    // Both threads share one chain.
    assert_eq!(sc.seccomp_filters.len(), 2);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .unwrap();
    w.wait_line("ok", Duration::from_secs(20));
}
