//! Workload with anonymous shared memory: maps 1 MiB MAP_SHARED|MAP_ANONYMOUS, writes a
//! pattern into its first 256 KiB (the rest stays a hole), prints "ready" and idles. On
//! SIGUSR1 it checks the pattern and the untouched zeros and prints "ok" or "bad <what>"
//! (also written to the file named by its optional argument, for after a restore).

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static VERIFY: AtomicBool = AtomicBool::new(false);

extern "C" fn on_usr1(_: libc::c_int) {
    VERIFY.store(true, Ordering::SeqCst);
}

const SIZE: usize = 1 << 20;
const FILLED: usize = 256 << 10;

/// Byte `i` of the pattern.
fn pattern(i: usize) -> u8 {
    (i.wrapping_mul(131) ^ (i >> 9)) as u8
}

fn main() {
    // SAFETY: a fresh anonymous mapping; nothing else refers to that range.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED, "mmap");
    // SAFETY: the mapping is SIZE bytes, readable and writable, and lives until exit.
    let mem: &mut [u8] = unsafe { std::slice::from_raw_parts_mut(p.cast::<u8>(), SIZE) };
    for (i, b) in mem[..FILLED].iter_mut().enumerate() {
        *b = pattern(i);
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
        std::thread::sleep(Duration::from_millis(20));
        if VERIFY.swap(false, Ordering::SeqCst) {
            let bad = mem[..FILLED]
                .iter()
                .enumerate()
                .position(|(i, &b)| b != pattern(i))
                .map(|i| format!("byte {i}"))
                .or_else(|| {
                    mem[FILLED..]
                        .iter()
                        .any(|&b| b != 0)
                        .then(|| "hole".to_string())
                });
            let verdict = match bad {
                None => "ok".to_string(),
                Some(w) => format!("bad {w}"),
            };
            if let Some(f) = std::env::args().nth(1) {
                let _ = std::fs::write(f, format!("{verdict}\n"));
            }
            println!("{verdict}");
            std::io::stdout().flush().expect("flush");
        }
    }
}
