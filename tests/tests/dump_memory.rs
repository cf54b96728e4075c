//! Real-kernel dump tests: wl_memory is dumped while running (it must keep running
//! correctly), then dumped and killed; every image is decoded and checked against what
//! /proc said before the dump.

use std::path::Path;
use std::time::Duration;

use criu_core::dump::{DumpOptions, dump};
use criu_core::image::{ImageDir, ImageKind};
use criu_proto::images::{
    CoreEntry, FdinfoEntry, FileEntry, FsEntry, InventoryEntry, MmEntry, PstreeEntry, StatsEntry,
    TaskKobjIdsEntry,
};
use criu_tests::{ScratchDir, Workload, skip_unless_root, wait_pid_gone};

// Link the built-in plugins (their inventory registrations).
use criu_plugin_files as _;
use criu_plugin_pipes as _;

const MIB: u64 = 16;

fn pattern(i: u64) -> u64 {
    i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5555
}

fn start(dir: &ScratchDir) -> Workload {
    let file = dir.path().join("data.txt");
    Workload::start(
        Path::new(env!("CARGO_BIN_EXE_wl_memory")),
        &[&MIB.to_string(), file.to_str().unwrap()],
        "ready",
        Duration::from_secs(20),
    )
}

fn images(name: &str) -> ScratchDir {
    ScratchDir::new(name)
}

