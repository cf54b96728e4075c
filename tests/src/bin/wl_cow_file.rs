//! Restore workload: a private file mapping shared copy-on-write between a parent and its
//! child, as in CRIU's zdtm cow01. The parent writes a file of 64 pages, maps it
//! `MAP_PRIVATE` and rewrites pages 0-31 (they become anonymous copies), then forks. After
//! the fork the child rewrites pages 32-39 and the parent pages 40-47; pages 48-63 stay the
//! file's. The parent appends `map <ADDR> <CHILD PID>` to the report (the test compares the
//! physical pages of both); every 200 ms each process checks every page against what it
//! expects and appends `tick <pid> ok|bad`.
//!
//! Usage: wl_cow_file REPORT_FILE DATA_FILE

use std::io::Write;
use std::num::NonZeroUsize;
use std::os::fd::AsFd;
use std::time::Duration;

use nix::sys::mman::{MapFlags, ProtFlags, mmap};
use nix::unistd::{ForkResult, fork, setsid};

const PAGE: usize = 4096;
const PAGES: usize = 64;

/// What page `p` holds for `role` (0 parent, 1 child), one byte value per page.
fn expected(role: u8, p: usize) -> u8 {
    match p {
        0..32 => 0xa0 ^ p as u8,
        32..40 if role == 1 => 0x11,
        40..48 if role == 0 => 0x22,
        _ => p as u8,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, report, data] = &args[..] else {
        eprintln!("usage: wl_cow_file REPORT_FILE DATA_FILE");
        std::process::exit(2);
    };
    let _ = setsid();
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(data)
        .expect("create data file");
    for p in 0..PAGES {
        file.write_all(&[p as u8; PAGE]).expect("write data file");
    }
    let len = NonZeroUsize::new(PAGES * PAGE).expect("size");
    // SAFETY: a fresh mapping at an address the kernel picks; nothing else refers to it.
    let base = unsafe {
        mmap(
            None,
            len,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_PRIVATE,
            file.as_fd(),
            0,
        )
    }
    .expect("mmap");
    drop(file);
    // SAFETY: the mapping above, PAGES * PAGE bytes, readable and writable, kept for life.
    let mem = unsafe { std::slice::from_raw_parts_mut(base.as_ptr().cast::<u8>(), PAGES * PAGE) };
    let fill = |mem: &mut [u8], pages: std::ops::Range<usize>, role: u8| {
        for p in pages {
            mem[p * PAGE..(p + 1) * PAGE].fill(expected(role, p));
        }
    };
    fill(mem, 0..32, 0);
    // SAFETY: single-threaded program; the child continues below as a plain copy.
    let (role, child) = match unsafe { fork() }.expect("fork") {
        ForkResult::Child => (1u8, 0),
        ForkResult::Parent { child } => (0u8, child.as_raw()),
    };
    if role == 1 {
        fill(mem, 32..40, 1);
    } else {
        fill(mem, 40..48, 0);
    }
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(report)
        .expect("open report");
    let pid = std::process::id();
    if role == 0 {
        let line = format!("map {:x} {child}\n", base.as_ptr() as usize);
        out.write_all(line.as_bytes()).expect("write report");
    }
    loop {
        let ok = (0..PAGES).all(|p| {
            let want = expected(role, p);
            mem[p * PAGE..(p + 1) * PAGE].iter().all(|b| *b == want)
        });
        let word = if ok { "ok" } else { "bad" };
        // One write(2) per line: lines of both processes must not interleave.
        if out
            .write_all(format!("tick {pid} {word}\n").as_bytes())
            .is_err()
        {
            std::process::exit(3);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
