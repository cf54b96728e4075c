//! Restore workload with kernel-side state to carry over: a SIGUSR1 handler run on a
//! sigaltstack, an armed ITIMER_REAL, POSIX timers with non-sequential ids, blocked masks, a shared pending SIGUSR2 and a
//! per-thread pending SIGTERM, thread names, umask, cwd, lowered rlimits. The test compares
//! /proc views before the dump and after the restore; on SIGUSR1 the workload itself checks
//! it runs on its alternate stack and that the itimer is still armed, and appends
//! `usr1 onstack=<0|1> itimer=<0|1>` to the report.
//!
//! With a third argument `seccomp` it first installs a seccomp filter making getpgid(2) fail
//! with errno 42 (both threads inherit it) and adds ` getpgid=<errno>` to the SIGUSR1 line.
//!
//! Usage: wl_state REPORT_FILE WORKDIR [seccomp]

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal, sigaction};

static ALT_LO: AtomicUsize = AtomicUsize::new(0);
static ALT_HI: AtomicUsize = AtomicUsize::new(0);
static ONSTACK: AtomicBool = AtomicBool::new(false);
static GOT_USR1: AtomicBool = AtomicBool::new(false);

extern "C" fn on_usr1(_: libc::c_int) {
    let here = 0u8;
    let sp = std::hint::black_box(&here) as *const u8 as usize;
    let inside = sp >= ALT_LO.load(Ordering::SeqCst) && sp < ALT_HI.load(Ordering::SeqCst);
    ONSTACK.store(inside, Ordering::SeqCst);
    GOT_USR1.store(true, Ordering::SeqCst);
}

extern "C" fn on_term(_: libc::c_int) {}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(report), Some(workdir)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: wl_state REPORT_FILE WORKDIR");
        std::process::exit(2);
    };
    let _ = nix::unistd::setsid();
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(report)
        .expect("open report");
    std::env::set_current_dir(workdir).expect("chdir");
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o027));
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, 512, 4096)
        .expect("rlimit nofile");
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0)
        .expect("rlimit core");

    // The alternate stack: a leaked buffer, its bounds published for the handler.
    let alt: &'static mut [u8] = Box::leak(vec![0u8; 64 * 1024].into_boxed_slice());
    ALT_LO.store(alt.as_ptr() as usize, Ordering::SeqCst);
    ALT_HI.store(alt.as_ptr() as usize + alt.len(), Ordering::SeqCst);
    let ss = libc::stack_t {
        ss_sp: alt.as_mut_ptr().cast(),
        ss_flags: 0,
        ss_size: alt.len(),
    };
    // SAFETY: the stack is a leaked buffer that lives as long as the process.
    let r = unsafe { libc::sigaltstack(&ss, std::ptr::null_mut()) };
    assert_eq!(r, 0, "sigaltstack");

    let usr1 = SigAction::new(
        SigHandler::Handler(on_usr1),
        SaFlags::SA_ONSTACK | SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    let term = SigAction::new(
        SigHandler::Handler(on_term),
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: the handlers only touch atomics, which is async-signal-safe.
    unsafe {
        sigaction(Signal::SIGUSR1, &usr1).expect("sigaction");
        sigaction(Signal::SIGTERM, &term).expect("sigaction");
    }

    let with_seccomp = args.get(3).map(String::as_str) == Some("seccomp");
    if with_seccomp {
        install_getpgid_filter();
    }

    // SIGUSR2 blocked everywhere (threads inherit the mask), then made pending for the
    // whole process.
    let mut usr2 = SigSet::empty();
    usr2.add(Signal::SIGUSR2);
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&usr2), None).expect("mask");

    let _worker = std::thread::Builder::new()
        .name("wl-worker".into())
        .spawn(|| {
            // SIGUSR1 goes to the main thread, the one with the alternate stack.
            let mut term = SigSet::empty();
            term.add(Signal::SIGTERM);
            term.add(Signal::SIGUSR1);
            nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&term), None)
                .expect("mask");
            // Pending on this thread only.
            nix::sys::signal::raise(Signal::SIGTERM).expect("raise");
            loop {
                std::thread::sleep(Duration::from_millis(100));
            }
        })
        .expect("thread");
    std::thread::sleep(Duration::from_millis(50));
    nix::sys::signal::kill(nix::unistd::getpid(), Signal::SIGUSR2).expect("shared pending");

    set_itimer(1000);
    // Three POSIX timers, the first deleted: the survivors have ids 1 and 2, which a restore
    // handing out ids in order would not reproduce.
    let first = posix_timer(libc::SIGEV_SIGNAL, libc::SIGUSR2, 1000);
    posix_timer(libc::SIGEV_SIGNAL, libc::SIGUSR2, 1000);
    posix_timer(libc::SIGEV_NONE, 0, 500);
    // SAFETY: `first` is a timer id returned by timer_create.
    assert_eq!(unsafe { libc::timer_delete(first) }, 0, "timer_delete");

    writeln!(
        out,
        "ready {} tids={},{}",
        std::process::id(),
        nix::unistd::gettid(),
        tid_of_worker()
    )
    .expect("write");
    loop {
        std::thread::sleep(Duration::from_millis(20));
        if GOT_USR1.swap(false, Ordering::SeqCst) {
            let armed = get_itimer_armed();
            let extra = if with_seccomp {
                format!(" getpgid={}", getpgid_errno())
            } else {
                String::new()
            };
            let line = format!(
                "usr1 onstack={} itimer={}{extra}\n",
                u8::from(ONSTACK.load(Ordering::SeqCst)),
                u8::from(armed)
            );
            let _ = out.write_all(line.as_bytes());
        }
    }
}