#[test]
fn dump_leave_running_then_kill() {
    if skip_unless_root("dump_leave_running_then_kill") {
        return;
    }
    let work = ScratchDir::new("dump-work");
    let mut w = start(&work);
    let pid = w.pid();

    // 1. Dump and leave running: the workload must still verify itself.
    let d1 = images("dump-run");
    let mut o = DumpOptions::new(pid, d1.path());
    o.leave_running = true;
    let rep = dump(&o).expect("dump --leave-running");
    assert_eq!(rep.threads, 4);
    assert!(rep.pages_written >= MIB * 256, "{rep:?}");
    std::thread::sleep(Duration::from_millis(1200));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .unwrap();
    w.wait_line("ok", Duration::from_secs(20));

    // 2. What /proc says right before the second dump.
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let tids: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_str().unwrap().parse().unwrap())
        .collect();

    // 3. Dump and kill.
    let d2 = images("dump-kill");
    let rep = dump(&DumpOptions::new(pid, d2.path())).expect("dump");
    assert!(
        wait_pid_gone(pid, Duration::from_secs(10)) || {
            // Our child: reap it so the pid goes away.
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
            wait_pid_gone(pid, Duration::from_secs(10))
        }
    );

    let dir = ImageDir::open(d2.path()).unwrap();
    // Every file is 0600.
    for e in std::fs::read_dir(d2.path()).unwrap() {
        use std::os::unix::fs::PermissionsExt;
        let m = e.unwrap().metadata().unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o600);
    }
    let inv: InventoryEntry = dir.read_single(ImageKind::Inventory, 0).unwrap();
    assert_eq!(inv.img_version, 2);
    let pstree: Vec<PstreeEntry> = dir.read_all(ImageKind::Pstree, 0).unwrap();
    assert_eq!(pstree.len(), 1);
    assert_eq!(pstree[0].pid, pid as u32);
    let mut got = pstree[0].threads.clone();
    got.sort();
    let mut want = tids.clone();
    want.sort();
    assert_eq!(got, want);
    assert_eq!(pstree[0].threads[0], pid as u32);

    for &t in &tids {
        let core: CoreEntry = dir.read_single(ImageKind::Core, t as u64).unwrap();
        let ti = core.thread_info.expect("thread_info");
        assert_eq!(core.tc.is_some(), t == pid as u32);
        assert_eq!(ti.gpregs.cs, 0x33);
        assert_eq!(ti.fpregs.xmm_space.len(), 64);
        let tcore = core.thread_core.expect("thread_core");
        assert!(tcore.creds.is_some());
        if t == pid as u32 {
            let tc = core.tc.unwrap();
            assert_eq!(tc.sigactions.len(), 62);
            // SIGUSR1 (index 8) has our handler.
            assert!(tc.sigactions[8].sigaction > 1);
            let real = tc.timers.as_ref().unwrap().real;
            assert_eq!((real.isec, real.iusec), (1, 0));
            assert_eq!(tc.rlimits.unwrap().rlimits.len(), 16);
            assert_eq!(tc.comm, "wl_memory");
            // SIGUSR2 pending process-wide and for the main thread (siginfo byte 0: signo).
            let shared = tc.signals_s.unwrap().signals;
            assert_eq!(shared.len(), 1);
            assert_eq!(shared[0].siginfo[0] as i32, libc::SIGUSR2);
            let own = tcore.signals_p.as_ref().unwrap();
            assert_eq!(own.signals.len(), 1);
            assert_eq!(own.signals[0].siginfo.len(), 128);
            let posix = &tc.timers.as_ref().unwrap().posix;
            assert_eq!(posix.len(), 1, "{posix:?}");
            assert_eq!(posix[0].clock_id, libc::CLOCK_MONOTONIC as u32);
            assert_eq!(posix[0].si_signo as i32, libc::SIGRTMIN() + 1);
            assert_eq!((posix[0].isec, posix[0].insec), (30, 0));
            assert!(posix[0].vsec <= 30);
        }
    }

    // VMAs: same list as /proc/PID/maps (modulo CRIU's stack guard page and vvar merge).
    let mm: MmEntry = dir.read_single(ImageKind::Mm, pid as u64).unwrap();
    let mut want: Vec<(u64, u64, String)> = Vec::new();
    for l in maps.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        let (s, e) = f[0].split_once('-').unwrap();
        let (s, e) = (
            u64::from_str_radix(s, 16).unwrap(),
            u64::from_str_radix(e, 16).unwrap(),
        );
        let name = f.get(5).map(|s| s.to_string()).unwrap_or_default();
        if name == "[vvar_vclock]" {
            want.last_mut().unwrap().1 = e;
            continue;
        }
        want.push((s, e, name));
    }
    assert_eq!(mm.vmas.len(), want.len(), "{:#?}", mm.vmas);
    for (v, (s, e, name)) in mm.vmas.iter().zip(&want) {
        let start = if name == "[stack]" { s - 4096 } else { *s };
        assert_eq!((v.start, v.end), (start, *e), "{name}");
    }
    assert!(mm.exe_file_id > 0);

    // Pages: the patterned area is in pages-1.img.
    let (head, entries) = dir.read_pagemap(pid as u64).unwrap();
    assert_eq!(head.pages_id, 1);
    let pages = std::fs::read(d2.path().join("pages-1.img")).unwrap();
    let total: u64 = entries.iter().map(|e| e.nr_pages.unwrap_or(0)).sum();
    assert_eq!(total * 4096, pages.len() as u64);
    let stats: StatsEntry = dir.read_single(ImageKind::Stats, 0).unwrap();
    let ds = stats.dump.unwrap();
    assert_eq!(ds.pages_written, total);
    assert_eq!(ds.pages_written, rep.pages_written);
    // Find the first pattern words in the pages and check a whole MiB run after them.
    let first = pattern(0).to_ne_bytes();
    let second = pattern(1).to_ne_bytes();
    // The Vec's data starts 16 bytes into its mmap'd block: search 8-byte aligned offsets.
    let pos = (0..pages.len() / 8 - 1)
        .find(|&k| pages[k * 8..k * 8 + 8] == first && pages[k * 8 + 8..k * 8 + 16] == second)
        .expect("pattern start in pages");
    let words = &pages[pos * 8..];
    let n = (1u64 << 20) / 8;
    for i in 0..n {
        let w = u64::from_ne_bytes(
            words[(i * 8) as usize..(i * 8 + 8) as usize]
                .try_into()
                .unwrap(),
        );
        assert_eq!(w, pattern(i), "word {i}");
    }

    // The PROT_NONE area's pages are there too (read through /proc/PID/mem).
    let tag = 0xC0FF_EE00_0000_0000u64;
    let none_page = pages
        .chunks_exact(4096)
        .position(|p| p[..8] == tag.to_ne_bytes())
        .expect("PROT_NONE page in pages-1.img");
    let p = &pages[none_page * 4096..(none_page + 16) * 4096];
    for (i, w) in p.chunks_exact(8).enumerate() {
        assert_eq!(u64::from_ne_bytes(w.try_into().unwrap()), tag | i as u64);
    }

    // Files: fds 0..=2, the pipe ends and the data file, each with a files.img entry.
    let ids: TaskKobjIdsEntry = dir.read_single(ImageKind::Ids, pid as u64).unwrap();
    let fdinfo: Vec<FdinfoEntry> = dir
        .read_all(ImageKind::Fdinfo, ids.files_id as u64)
        .unwrap();
    let files: Vec<FileEntry> = dir.read_all(ImageKind::Files, 0).unwrap();
    for fi in &fdinfo {
        assert!(
            files.iter().any(|f| f.id == fi.id),
            "fd {} without file entry",
            fi.fd
        );
    }
    assert!(files.iter().any(|f| {
        f.reg
            .as_ref()
            .is_some_and(|r| r.name.ends_with("data.txt") && r.pos == 5)
    }));
    assert!(
        fdinfo.iter().filter(|f| f.r#type == 2).count() >= 2,
        "pipe ends: {fdinfo:?}"
    );
    let fs: FsEntry = dir.read_single(ImageKind::Fs, pid as u64).unwrap();
    assert!(files.iter().any(|f| f.id == fs.cwd_id));
    assert!(files.iter().any(|f| f.id == mm.exe_file_id));

    // CRIU's own crit reads the set (when installed).
    if Path::new("/usr/bin/crit").exists() {
        let out = std::process::Command::new("/usr/bin/crit")
            .args(["x", d2.path().to_str().unwrap(), "ps"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("wl_memory"),
            "{text} {out:?}"
        );
        for e in std::fs::read_dir(d2.path()).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "img") && !p.ends_with("pages-1.img") {
                let st = std::process::Command::new("/usr/bin/crit")
                    .args(["decode", "-i", p.to_str().unwrap(), "-o", "/dev/null"])
                    .status()
                    .unwrap();
                assert!(st.success(), "crit decode {}", p.display());
            }
        }
    } else {
        eprintln!("crit not installed: skipping the crit cross-check");
    }
}

