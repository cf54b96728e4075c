//! Restore workload: a parent maps a memfd MAP_SHARED (and closes the fd: the mapping alone
//! keeps it), then forks WORKERS workers. Every 50 ms each increments its own counter slot
//! and checks the others': `tick <pid> <own count> ok` when every other counter moved since
//! its last check, `stale` otherwise, so only one inode shared by all after the restore
//! gives `ok` lines (and the counts go on from where they were).
//!
//! Once the file `<REPORT>.go` exists, worker 0 writes a token into a shared slot; every
//! other worker prints `seen <pid>` once it reads it: one write seen by all.
//!
//! Usage: wl_tree_memfd REPORT_FILE

use std::io::Write;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criu_tests::workload::fork_child;
use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::sys::mman::{MapFlags, ProtFlags, mmap};

const WORKERS: usize = 4;
/// The slot worker 0 writes the token into.
const TOKEN_SLOT: usize = 8;
const TOKEN: u64 = 0x00c0_ffee_d00d_f00d;

fn worker(i: usize, slots: &[AtomicU64], report: &str) -> ! {
    let Ok(mut out) = std::fs::OpenOptions::new().append(true).open(report) else {
        std::process::exit(3);
    };
    let go = format!("{report}.go");
    let pid = std::process::id();
    let mut last = [u64::MAX; WORKERS];
    let mut seen = false;
    loop {
        let own = slots[i].fetch_add(1, Ordering::SeqCst) + 1;
        let mut moved = true;
        for (j, l) in last.iter_mut().enumerate() {
            if j == i {
                continue;
            }
            let now = slots[j].load(Ordering::SeqCst);
            moved &= *l != u64::MAX && now != *l;
            *l = now;
        }
        let word = if moved { "ok" } else { "stale" };
        let mut line = format!("tick {pid} {own} {word}\n");
        if i == 0 && std::path::Path::new(&go).exists() {
            slots[TOKEN_SLOT].store(TOKEN, Ordering::SeqCst);
        }
        if i != 0 && !seen && slots[TOKEN_SLOT].load(Ordering::SeqCst) == TOKEN {
            seen = true;
            line.push_str(&format!("seen {pid}\n"));
        }
        // One write(2) per batch of lines: lines of many processes must not interleave.
        if out.write_all(line.as_bytes()).is_err() {
            std::process::exit(3);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn main() {
    let Some(report) = std::env::args().nth(1) else {
        eprintln!("usage: wl_tree_memfd REPORT_FILE");
        std::process::exit(2);
    };
    let _ = nix::unistd::setsid();
    std::fs::write(&report, "").expect("report");
    let fd = memfd_create("tree-counters", MFdFlags::MFD_CLOEXEC).expect("memfd_create");
    nix::unistd::ftruncate(&fd, 4096).expect("ftruncate");
    let len = std::num::NonZeroUsize::new(4096).expect("length");
    // SAFETY: a fresh shared mapping of our own memfd, used only through the atomics below.
    let p = unsafe {
        mmap(
            None,
            len,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_SHARED,
            fd.as_fd(),
            0,
        )
    }
    .expect("mmap");
    // The mapping alone keeps the memfd alive (the usual way to use one).
    drop(fd);
    // SAFETY: the mapping is one page, page-aligned, and lives as long as the process.
    let slots: &[AtomicU64] =
        unsafe { std::slice::from_raw_parts(p.as_ptr().cast::<AtomicU64>(), 512) };
    let mut out = std::fs::OpenOptions::new()
        .append(true)
        .open(&report)
        .expect("report");
    for i in 0..WORKERS {
        let child = fork_child(|| worker(i, slots, &report));
        out.write_all(format!("worker {i} {child}\n").as_bytes())
            .expect("report");
    }
    loop {
        std::thread::sleep(Duration::from_millis(200));
    }
}