fn tid_of_worker() -> i32 {
    let me = std::process::id() as i32;
    std::fs::read_dir("/proc/self/task")
        .expect("tasks")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .find(|t: &i32| *t != me)
        .unwrap_or(0)
}

fn set_itimer(secs: i64) {
    let it = libc::itimerval {
        it_interval: libc::timeval {
            tv_sec: secs,
            tv_usec: 0,
        },
        it_value: libc::timeval {
            tv_sec: secs,
            tv_usec: 0,
        },
    };
    // SAFETY: setitimer reads the itimerval we pass; the old value pointer may be null.
    let r = unsafe { libc::setitimer(libc::ITIMER_REAL, &it, std::ptr::null_mut()) };
    assert_eq!(r, 0, "setitimer");
}

fn get_itimer_armed() -> bool {
    let mut it = libc::itimerval {
        it_interval: libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        },
        it_value: libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        },
    };
    // SAFETY: getitimer writes one itimerval into `it`.
    let r = unsafe { libc::getitimer(libc::ITIMER_REAL, &mut it) };
    r == 0 && it.it_value.tv_sec > 0 && it.it_interval.tv_sec == 1000
}

/// An armed CLOCK_MONOTONIC POSIX timer that does not fire during a test.
fn posix_timer(notify: libc::c_int, signo: libc::c_int, secs: i64) -> libc::timer_t {
    // SAFETY: sigevent is plain data; zero is a valid start before filling the fields.
    let mut sev: libc::sigevent = unsafe { std::mem::zeroed() };
    sev.sigev_notify = notify;
    sev.sigev_signo = signo;
    let mut id: libc::timer_t = std::ptr::null_mut();
    // SAFETY: sev and id are valid for the call.
    let r = unsafe { libc::timer_create(libc::CLOCK_MONOTONIC, &mut sev, &mut id) };
    assert_eq!(r, 0, "timer_create");
    let t = libc::timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    let spec = libc::itimerspec {
        it_interval: t,
        it_value: t,
    };
    // SAFETY: spec is valid; the old value pointer may be null.
    let r = unsafe { libc::timer_settime(id, 0, &spec, std::ptr::null_mut()) };
    assert_eq!(r, 0, "timer_settime");
    id
}

/// A classic-BPF filter: getpgid(2) fails with errno 42, everything else is allowed.
fn install_getpgid_filter() {
    let ins = |code: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code, jt, jf, k };
    let mut prog = [
        ins(0x20, 0, 0, 0),                        // ld [nr]
        ins(0x15, 0, 1, libc::SYS_getpgid as u32), // jeq getpgid
        ins(0x06, 0, 0, 0x0005_0000 | 42),         // ret ERRNO(42)
        ins(0x06, 0, 0, 0x7fff_0000),              // ret ALLOW
    ];
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
