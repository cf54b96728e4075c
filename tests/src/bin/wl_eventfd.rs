//! Eventfd workload: checks, every 50 ms, that its two eventfds still behave as created.
//! - `sem`: EFD_SEMAPHORE | EFD_NONBLOCK, counter 3: a read takes 1 (not the whole counter);
//!   the 1 is written back.
//! - `plain`: EFD_NONBLOCK, counter 7: a read takes 7, written back.
//!
//! It leads its own session (a restore needs no --shell-job). Report lines:
//!   `ready <pid> sem=<fd> plain=<fd>` first, then `tick <n> sem=<ok|bad:..> plain=<ok|bad:..>`.
//! Usage: wl_eventfd REPORT_FILE

use std::io::Write;
use std::os::fd::AsRawFd;

use nix::sys::eventfd::{EfdFlags, EventFd};

/// Reads `fd` once, expecting `want`, and writes it back so the counter stays the same.
fn check(fd: &EventFd, want: u64) -> String {
    match fd.read() {
        Ok(got) if got == want => match fd.write(got) {
            Ok(_) => "ok".into(),
            Err(e) => format!("bad:write-{e}"),
        },
        Ok(got) => {
            let _ = fd.write(got);
            format!("bad:read-{got}")
        }
        Err(e) => format!("bad:read-{e}"),
    }
}

fn main() {
    let report = std::env::args()
        .nth(1)
        .expect("usage: wl_eventfd REPORT_FILE");
    let _ = nix::unistd::setsid();
    let flags = EfdFlags::EFD_NONBLOCK;
    let sem = EventFd::from_value_and_flags(3, flags | EfdFlags::EFD_SEMAPHORE).expect("eventfd");
    let plain = EventFd::from_value_and_flags(7, flags).expect("eventfd");
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&report)
        .expect("report file");
    let (s, p) = (sem.as_raw_fd(), plain.as_raw_fd());
    writeln!(out, "ready {} sem={s} plain={p}", std::process::id()).expect("report");
    for n in 0u64.. {
        let line = format!("tick {n} sem={} plain={}", check(&sem, 1), check(&plain, 7));
        writeln!(out, "{line}").expect("report");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
