//! Restore workload: a tree of N small processes. Process i (the root is 0) forks processes
//! 2i+1 and 2i+2 while they are below N, then every process appends `tick <pid> <ppid>` to
//! the report once a second.
//!
//! Usage: wl_tree_many REPORT_FILE N

use std::io::Write;
use std::time::Duration;

use nix::unistd::{ForkResult, fork, getppid, setsid};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(report), Some(n)) = (
        args.get(1),
        args.get(2).and_then(|s| s.parse::<usize>().ok()),
    ) else {
        eprintln!("usage: wl_tree_many REPORT_FILE N");
        std::process::exit(2);
    };
    let _ = setsid();
    let mut me = 0usize;
    'up: loop {
        for k in [2 * me + 1, 2 * me + 2] {
            if k >= n {
                continue;
            }
            // SAFETY: single-threaded program; the child continues this same loop.
            if let ForkResult::Child = unsafe { fork() }.expect("fork") {
                me = k;
                continue 'up;
            }
        }
        break;
    }
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(report)
        .expect("open report");
    let pid = std::process::id();
    loop {
        // One write(2) per line: lines of many processes must not interleave.
        if out
            .write_all(format!("tick {pid} {}\n", getppid()).as_bytes())
            .is_err()
        {
            std::process::exit(3);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}
