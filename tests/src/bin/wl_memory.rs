//! Workload for the dump tests: N MiB of patterned private memory (checksummed), three
//! threads spinning with FP values in registers, a pipe holding "pipe-data", an open file at
//! offset 5, a SIGUSR1 handler, a 1 s ITIMER_REAL, a POSIX timer (CLOCK_MONOTONIC, 30 s,
//! signal SIGRTMIN+1), SIGUSR2 blocked and pending twice (process-wide and for the main
//! thread), and 16 pages of data made PROT_NONE (words `NONE_TAG | i`). Prints "ready", then idles; on SIGUSR1 it checks all of it and prints "ok" or
//! "bad <what>" (also written to FILE.verdict, for after a restore).
//!
//! Usage: wl_memory MIB FILE

use std::io::{Seek, Write};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

static VERIFY: AtomicBool = AtomicBool::new(false);
static TICKS: AtomicU64 = AtomicU64::new(0);
static FP_BAD: AtomicBool = AtomicBool::new(false);

extern "C" fn on_usr1(_: libc::c_int) {
    VERIFY.store(true, Ordering::SeqCst);
}

extern "C" fn on_alrm(_: libc::c_int) {
    TICKS.fetch_add(1, Ordering::SeqCst);
}

/// The value of word `i` of the memory area.
pub fn pattern(i: u64) -> u64 {
    i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5555
}

fn checksum(m: &[u64]) -> u64 {
    m.iter().fold(0u64, |a, &w| a.rotate_left(5) ^ w)
}

/// Marker of the words of the PROT_NONE area.
pub const NONE_TAG: u64 = 0xC0FF_EE00_0000_0000;
const NONE_PAGES: usize = 16;

/// 16 pages written, then made inaccessible: dumping them needs /proc/PID/mem.
fn prot_none_area() -> usize {
    let len = NONE_PAGES * 4096;
    // SAFETY: a fresh private anonymous mapping; nothing else refers to that range.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED, "mmap");
    // SAFETY: the mapping is `len` bytes, readable and writable, u64-aligned.
    let words = unsafe { std::slice::from_raw_parts_mut(p.cast::<u64>(), len / 8) };
    for (i, w) in words.iter_mut().enumerate() {
        *w = NONE_TAG | i as u64;
    }
    // SAFETY: changes protection of our own mapping only.
    let r = unsafe { libc::mprotect(p, len, libc::PROT_NONE) };
    assert_eq!(r, 0, "mprotect");
    p as usize
}

/// Checks the PROT_NONE area (opening it for reading for the time of the check).
fn check_prot_none(addr: usize) -> Result<(), String> {
    let len = NONE_PAGES * 4096;
    let p = addr as *mut libc::c_void;
    // SAFETY: our own mapping of `len` bytes, made readable for the check.
    if unsafe { libc::mprotect(p, len, libc::PROT_READ) } != 0 {
        return Err("mprotect".into());
    }
    // SAFETY: readable now, `len` bytes, u64-aligned.
    let words = unsafe { std::slice::from_raw_parts(p.cast::<u64>(), len / 8) };
    let bad = words
        .iter()
        .enumerate()
        .position(|(i, &w)| w != NONE_TAG | i as u64);
    // SAFETY: back to PROT_NONE; the slice is not used after this.
    unsafe { libc::mprotect(p, len, libc::PROT_NONE) };
    match bad {
        Some(i) => Err(format!("PROT_NONE word {i}")),
        None => Ok(()),
    }
}