#[test]
fn dump_failure_leaves_task_running_and_no_images() {
    if skip_unless_root("dump_failure_leaves_task_running_and_no_images") {
        return;
    }
    let work = ScratchDir::new("dump-fail-work");
    let mut w = start(&work);
    let pid = w.pid();
    for step in [
        "freeze", "threads", "task", "ids", "memory", "files", "images",
    ] {
        let d = images("dump-fail");
        let mut o = DumpOptions::new(pid, d.path());
        o.fail_after = Some(step);
        let err = dump(&o).expect_err("injected failure");
        assert!(err.to_string().contains(&pid.to_string()), "{err}");
        let left: Vec<_> = std::fs::read_dir(d.path()).unwrap().collect();
        assert!(left.is_empty(), "after {step}: {left:?}");
        // No leftover scratch mapping, and the task still works.
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
        assert!(
            !maps.contains("/dev/zero (deleted)"),
            "scratch page left after {step}"
        );
        let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        assert!(st.contains("TracerPid:\t0"), "still traced after {step}");
    }
    std::thread::sleep(Duration::from_millis(1100));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .unwrap();
    w.wait_line("ok", Duration::from_secs(20));
}

#[test]
fn dump_refuses_traced_task() {
    if skip_unless_root("dump_refuses_traced_task") {
        return;
    }
    let work = ScratchDir::new("dump-traced-work");
    let mut w = start(&work);
    let pid = w.pid();
    // Another thread of ours traces the workload: /proc shows that thread as TracerPid.
    let (tx_ready, rx_ready) = std::sync::mpsc::channel();
    let (tx_done, rx_done) = std::sync::mpsc::channel::<()>();
    let tracer = std::thread::spawn(move || {
        let p = nix::unistd::Pid::from_raw(pid);
        nix::sys::ptrace::seize(p, nix::sys::ptrace::Options::empty()).unwrap();
        tx_ready.send(nix::unistd::gettid().as_raw()).unwrap();
        let _ = rx_done.recv();
        // Only a stopped tracee can be detached; interrupt it first.
        nix::sys::ptrace::interrupt(p).unwrap();
        let _ = nix::sys::wait::waitpid(p, Some(nix::sys::wait::WaitPidFlag::__WALL));
        nix::sys::ptrace::detach(p, None).unwrap();
    });
    let tracer_tid = rx_ready.recv().unwrap();
    let d = images("dump-traced");
    let err = dump(&DumpOptions::new(pid, d.path())).expect_err("dump of a traced task");
    tx_done.send(()).unwrap();
    tracer.join().unwrap();
    let msg = err.to_string();
    assert!(
        msg.contains(&pid.to_string()) && msg.contains(&tracer_tid.to_string()),
        "{msg}"
    );
    assert!(std::fs::read_dir(d.path()).unwrap().next().is_none());
    // Still alive and well once the other tracer is gone.
    std::thread::sleep(Duration::from_millis(1100));
    signal(pid, nix::sys::signal::Signal::SIGUSR1);
    w.wait_line("ok", Duration::from_secs(20));
}

