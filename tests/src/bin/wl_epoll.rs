//! Workload: epoll semantics that must survive checkpoint/restore, checked every 20 ms.
//!
//! One epoll (fd reported as `ep=`) with three registrations:
//! - pipe A read end, level-triggered, data `0xa1`: after a write it is reported on every
//!   `epoll_wait` until read;
//! - pipe B read end, edge-triggered, data `0xb2`: reported once per write, not again while
//!   the byte stays unread; its registration is re-armed each round with `EPOLL_CTL_MOD`
//!   (fails with ENOENT unless the registration is keyed by this task's fd number);
//! - an eventfd, level-triggered, data `0xe3`.
//!
//! Each round appends `pid=P ep=N round=R ok` to REPORT (or `FAIL <why>` and exits 1). When
//! the file `REPORT.del` appears, pipe A is removed with `EPOLL_CTL_DEL` (`del ok` or
//! `FAIL del ...`) and from then on must no longer be reported.
//!
//! `wl_epoll REPORT closed`: additionally registers a pipe C and then closes its fd while a
//! duplicate keeps the pipe open, so the registration outlives its fd number (the dump
//! finds the target at the duplicate), and reports `closed tfd=N`.
//!
//! `wl_epoll REPORT fork`: forks a child once everything is registered; the child shares the
//! epoll and its targets (same descriptions, same fd numbers) and only sleeps, reporting
//! `child=C`. The registrations must come back once, in one of the two tasks.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Duration;

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};

const A: u64 = 0xa1;
const B: u64 = 0xb2;
const E: u64 = 0xe3;

struct Run {
    report: String,
    ep: Epoll,
    a: (OwnedFd, OwnedFd),
    b: (OwnedFd, OwnedFd),
    efd: EventFd,
    a_registered: bool,
}

impl Run {
    fn line(&self, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.report)
            .expect("report");
        let _ = writeln!(
            f,
            "pid={} ep={} {text}",
            std::process::id(),
            self.ep.0.as_raw_fd()
        );
    }

    fn fail(&self, why: String) -> ! {
        self.line(&format!("FAIL {why}"));
        std::process::exit(1);
    }

    /// The data values epoll reports now (no waiting), sorted.
    fn ready(&self) -> Vec<u64> {
        let mut ev = [EpollEvent::empty(); 8];
        let n = self
            .ep
            .wait(&mut ev, EpollTimeout::ZERO)
            .unwrap_or_else(|e| self.fail(format!("epoll_wait: {e}")));
        let mut v: Vec<u64> = ev[..n].iter().map(|e| e.data()).collect();
        v.sort_unstable();
        v
    }

    fn write1(&self, fd: &OwnedFd, what: &str) {
        if nix::unistd::write(fd, b"x").unwrap_or(0) != 1 {
            self.fail(format!("write to {what}"));
        }
    }

    fn read1(&self, fd: &OwnedFd, what: &str) {
        let mut b = [0u8; 1];
        if nix::unistd::read(fd, &mut b).unwrap_or(0) != 1 {
            self.fail(format!("read from {what}"));
        }
    }

    fn expect(&self, step: &str, want: &[u64]) {
        let got = self.ready();
        if got != want {
            self.fail(format!("{step}: ready {got:x?}, want {want:x?}"));
        }
    }

    fn round(&mut self) {
        let a_data: &[u64] = if self.a_registered { &[A] } else { &[] };
        self.expect("idle", &[]);
        // Level-triggered A: reported until read.
        self.write1(&self.a.1, "pipe A");
        self.expect("A written", a_data);
        self.expect("A still unread", a_data);
        self.read1(&self.a.0, "pipe A");
        // Edge-triggered B: once per write.
        let flags = EpollFlags::EPOLLIN | EpollFlags::EPOLLET;
        if let Err(e) = self.ep.modify(&self.b.0, &mut EpollEvent::new(flags, B)) {
            self.fail(format!("EPOLL_CTL_MOD of pipe B: {e}"));
        }
        self.write1(&self.b.1, "pipe B");
        self.expect("B written", &[B]);
        self.expect("B unread, no new edge", &[]);
        self.read1(&self.b.0, "pipe B");
        // The eventfd, level-triggered.
        if self.efd.write(3).is_err() {
            self.fail("eventfd write".into());
        }
        self.expect("eventfd", &[E]);
        match self.efd.read() {
            Ok(3) => {}
            other => self.fail(format!("eventfd read {other:?}")),
        }
        self.expect("eventfd drained", &[]);
    }
}

fn pipe() -> (OwnedFd, OwnedFd) {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_NONBLOCK).expect("pipe")
}

fn main() {
    let mut args = std::env::args().skip(1);
    let report = args.next().expect("usage: wl_epoll REPORT [closed]");
    let mode = args.next();
    let closed = mode.as_deref() == Some("closed");
    let fork = mode.as_deref() == Some("fork");
    let ep = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).expect("epoll");
    let (a, b) = (pipe(), pipe());
    let efd = EventFd::from_value_and_flags(0, EfdFlags::EFD_NONBLOCK).expect("eventfd");
    ep.add(&a.0, EpollEvent::new(EpollFlags::EPOLLIN, A))
        .expect("add A");
    ep.add(
        &b.0,
        EpollEvent::new(EpollFlags::EPOLLIN | EpollFlags::EPOLLET, B),
    )
    .expect("add B");
    ep.add(efd.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, E))
        .expect("add eventfd");
    let mut run = Run {
        report,
        ep,
        a,
        b,
        efd,
        a_registered: true,
    };
    let _keep = closed.then(|| {
        let c = pipe();
        run.ep
            .add(&c.0, EpollEvent::new(EpollFlags::EPOLLIN, 0xc4))
            .expect("add C");
        let tfd = c.0.as_raw_fd();
        let dup = c.0.try_clone().expect("dup");
        drop(c.0);
        run.line(&format!("closed tfd={tfd}"));
        (dup, c.1)
    });
    if fork {
        let child = criu_tests::workload::fork_child(|| {
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        run.line(&format!("child={child}"));
    }
    let del = format!("{}.del", run.report);
    for round in 1u64.. {
        run.round();
        if run.a_registered && std::path::Path::new(&del).exists() {
            if let Err(e) = run.ep.delete(&run.a.0) {
                run.fail(format!("del EPOLL_CTL_DEL of pipe A: {e}"));
            }
            run.a_registered = false;
            run.line("del ok");
        }
        run.line(&format!("round={round} ok"));
        std::thread::sleep(Duration::from_millis(20));
    }
}
