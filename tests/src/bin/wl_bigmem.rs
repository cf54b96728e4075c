//! Workload for the benchmark and big-memory tests: touches N MiB of private anonymous
//! memory with a pattern, prints "ready", then idles. On SIGUSR1 it re-checks every page
//! and writes "ok <pages>" or "bad <first bad page>" to the report file given as its second
//! argument, so it verifies its own memory after a restore.
//!
//! Usage: wl_bigmem MIB REPORT_FILE

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static VERIFY: AtomicBool = AtomicBool::new(false);

extern "C" fn on_usr1(_: libc::c_int) {
    VERIFY.store(true, Ordering::SeqCst);
}

const PAGE: usize = 4096;

fn word_for(page: usize, slot: usize) -> u64 {
    (page as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (slot as u64).wrapping_mul(31)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mib: usize = args
        .get(1)
        .and_then(|s| s.parse().ok())
        .expect("usage: wl_bigmem MIB REPORT");
    let report = args.get(2).expect("usage: wl_bigmem MIB REPORT").clone();
    let pages = mib * 256;
    // A Vec keeps this safe code: its buffer is private anonymous memory.
    let mut mem: Vec<u64> = vec![0; pages * PAGE / 8];
    for (i, chunk) in mem.chunks_mut(PAGE / 8).enumerate() {
        // Touch only a few words per page: the page is present either way, and the check
        // stays cheap.
        chunk[0] = word_for(i, 0);
        chunk[PAGE / 8 - 1] = word_for(i, 1);
    }
    let action = nix::sys::signal::SigAction::new(
        nix::sys::signal::SigHandler::Handler(on_usr1),
        nix::sys::signal::SaFlags::SA_RESTART,
        nix::sys::signal::SigSet::empty(),
    );
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe { nix::sys::signal::sigaction(nix::sys::signal::Signal::SIGUSR1, &action) }
        .expect("sigaction");
    println!("ready");
    std::io::stdout().flush().expect("flush");
    loop {
        std::thread::sleep(std::time::Duration::from_millis(5));
        if VERIFY.swap(false, Ordering::SeqCst) {
            let bad = mem.chunks(PAGE / 8).enumerate().find(|(i, chunk)| {
                chunk[0] != word_for(*i, 0) || chunk[PAGE / 8 - 1] != word_for(*i, 1)
            });
            let line = match bad {
                Some((i, _)) => format!("bad {i}\n"),
                None => format!("ok {pages}\n"),
            };
            std::fs::write(&report, line).expect("write report");
        }
    }
}
