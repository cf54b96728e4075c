//! Restore workload: proves it continued after dump + restore.
//!
//! It leads its own session (so restore recreates it without --shell-job), keeps a patterned
//! buffer and counters in memory, and runs N-1 extra threads: each spins on floating-point
//! work (values live in SSE registers inside the loop, so a lost FPU state shows up as a
//! wrong result) and bumps its counter. Every 50 ms the main thread appends one line to the
//! report file:
//!   `tick <n> pid=<pid> mem=<ok|bad> fp=<ok|bad> c=<c0>,<c1>,... pipe=<ok|bad|none> rd=<n>`
//! The first line is `ready <pid> tids=<t0>,<t1>,...`. stdin/stdout/stderr are not used
//! (start it with them on /dev/null), so every fd it has is a regular file.
//!
//! With a third argument `pipe` it also keeps a non-blocking pipe holding "pipe-data": each
//! tick reads the 9 bytes back, checks and rewrites them. It also runs a reader thread that
//! sits blocked in read(2) on a second pipe (an interrupted, restartable syscall at dump
//! time) and counts the bytes the main thread sends each tick (`rd`).
//!
//! With `shm` (alone or as `pipe,shm`) it maps 1 MiB of MAP_SHARED|MAP_ANONYMOUS memory,
//! fills its first 256 KiB with a pattern and checks pattern and zeros each tick (`shm`).
//!
//! With `nosid` it stays in the session it was started in (a shell job).
//!
//! Usage: wl_counter REPORT_FILE THREADS [comma-separated modes: pipe, shm, nosid]

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

const PIPE_DATA: &[u8] = b"pipe-data";
const WORDS: usize = 1 << 19; // 4 MiB

fn pattern(i: usize) -> u64 {
    (i as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .rotate_left(17)
}

/// Floating-point work whose intermediate values stay in registers (no calls in the loop).
fn fp_burst(seed: f64) -> f64 {
    let mut a = seed;
    let mut b = 1.0f64;
    let mut c = 0.5f64;
    for i in 0..200_000u32 {
        let x = f64::from(i & 1023);
        a = a * 0.999_999_9 + x * 1e-6;
        b = b * 1.000_000_1 - c * 1e-9;
        c = c + a * 1e-12 - b * 1e-12;
    }
    a + b * 3.0 + c * 7.0
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(report), Some(threads)) = (
        args.get(1),
        args.get(2).and_then(|s| s.parse::<usize>().ok()),
    ) else {
        eprintln!("usage: wl_counter REPORT_FILE THREADS");
        std::process::exit(2);
    };
    let modes: Vec<&str> = args
        .get(3)
        .map(|m| m.split(',').collect())
        .unwrap_or_default();
    if !modes.contains(&"nosid") {
        // Ignore failure: already a session leader when started that way.
        let _ = nix::unistd::setsid();
    }
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(report)
        .expect("open report");

    let shm = modes.contains(&"shm").then(SharedMem::new);
    let pipe = modes.contains(&"pipe").then(|| {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_NONBLOCK).expect("pipe");
        nix::unistd::write(&w, PIPE_DATA).expect("fill pipe");
        (r, w)
    });
    let read_count = Arc::new(AtomicU64::new(0));
    let feed = pipe.as_ref().map(|_| {
        let (r, w) = nix::unistd::pipe().expect("pipe");
        let count = read_count.clone();
        std::thread::spawn(move || {
            let mut b = [0u8; 1];
            while let Ok(1) = nix::unistd::read(&r, &mut b) {
                count.fetch_add(1, Ordering::SeqCst);
            }
        });
        w
    });
    let mem: Vec<u64> = (0..WORDS).map(pattern).collect();
    let fp_bad = Arc::new(AtomicBool::new(false));
    let counters: Arc<Vec<AtomicU64>> =
        Arc::new((0..threads.max(1)).map(|_| AtomicU64::new(0)).collect());
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    for t in 1..threads.max(1) {
        let fp_bad = fp_bad.clone();
        let counters = counters.clone();
        let tid_tx = tid_tx.clone();
        std::thread::spawn(move || {
            tid_tx
                .send(nix::unistd::gettid().as_raw())
                .expect("send tid");
            let seed = std::hint::black_box(t as f64);
            let want = fp_burst(seed);
            loop {
                let got = fp_burst(std::hint::black_box(seed));
                if got.to_bits() != want.to_bits() {
                    fp_bad.store(true, Ordering::SeqCst);
                }
                counters[t].fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(5));
            }
        });
    }
    drop(tid_tx);
    let mut tids = vec![nix::unistd::gettid().as_raw()];
    tids.extend(tid_rx.iter().take(threads.saturating_sub(1)));
    let pid = std::process::id();
    let list = |v: &[i32]| {
        v.iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    writeln!(out, "ready {pid} tids={}", list(&tids)).expect("write");

    let mut n: u64 = 0;
    loop {
        std::thread::sleep(Duration::from_millis(50));
        n += 1;
        counters[0].fetch_add(1, Ordering::SeqCst);
        let mem_ok = mem.iter().enumerate().all(|(i, w)| *w == pattern(i));
        let c: Vec<String> = counters
            .iter()
            .map(|c| c.load(Ordering::SeqCst).to_string())
            .collect();
        let pipe_state = match &pipe {
            None => "none",
            Some((r, w)) => {
                let mut buf = [0u8; 16];
                match nix::unistd::read(r, &mut buf) {
                    Ok(9) if &buf[..9] == PIPE_DATA => {
                        let _ = nix::unistd::write(w, PIPE_DATA);
                        "ok"
                    }
                    _ => "bad",
                }
            }
        };
        if let Some(w) = &feed {
            let _ = nix::unistd::write(w, b"x");
        }
        let line = format!(
            "tick {n} pid={pid} mem={} fp={} c={} pipe={pipe_state} rd={} shm={}\n",
            if mem_ok { "ok" } else { "bad" },
            if fp_bad.load(Ordering::SeqCst) {
                "bad"
            } else {
                "ok"
            },
            c.join(","),
            read_count.load(Ordering::SeqCst),
            match &shm {
                None => "none",
                Some(m) if m.check() => "ok",
                Some(_) => "bad",
            }
        );
        if out.write_all(line.as_bytes()).is_err() {
            std::process::exit(3);
        }
    }
}

/// 1 MiB of anonymous shared memory, patterned in its first quarter.
struct SharedMem {
    base: *mut u8,
}

const SHM_SIZE: usize = 1 << 20;
const SHM_FILLED: usize = SHM_SIZE / 4;

impl SharedMem {
    fn new() -> SharedMem {
        // SAFETY: a fresh anonymous mapping; nothing else refers to that range.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                SHM_SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED, "mmap");
        let mut m = SharedMem { base: p.cast() };
        m.bytes_mut()[..SHM_FILLED]
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = (i.wrapping_mul(131) ^ (i >> 9)) as u8);
        m
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: the mapping is SHM_SIZE bytes and lives as long as the process.
        unsafe { std::slice::from_raw_parts(self.base, SHM_SIZE) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`; `&mut self` makes this the only view.
        unsafe { std::slice::from_raw_parts_mut(self.base, SHM_SIZE) }
    }

    fn check(&self) -> bool {
        let b = self.bytes();
        b[..SHM_FILLED]
            .iter()
            .enumerate()
            .all(|(i, v)| *v == (i.wrapping_mul(131) ^ (i >> 9)) as u8)
            && b[SHM_FILLED..].iter().all(|v| *v == 0)
    }
}