fn proc_state(pid: i32) -> char {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &s[s.rfind(')').unwrap() + 2..];
    after.chars().next().unwrap()
}

fn wait_state(pid: i32, want: char) -> bool {
    for _ in 0..500 {
        if proc_state(pid) == want {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

fn signal(pid: i32, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).unwrap();
}

#[test]
fn dump_leave_stopped_then_continue() {
    if skip_unless_root("dump_leave_stopped_then_continue") {
        return;
    }
    use nix::sys::signal::Signal;
    let work = ScratchDir::new("dump-stop-work");
    let mut w = start(&work);
    let pid = w.pid();
    let d = images("dump-stop");
    let mut o = DumpOptions::new(pid, d.path());
    o.leave_stopped = true;
    dump(&o).expect("dump --leave-stopped");
    assert!(wait_state(pid, 'T'), "state {}", proc_state(pid));
    signal(pid, Signal::SIGCONT);
    assert!(wait_state(pid, 'S') || proc_state(pid) == 'R');
    std::thread::sleep(Duration::from_millis(1100));
    signal(pid, Signal::SIGUSR1);
    w.wait_line("ok", Duration::from_secs(20));
}

#[test]
fn dump_of_stopped_task_keeps_it_stopped() {
    if skip_unless_root("dump_of_stopped_task_keeps_it_stopped") {
        return;
    }
    use nix::sys::signal::Signal;
    let work = ScratchDir::new("dump-stopped-work");
    let mut w = start(&work);
    let pid = w.pid();
    signal(pid, Signal::SIGSTOP);
    assert!(wait_state(pid, 'T'));
    let d = images("dump-stopped");
    let mut o = DumpOptions::new(pid, d.path());
    o.leave_running = true;
    dump(&o).expect("dump of a stopped task");
    let dir = ImageDir::open(d.path()).unwrap();
    let core: CoreEntry = dir.read_single(ImageKind::Core, pid as u64).unwrap();
    let tc = core.tc.unwrap();
    assert_eq!(tc.task_state, 3);
    assert_eq!(tc.stop_signo, Some(libc::SIGSTOP as u32));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(proc_state(pid), 'T', "the task must stay stopped");
    signal(pid, Signal::SIGCONT);
    std::thread::sleep(Duration::from_millis(1100));
    signal(pid, Signal::SIGUSR1);
    w.wait_line("ok", Duration::from_secs(20));
}

#[test]
fn dump_process_tree() {
    if skip_unless_root("dump_process_tree") {
        return;
    }
    // sh with a background child sharing its stdout pipe.
    let w = Workload::start(
        Path::new("/bin/sh"),
        &["-c", "sleep 600 & echo ready; wait"],
        "ready",
        Duration::from_secs(20),
    );
    let pid = w.pid();
    let kids = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap();
    let kid: i32 = kids.split_whitespace().next().unwrap().parse().unwrap();
    let _kid_guard = criu_tests::PidGuard::new(kid);

    let d = images("dump-tree");
    let mut o = DumpOptions::new(pid, d.path());
    o.leave_running = true;
    let rep = dump(&o).expect("tree dump");
    assert_eq!(rep.pids, vec![pid, kid]);
    assert!(proc_state(pid) != 'T' && proc_state(kid) != 'T');

    let dir = ImageDir::open(d.path()).unwrap();
    let pstree: Vec<PstreeEntry> = dir.read_all(ImageKind::Pstree, 0).unwrap();
    assert_eq!(pstree.len(), 2);
    assert_eq!((pstree[0].pid, pstree[0].ppid), (pid as u32, 0));
    assert_eq!((pstree[1].pid, pstree[1].ppid), (kid as u32, pid as u32));
    assert_eq!(pstree[1].sid, pstree[0].sid);
    let ids0: TaskKobjIdsEntry = dir.read_single(ImageKind::Ids, pid as u64).unwrap();
    let ids1: TaskKobjIdsEntry = dir.read_single(ImageKind::Ids, kid as u64).unwrap();
    assert_ne!(ids0.vm_id, ids1.vm_id);
    assert_ne!(ids0.files_id, ids1.files_id);
    let fd0: Vec<FdinfoEntry> = dir
        .read_all(ImageKind::Fdinfo, ids0.files_id as u64)
        .unwrap();
    let fd1: Vec<FdinfoEntry> = dir
        .read_all(ImageKind::Fdinfo, ids1.files_id as u64)
        .unwrap();
    let stdout = |v: &[FdinfoEntry]| v.iter().find(|f| f.fd == 1).map(|f| f.id);
    // The inherited stdout is one open file description: one files.img entry.
    assert_eq!(stdout(&fd0), stdout(&fd1));
    assert!(stdout(&fd0).is_some());
    for p in [pid, kid] {
        let _: MmEntry = dir.read_single(ImageKind::Mm, p as u64).unwrap();
        let _: CoreEntry = dir.read_single(ImageKind::Core, p as u64).unwrap();
    }
    let (h0, _) = dir.read_pagemap(pid as u64).unwrap();
    let (h1, _) = dir.read_pagemap(kid as u64).unwrap();
    assert_ne!(h0.pages_id, h1.pages_id);

    // Now dump and kill the whole tree.
    let d2 = images("dump-tree-kill");
    dump(&DumpOptions::new(pid, d2.path())).expect("tree dump + kill");
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
    assert!(wait_pid_gone(kid, Duration::from_secs(10)));
    assert!(wait_pid_gone(pid, Duration::from_secs(10)));
}

#[test]
fn dump_tree_with_a_zombie() {
    if skip_unless_root("dump_tree_with_a_zombie") {
        return;
    }
    let w = Workload::start(
        Path::new(env!("CARGO_BIN_EXE_wl_zombie")),
        &[],
        "ready",
        Duration::from_secs(20),
    );
    let pid = w.pid();
    let kids = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap();
    let kid: i32 = kids
        .split_whitespace()
        .next()
        .expect("a child")
        .parse()
        .unwrap();
    assert!(wait_state(kid, 'Z'), "child {kid} never became a zombie");
    let d = images("dump-zombie");
    let mut o = DumpOptions::new(pid, d.path());
    o.leave_running = true;
    let rep = dump(&o).expect("dump with a zombie");
    assert_eq!(rep.pids, vec![pid, kid]);
    let dir = ImageDir::open(d.path()).unwrap();
    let pstree: Vec<PstreeEntry> = dir.read_all(ImageKind::Pstree, 0).unwrap();
    assert_eq!((pstree[1].pid, pstree[1].ppid), (kid as u32, pid as u32));
    let core: CoreEntry = dir.read_single(ImageKind::Core, kid as u64).unwrap();
    let tc = core.tc.unwrap();
    assert_eq!((tc.task_state, tc.exit_code), (2, 0));
    assert!(core.thread_info.is_none());
    assert_eq!(proc_state(kid), 'Z');
}
