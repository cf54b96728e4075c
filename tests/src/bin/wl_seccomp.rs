//! Workload with seccomp filters: installs two classic-BPF filters (allow-all, then one
//! making getpgid(2) fail with errno 42), starts a second thread (which inherits both),
//! prints "ready" and idles. On SIGUSR1 it checks the filters still act (getpgid fails with
//! 42 in both threads) and prints "ok" or "bad <what>" (also written to the file named by
//! its optional argument, for after a restore).

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;

static VERIFY: AtomicBool = AtomicBool::new(false);
static THREAD_ERRNO: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_usr1(_: libc::c_int) {
    VERIFY.store(true, Ordering::SeqCst);
}

const RET_ALLOW: u32 = 0x7fff_0000;
const RET_ERRNO: u32 = 0x0005_0000;

fn ins(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

fn install(prog: &mut [libc::sock_filter]) {
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_mut_ptr(),
    };
    // SAFETY: fprog points at `prog`, alive for the call; the kernel copies it.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &fprog as *const libc::sock_fprog,
        )
    };
    assert_eq!(r, 0, "seccomp: {}", std::io::Error::last_os_error());
}

fn getpgid_errno() -> i32 {
    // SAFETY: plain syscall without pointers.
    let r = unsafe { libc::syscall(libc::SYS_getpgid, 0) };
    if r < 0 {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
    } else {
        0
    }
}

fn main() {
    nix::sys::prctl::set_no_new_privs().expect("no_new_privs");
    const LD_W_ABS: u16 = 0x20;
    const JEQ_K: u16 = 0x15;
    const RET_K: u16 = 0x06;
    install(&mut [ins(RET_K, 0, 0, RET_ALLOW)]);
    install(&mut [
        ins(LD_W_ABS, 0, 0, 0), // seccomp_data.nr
        ins(JEQ_K, 0, 1, libc::SYS_getpgid as u32),
        ins(RET_K, 0, 0, RET_ERRNO | 42),
        ins(RET_K, 0, 0, RET_ALLOW),
    ]);
    let action = nix::sys::signal::SigAction::new(
        nix::sys::signal::SigHandler::Handler(on_usr1),
        nix::sys::signal::SaFlags::SA_RESTART,
        nix::sys::signal::SigSet::empty(),
    );
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe { nix::sys::signal::sigaction(nix::sys::signal::Signal::SIGUSR1, &action) }
        .expect("sigaction");
    std::thread::spawn(|| {
        loop {
            THREAD_ERRNO.store(getpgid_errno(), Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    std::thread::sleep(Duration::from_millis(50));
    println!("ready");
    std::io::stdout().flush().expect("flush");
    loop {
        std::thread::sleep(Duration::from_millis(20));
        if VERIFY.swap(false, Ordering::SeqCst) {
            let main = getpgid_errno();
            let thread = THREAD_ERRNO.load(Ordering::SeqCst);
            let verdict = if main == 42 && thread == 42 {
                "ok".to_string()
            } else {
                format!("bad getpgid errno main {main} thread {thread}")
            };
            if let Some(f) = std::env::args().nth(1) {
                let _ = std::fs::write(f, format!("{verdict}\n"));
            }
            println!("{verdict}");
            std::io::stdout().flush().expect("flush");
        }
    }
}