/// Keeps FP state live in registers: recomputes the same values and compares.
fn fp_thread(seed: f64) {
    let expect = (seed * 1.5).sqrt() + seed / 3.0;
    loop {
        let mut a = seed;
        let mut acc = 0.0f64;
        for _ in 0..1000 {
            a = std::hint::black_box(a);
            acc = (a * 1.5).sqrt() + a / 3.0;
        }
        if acc != expect {
            FP_BAD.store(true, Ordering::SeqCst);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn set_handler(sig: Signal, f: extern "C" fn(libc::c_int)) {
    let a = SigAction::new(SigHandler::Handler(f), SaFlags::SA_RESTART, SigSet::empty());
    // SAFETY: the handlers only store to atomics, which is async-signal-safe.
    unsafe {
        sigaction(sig, &a).expect("sigaction");
    }
}

/// A POSIX timer that never fires during a test (30 s), so its value is visible in a dump.
fn posix_timer() {
    // SAFETY: sigevent is plain data; zero is a valid start before filling the fields.
    let mut sev: libc::sigevent = unsafe { std::mem::zeroed() };
    sev.sigev_notify = libc::SIGEV_SIGNAL;
    sev.sigev_signo = libc::SIGRTMIN() + 1;
    let mut id: libc::timer_t = std::ptr::null_mut();
    // SAFETY: sev and id are valid for the call.
    let r = unsafe { libc::timer_create(libc::CLOCK_MONOTONIC, &mut sev, &mut id) };
    assert_eq!(r, 0, "timer_create");
    let t = libc::timespec {
        tv_sec: 30,
        tv_nsec: 0,
    };
    let spec = libc::itimerspec {
        it_interval: t,
        it_value: t,
    };
    // SAFETY: spec is valid; the old value pointer may be null.
    let r = unsafe { libc::timer_settime(id, 0, &spec, std::ptr::null_mut()) };
    assert_eq!(r, 0, "timer_settime");
}

fn verify(
    mem: &[u64],
    sum: u64,
    rd: &OwnedFd,
    wr: &OwnedFd,
    file: &mut std::fs::File,
) -> Result<(), String> {
    if checksum(mem) != sum {
        return Err("memory checksum".into());
    }
    if let Some(i) = mem
        .iter()
        .enumerate()
        .position(|(i, &w)| w != pattern(i as u64))
    {
        return Err(format!("memory word {i}"));
    }
    if FP_BAD.load(Ordering::SeqCst) {
        return Err("fp registers".into());
    }
    let mut buf = [0u8; 16];
    let n = nix::unistd::read(rd, &mut buf).map_err(|e| format!("pipe read {e}"))?;
    if &buf[..n] != b"pipe-data" {
        return Err(format!("pipe data {:?}", &buf[..n]));
    }
    nix::unistd::write(wr, b"pipe-data").map_err(|e| format!("pipe write {e}"))?;
    let pos = file
        .stream_position()
        .map_err(|e| format!("file pos {e}"))?;
    if pos != 5 {
        return Err(format!("file position {pos}"));
    }
    if TICKS.load(Ordering::SeqCst) == 0 {
        return Err("itimer never fired".into());
    }
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigpending fills the set we pass.
    if unsafe { libc::sigpending(set.as_mut_ptr()) } != 0 {
        return Err("sigpending".into());
    }
    // SAFETY: initialised by the successful sigpending above; sigismember only reads it.
    let usr2_pending = unsafe { libc::sigismember(set.as_ptr(), libc::SIGUSR2) } == 1;
    if !usr2_pending {
        return Err("SIGUSR2 no longer pending".into());
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mib: u64 = args
        .get(1)
        .and_then(|s| s.parse().ok())
        .expect("usage: wl_memory MIB FILE");
    let path = args.get(2).expect("usage: wl_memory MIB FILE");
    let mem: Vec<u64> = (0..mib * 1024 * 1024 / 8).map(pattern).collect();
    let sum = checksum(&mem);
    let none = prot_none_area();

    let (rd, wr) = nix::unistd::pipe().expect("pipe");
    nix::unistd::write(&wr, b"pipe-data").expect("pipe write");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .expect("open file");
    file.write_all(b"hello").expect("write file");

    set_handler(Signal::SIGUSR1, on_usr1);
    set_handler(Signal::SIGALRM, on_alrm);
    let one = libc::timeval {
        tv_sec: 1,
        tv_usec: 0,
    };
    let it = libc::itimerval {
        it_interval: one,
        it_value: one,
    };
    // SAFETY: setitimer reads the itimerval we pass; the old value pointer may be null.
    let r = unsafe { libc::setitimer(libc::ITIMER_REAL, &it, std::ptr::null_mut()) };
    assert_eq!(r, 0, "setitimer");

    // SIGUSR2 blocked in every thread (threads inherit the mask), then queued twice.
    let mut usr2 = SigSet::empty();
    usr2.add(Signal::SIGUSR2);
    usr2.thread_block().expect("block SIGUSR2");
    nix::sys::signal::kill(nix::unistd::getpid(), Signal::SIGUSR2).expect("kill");
    // SAFETY: signals our own thread.
    let r = unsafe { libc::pthread_kill(libc::pthread_self(), libc::SIGUSR2) };
    assert_eq!(r, 0, "pthread_kill");
    posix_timer();

    for seed in [2.0f64, 7.25, 1e6] {
        std::thread::spawn(move || fp_thread(seed));
    }
    std::thread::sleep(Duration::from_millis(50));
    println!("ready");
    std::io::stdout().flush().expect("flush");
    loop {
        std::thread::sleep(Duration::from_millis(20));
        if VERIFY.swap(false, Ordering::SeqCst) {
            let verdict =
                match verify(&mem, sum, &rd, &wr, &mut file).and_then(|()| check_prot_none(none)) {
                    Ok(()) => "ok".to_string(),
                    Err(what) => format!("bad {what}"),
                };
            // Also in FILE.verdict: after a restore stdout may lead nowhere.
            let _ = std::fs::write(format!("{path}.verdict"), format!("{verdict}\n"));
            println!("{verdict}");
            std::io::stdout().flush().expect("flush");
        }
    }
}
