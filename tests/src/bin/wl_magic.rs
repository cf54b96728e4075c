//! Plugin hook workload: holds a 64-bit value in its heap and reports it, so that a plugin
//! can read it at dump and overwrite it at restore.
//!
//! It leads its own session (restorable without --shell-job) and appends to the report file:
//! first `ready <pid> addr=<hex address> value=<hex>`, then every 50 ms
//! `tick <n> value=<hex>` with the value currently at that address.
//! stdin/stdout/stderr are not used (start it with them on /dev/null).
//!
//! Usage: wl_magic REPORT_FILE

use std::io::Write;
use std::time::Duration;

/// The value the test's plugin expects to find at dump.
const MAGIC: u64 = 0x0c0f_fee0_dead_beef;

fn main() {
    let Some(report) = std::env::args().nth(1) else {
        eprintln!("usage: wl_magic REPORT_FILE");
        std::process::exit(2);
    };
    let _ = nix::unistd::setsid();
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(report)
        .expect("open report");
    let cell: &'static mut u64 = Box::leak(Box::new(MAGIC));
    let addr = std::ptr::from_mut(cell);
    let read = || {
        // SAFETY: `addr` points to the leaked box, alive for the whole program; volatile
        // because another process writes it behind the compiler's back.
        unsafe { std::ptr::read_volatile(addr) }
    };
    writeln!(
        out,
        "ready {} addr={:x} value={:x}",
        std::process::id(),
        addr as usize,
        read()
    )
    .expect("write");
    let mut n: u64 = 0;
    loop {
        std::thread::sleep(Duration::from_millis(50));
        n += 1;
        writeln!(out, "tick {n} value={:x}", read()).expect("write");
    }
}
