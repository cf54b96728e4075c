//! An io_uring ring driven through the `io-uring` crate, checked by the workload itself.
//!
//! Usage: wl_io_uring REPORT MODE (MODE: plain | sqpoll), or wl_io_uring rings N (the
//! io_uring_rings bench: N rings of 8 entries, 64 NOPs through each, `ready` on stdout,
//! then idle). Before the dump: ROUNDS rounds of
//! a file write + read, a pipe write + read and a write through a registered file (slot 0,
//! the same file), each completion counted and each byte checked; then two NOPs completed
//! and left unreaped (user_data 101, 102). Writes `ready <pid>` to REPORT and waits for
//! REPORT.go. After it: the two completions are still there, more rounds work on the same
//! ring, the registered file included. Writes `ok <submitted> <completed>` or
//! `bad <what>`, then idles until killed.

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use io_uring::{IoUring, cqueue, opcode, squeue, types};

const ROUNDS: u32 = 300;

struct Work {
    ring: IoUring,
    file: std::fs::File,
    pipe: (OwnedFd, OwnedFd),
    submitted: u64,
    completed: u64,
    report: String,
}

impl Work {
    fn say(&self, line: &str) {
        let mut out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.report)
            .expect("report file");
        writeln!(out, "{line}").expect("report");
    }

    fn bad(&self, what: &str) -> ! {
        self.say(&format!("bad {what}"));
        loop {
            std::thread::sleep(Duration::from_secs(60));
        }
    }

    /// Submits `entries` and waits for their completions, checking each one's result.
    fn run(&mut self, entries: &[squeue::Entry], want: &[(u64, i32)]) {
        // One borrow of the submission queue for the whole batch: the crate publishes the
        // tail when that borrow ends, and an SQPOLL thread would otherwise take a linked
        // write alone, cutting its link before the read that follows is visible.
        let pushed = {
            let mut sq = self.ring.submission();
            // SAFETY: every buffer an entry points to lives until its completion is reaped
            // below, before this function returns.
            unsafe { sq.push_multiple(entries) }
        };
        if pushed.is_err() {
            self.bad("submission queue full");
        }
        if let Err(e) = self.ring.submit_and_wait(want.len()) {
            self.bad(&format!("submit_and_wait: {e}"));
        }
        self.submitted += entries.len() as u64;
        let got: Vec<cqueue::Entry> = self.ring.completion().take(want.len()).collect();
        if got.len() != want.len() {
            self.bad(&format!("{} completions of {}", got.len(), want.len()));
        }
        for c in got {
            if !want.contains(&(c.user_data(), c.result())) {
                self.bad(&format!(
                    "completion {} result {}",
                    c.user_data(),
                    c.result()
                ));
            }
            self.completed += 1;
        }
    }

    fn round(&mut self, k: u32) {
        let out = format!("round {k} of the crate's ring");
        let len = out.len() as u32;
        let res = len as i32;
        let off = u64::from(k % 16) * 64;
        let fd = types::Fd(self.file.as_raw_fd());
        let mut back = vec![0u8; out.len()];
        let entries = [
            opcode::Write::new(fd, out.as_ptr(), len)
                .offset(off)
                .build()
                .flags(squeue::Flags::IO_LINK)
                .user_data(1),
            opcode::Read::new(fd, back.as_mut_ptr(), len)
                .offset(off)
                .build()
                .user_data(2),
        ];
        self.run(&entries, &[(1, res), (2, res)]);
        if back != out.as_bytes() {
            self.bad(&format!("file data round {k}"));
        }
        let mut piped = vec![0u8; out.len()];
        let entries = [
            opcode::Write::new(types::Fd(self.pipe.1.as_raw_fd()), out.as_ptr(), len)
                .build()
                .flags(squeue::Flags::IO_LINK)
                .user_data(3),
            opcode::Read::new(types::Fd(self.pipe.0.as_raw_fd()), piped.as_mut_ptr(), len)
                .build()
                .user_data(4),
        ];
        self.run(&entries, &[(3, res), (4, res)]);
        if piped != out.as_bytes() {
            self.bad(&format!("pipe data round {k}"));
        }
        // The registered file (slot 0), past the plain rounds' offsets.
        let mut fixed = vec![0u8; out.len()];
        let entries = [
            opcode::Write::new(types::Fixed(0), out.as_ptr(), len)
                .offset(4096 + off)
                .build()
                .flags(squeue::Flags::IO_LINK)
                .user_data(5),
            opcode::Read::new(types::Fixed(0), fixed.as_mut_ptr(), len)
                .offset(4096 + off)
                .build()
                .user_data(6),
        ];
        self.run(&entries, &[(5, res), (6, res)]);
        if fixed != out.as_bytes() {
            self.bad(&format!("registered file data round {k}"));
        }
    }
}

/// `rings N`: N rings with requests behind them, for the bench.
fn rings(n: usize) -> ! {
    let mut held = Vec::new();
    for _ in 0..n {
        let mut ring = IoUring::new(8).expect("io_uring setup");
        for _ in 0..8 {
            for id in 0..8 {
                let nop = opcode::Nop::new().build().user_data(id);
                // SAFETY: a NOP points to no memory.
                unsafe { ring.submission().push(&nop) }.expect("submission queue");
            }
            ring.submit_and_wait(8).expect("submit");
            assert_eq!(ring.completion().count(), 8, "completions");
        }
        held.push(ring);
    }
    println!("ready");
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("rings") {
        let n = std::env::args().nth(2).and_then(|n| n.parse().ok());
        rings(n.expect("usage: wl_io_uring rings N"));
    }
    let mut args = std::env::args().skip(1);
    let (Some(report), Some(mode)) = (args.next(), args.next()) else {
        eprintln!("usage: wl_io_uring REPORT plain|sqpoll");
        std::process::exit(2);
    };
    let ring = match mode.as_str() {
        "plain" => IoUring::new(8),
        "sqpoll" => IoUring::builder().setup_sqpoll(100).build(8),
        _ => {
            eprintln!("unknown mode {mode}");
            std::process::exit(2);
        }
    }
    .expect("io_uring setup");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(format!("{report}.data"))
        .expect("data file");
    let pipe = nix::unistd::pipe().expect("pipe");
    let mut w = Work {
        ring,
        file,
        pipe,
        submitted: 0,
        completed: 0,
        report,
    };
    if let Err(e) = w.ring.submitter().register_files(&[w.file.as_raw_fd()]) {
        w.bad(&format!("register_files: {e}"));
    }
    for k in 0..ROUNDS {
        w.round(k);
    }
    // Two completions left unreaped.
    for id in [101, 102] {
        let nop = opcode::Nop::new().build().user_data(id);
        // SAFETY: a NOP points to no memory.
        if unsafe { w.ring.submission().push(&nop) }.is_err() {
            w.bad("submission queue full");
        }
    }
    if w.ring.submit_and_wait(2).is_err() {
        w.bad("nops");
    }
    w.submitted += 2;
    w.say(&format!("ready {}", std::process::id()));
    let go = format!("{}.go", w.report);
    while !std::path::Path::new(&go).exists() {
        std::thread::sleep(Duration::from_millis(10));
    }
    let kept: Vec<(u64, i32)> = w
        .ring
        .completion()
        .map(|c| (c.user_data(), c.result()))
        .collect();
    if kept != [(101, 0), (102, 0)] {
        w.bad(&format!("kept completions {kept:?}"));
    }
    w.completed += 2;
    for k in 0..ROUNDS {
        w.round(ROUNDS + k);
    }
    w.say(&format!("ok {} {}", w.submitted, w.completed));
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}
