//! Workload for the plugin test: holds an eventfd (counter 42, O_NONBLOCK) and reports every
//! 50 ms what its fdinfo says, without consuming the counter:
//!   `ready <pid> fd=<n>` first, then `tick <n> fd=<n> count=<counter> nonblock=<0|1>`.
//! It leads its own session so that a restore needs no --shell-job.
//! Usage: eventfd_holder REPORT_FILE

use std::io::Write;
use std::os::fd::AsRawFd;

use nix::sys::eventfd::{EfdFlags, EventFd};

fn field<'a>(info: &'a str, key: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(str::trim)
}

fn main() {
    let report = std::env::args()
        .nth(1)
        .expect("usage: eventfd_holder REPORT_FILE");
    let _ = nix::unistd::setsid();
    let efd = EventFd::from_value_and_flags(5, EfdFlags::EFD_NONBLOCK).expect("eventfd");
    efd.write(37).expect("eventfd write");
    let fd = efd.as_raw_fd();
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&report)
        .expect("report file");
    writeln!(out, "ready {} fd={fd}", std::process::id()).expect("report");
    for n in 0u64.. {
        let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap_or_default();
        let count = field(&info, "eventfd-count")
            .and_then(|v| u64::from_str_radix(v, 16).ok())
            .map_or("none".to_string(), |c| c.to_string());
        let nonblock = field(&info, "flags")
            .and_then(|v| u32::from_str_radix(v, 8).ok())
            .map_or("none".to_string(), |f| {
                u8::from(f & 0o4000 != 0).to_string()
            });
        writeln!(out, "tick {n} fd={fd} count={count} nonblock={nonblock}").expect("report");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
