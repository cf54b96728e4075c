//! Restore workload: a pre-fork server. The root maps one MAP_SHARED anonymous page
//! (word 0: total tokens handled, words 1..=8: tokens handled by each worker), makes a pipe
//! and forks 8 workers that share its read end. The root writes a one-byte token every
//! millisecond; a worker that reads one bumps the total and its own word, then "works" 5 ms.
//! Every 200 tokens the root stops writing, lets the workers drain the pipe and appends
//! `check total=<t> sum=<sum of worker words> w=<w1>,<w2>,...` to the report.
//!
//! Usage: wl_tree_prefork REPORT_FILE

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nix::unistd::{ForkResult, fork, read, setsid, write};

const WORKERS: usize = 8;

fn main() {
    let Some(report) = std::env::args().nth(1) else {
        eprintln!("usage: wl_tree_prefork REPORT_FILE");
        std::process::exit(2);
    };
    let _ = setsid();
    // SAFETY: a fresh anonymous shared mapping; no existing memory is affected.
    let page = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(page, libc::MAP_FAILED, "mmap");
    // SAFETY: the page is 4096 bytes, aligned, zeroed, and lives as long as the process;
    // every access goes through atomics.
    let words: &[AtomicU64] =
        unsafe { std::slice::from_raw_parts(page.cast::<AtomicU64>(), WORKERS + 1) };
    let (r, w) = nix::unistd::pipe().expect("pipe");
    for i in 1..=WORKERS {
        // SAFETY: single-threaded program; the child only runs the loop below.
        if let ForkResult::Child = unsafe { fork() }.expect("fork") {
            drop(w);
            let mut b = [0u8; 1];
            loop {
                match read(&r, &mut b) {
                    Ok(1) => {
                        words[0].fetch_add(1, Ordering::SeqCst);
                        words[i].fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Ok(_) => std::process::exit(0),
                    Err(nix::errno::Errno::EINTR) => {}
                    Err(_) => std::process::exit(3),
                }
            }
        }
    }
    drop(r);
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&report)
        .expect("open report");
    let mut sent = 0u64;
    loop {
        if write(&w, b"t").is_ok() {
            sent += 1;
        }
        std::thread::sleep(Duration::from_millis(1));
        if sent.is_multiple_of(200) {
            // Quiescent point: every token written has been counted.
            while words[0].load(Ordering::SeqCst) < sent {
                std::thread::sleep(Duration::from_millis(2));
            }
            std::thread::sleep(Duration::from_millis(10));
            let each: Vec<u64> = words[1..]
                .iter()
                .map(|a| a.load(Ordering::SeqCst))
                .collect();
            let list: Vec<String> = each.iter().map(u64::to_string).collect();
            let _ = writeln!(
                out,
                "check total={} sum={} w={}",
                words[0].load(Ordering::SeqCst),
                each.iter().sum::<u64>(),
                list.join(",")
            );
        }
    }
}
