//! Plugin hook workload: holds a 64-bit value in its heap and reports it, so that a plugin
//! can read it at dump and overwrite it at restore.
//!
//! It leads its own session (restorable without --shell-job) and appends to the report file:
//! first `ready <pid> addr=<hex address> vma=<hex address> value=<hex>`, then every 50 ms
//! `tick <n> vma=<ok|bad> value=<hex>` with the value currently at that address.
//! `vma` is a VMA of two private anonymous pages (between two PROT_NONE guard pages, so it
//! never merges with a neighbour; named `[anon:hooktest]` where the kernel has
//! CONFIG_ANON_VMA_NAME), filled with a pattern that each tick checks: a plugin claims that
//! area and carries its contents itself.
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
    let area = named_area();
    let cell: &'static mut u64 = Box::leak(Box::new(MAGIC));
    let addr = std::ptr::from_mut(cell);
    let read = || {
        // SAFETY: `addr` points to the leaked box, alive for the whole program; volatile
        // because another process writes it behind the compiler's back.
        unsafe { std::ptr::read_volatile(addr) }
    };
    writeln!(
        out,
        "ready {} addr={:x} vma={:x} value={:x}",
        std::process::id(),
        addr as usize,
        area.as_ptr() as usize,
        read()
    )
    .expect("write");
    let mut n: u64 = 0;
    loop {
        std::thread::sleep(Duration::from_millis(50));
        n += 1;
        let ok = area.iter().enumerate().all(|(i, b)| *b == pattern(i));
        let vma = if ok { "ok" } else { "bad" };
        writeln!(out, "tick {n} vma={vma} value={:x}", read()).expect("write");
    }
}

const AREA: usize = 2 * 4096;

fn pattern(i: usize) -> u8 {
    (i.wrapping_mul(31) ^ (i >> 8)) as u8
}

/// Two pages of private anonymous memory, a VMA of their own, holding [`pattern`].
fn named_area() -> &'static [u8] {
    // SAFETY: a fresh private anonymous mapping of four pages, never unmapped; the slice
    // covers the two middle ones, which nothing else aliases.
    let area = unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            AREA + 2 * 4096,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert!(p != libc::MAP_FAILED, "mmap");
        let mid = p.cast::<u8>().add(4096);
        let r = libc::mprotect(mid.cast(), AREA, libc::PROT_READ | libc::PROT_WRITE);
        assert_eq!(r, 0, "mprotect");
        std::slice::from_raw_parts_mut(mid, AREA)
    };
    for (i, b) in area.iter_mut().enumerate() {
        *b = pattern(i);
    }
    // PR_SET_VMA (0x53564d41), PR_SET_VMA_ANON_NAME (0): `[anon:hooktest]` in maps. Only a
    // label: kernels without CONFIG_ANON_VMA_NAME refuse it, and nothing depends on it.
    // SAFETY: plain prctl on our own mapping with a NUL-terminated name.
    let _ = unsafe {
        libc::prctl(
            0x5356_4d41,
            0,
            area.as_ptr() as libc::c_ulong,
            AREA as libc::c_ulong,
            c"hooktest".as_ptr(),
        )
    };
    area
}
