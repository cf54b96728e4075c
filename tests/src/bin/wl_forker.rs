//! Workload whose children come and go: N threads each keep running `/bin/true` and
//! reaping it. Prints "ready"; on SIGUSR1 prints "ok <reaped>".
//!
//! Usage: wl_forker N

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

static VERIFY: AtomicBool = AtomicBool::new(false);
static REAPED: AtomicU64 = AtomicU64::new(0);

extern "C" fn on_usr1(_: libc::c_int) {
    VERIFY.store(true, Ordering::SeqCst);
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("usage: wl_forker N");
    let action = nix::sys::signal::SigAction::new(
        nix::sys::signal::SigHandler::Handler(on_usr1),
        nix::sys::signal::SaFlags::SA_RESTART,
        nix::sys::signal::SigSet::empty(),
    );
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe { nix::sys::signal::sigaction(nix::sys::signal::Signal::SIGUSR1, &action) }
        .expect("sigaction");
    for _ in 0..n {
        std::thread::spawn(|| {
            loop {
                // A dump may interrupt the wait; only count children really reaped.
                if std::process::Command::new("/bin/true").status().is_ok() {
                    REAPED.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
    }
    std::thread::sleep(Duration::from_millis(20));
    println!("ready");
    std::io::stdout().flush().expect("flush");
    loop {
        std::thread::sleep(Duration::from_millis(10));
        if VERIFY.swap(false, Ordering::SeqCst) {
            println!("ok {}", REAPED.load(Ordering::SeqCst));
            std::io::stdout().flush().expect("flush");
        }
    }
}
