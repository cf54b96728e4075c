//! Restore workload: a parent and its child sharing a SysV shm segment (attached by the
//! parent before forking). Each increments its own counter in the segment every 50 ms and
//! checks the other's: `tick <pid> ok` when it moved since the last check, `tick <pid> stale`
//! otherwise, so only a segment still shared after the restore gives `ok` lines.
//! With `rmid`, the segment is removed (IPC_RMID) right after attaching.
//!
//! Usage: wl_tree_sysvshm REPORT_FILE [rmid]

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nix::unistd::{ForkResult, fork, setsid};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(report) = args.get(1) else {
        eprintln!("usage: wl_tree_sysvshm REPORT_FILE [rmid]");
        std::process::exit(2);
    };
    let _ = setsid();
    // SAFETY: plain SysV calls with integer arguments; the segment is 64 KiB, attached where
    // the kernel chooses, and only accessed through aligned atomics below.
    let (id, base) = unsafe {
        let id = libc::shmget(libc::IPC_PRIVATE, 65536, libc::IPC_CREAT | 0o600);
        if id < 0 {
            std::process::exit(4);
        }
        let p = libc::shmat(id, std::ptr::null(), 0);
        if p as isize == -1 {
            std::process::exit(5);
        }
        if args.get(2).is_some_and(|a| a == "rmid") {
            libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut());
        }
        (id, p as *const AtomicU64)
    };
    // SAFETY: the segment is 64 KiB, page-aligned and lives as long as the process.
    let counters: &[AtomicU64] = unsafe { std::slice::from_raw_parts(base, 2) };
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(report)
        .expect("open report");
    out.write_all(format!("shmid {id}\n").as_bytes())
        .expect("report");
    // SAFETY: single-threaded program; the child continues below as a plain copy.
    let me = match unsafe { fork() }.expect("fork") {
        ForkResult::Child => 1,
        ForkResult::Parent { .. } => 0,
    };
    let pid = std::process::id();
    let mut last = u64::MAX;
    loop {
        counters[me].fetch_add(1, Ordering::SeqCst);
        let other = counters[1 - me].load(Ordering::SeqCst);
        let word = if last != u64::MAX && other != last {
            "ok"
        } else {
            "stale"
        };
        last = other;
        // One write(2) per line: lines of both processes must not interleave.
        if out
            .write_all(format!("tick {pid} {word}\n").as_bytes())
            .is_err()
        {
            std::process::exit(3);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
