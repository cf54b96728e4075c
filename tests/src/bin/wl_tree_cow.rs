//! Restore workload: a parent with 256 MiB of private anonymous memory (a pattern written
//! before forking) and 4 children that mostly only read it, so all five share its pages
//! copy-on-write. After the fork the parent rewrites the first 64 KiB and fills a 16 MiB
//! area that was untouched (absent from the children), and child k rewrites 64 KiB at k MiB:
//! those pages differ between parent and children. Every 200 ms each process checks one
//! byte per page against what it expects and appends `tick <pid> ok|bad` to the report.
//!
//! Usage: wl_tree_cow REPORT_FILE

use std::io::Write;
use std::time::Duration;

use nix::unistd::{ForkResult, fork, setsid};

const SIZE: usize = 256 << 20;
const EXTRA: usize = 16 << 20;
const PATCH: usize = 64 << 10;

fn byte(i: usize) -> u8 {
    (i.wrapping_mul(31) ^ (i >> 12)) as u8
}

fn main() {
    let Some(report) = std::env::args().nth(1) else {
        eprintln!("usage: wl_tree_cow REPORT_FILE");
        std::process::exit(2);
    };
    let _ = setsid();
    let mut mem = vec![0u8; SIZE];
    for (i, b) in mem.iter_mut().enumerate() {
        *b = byte(i);
    }
    // Zeroed allocation: fresh pages, not present until written.
    let mut extra = vec![0u8; EXTRA];
    let mut role = 0usize;
    for k in 1..=4 {
        // SAFETY: single-threaded program; the child continues below as a plain copy.
        if let ForkResult::Child = unsafe { fork() }.expect("fork") {
            role = k;
            break;
        }
    }
    let patch = |role: usize, i: usize| -> u8 {
        let own = role << 20;
        if role == 0 && i < PATCH {
            0x55
        } else if role > 0 && (own..own + PATCH).contains(&i) {
            role as u8
        } else {
            0
        }
    };
    let own = if role == 0 { 0 } else { role << 20 };
    for (i, b) in mem.iter_mut().enumerate().skip(own).take(PATCH) {
        *b ^= patch(role, i);
    }
    let extra_byte = if role == 0 { 0xaa } else { 0 };
    if role == 0 {
        extra.iter_mut().for_each(|b| *b = extra_byte);
    }
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(report)
        .expect("open report");
    let pid = std::process::id();
    loop {
        let ok = (0..SIZE)
            .step_by(4096)
            .all(|i| mem[i] == byte(i) ^ patch(role, i))
            && extra.iter().step_by(4096).all(|b| *b == extra_byte);
        let word = if ok { "ok" } else { "bad" };
        // One write(2) per line: lines of many processes must not interleave.
        if out
            .write_all(format!("tick {pid} {word}\n").as_bytes())
            .is_err()
        {
            std::process::exit(3);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
