//! Restore workload: a parent with three zombie children (one exited with 42, one killed by
//! SIGTERM, one by SIGKILL) and one child stopped by SIGSTOP, then sent SIGSTOP again to the
//! process and to its thread while stopped (both stay queued, as in zdtm's stopped12). It
//! writes `ready z=<pid> k=<pid> x=<pid> s=<pid>` to the report, then idles. On SIGUSR1 it
//! checks the stopped child is in state T, reaps the zombies expecting exit 42, SIGTERM and
//! SIGKILL, wakes the stopped child with SIGCONT and checks it runs (leaves state T), and
//! appends `ok` or `bad <what>`.
//!
//! Usage: wl_tree_zombie REPORT_FILE

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::sys::signal::{SigHandler, Signal, kill, signal};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork};

static CHECK: AtomicBool = AtomicBool::new(false);

extern "C" fn on_usr1(_: i32) {
    CHECK.store(true, Ordering::SeqCst);
}

fn state(pid: Pid) -> char {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, r)| r.trim().chars().next())
        })
        .unwrap_or('?')
}

fn child(f: impl FnOnce()) -> Pid {
    // SAFETY: single-threaded program; the child only calls async-signal-safe functions
    // (pause, _exit).
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            f();
            // SAFETY: _exit is always safe to call.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => child,
    }
}

fn main() {
    let Some(report) = std::env::args().nth(1) else {
        eprintln!("usage: wl_tree_zombie REPORT_FILE");
        std::process::exit(2);
    };
    let _ = nix::unistd::setsid();
    // SAFETY: the handler only stores to an atomic.
    unsafe { signal(Signal::SIGUSR1, SigHandler::Handler(on_usr1)) }.expect("signal");
    // SAFETY: _exit is always safe to call.
    let z = child(|| unsafe { libc::_exit(42) });
    let k = child(|| {
        loop {
            // SAFETY: pause has no preconditions.
            unsafe { libc::pause() };
        }
    });
    let x = child(|| {
        loop {
            // SAFETY: pause has no preconditions.
            unsafe { libc::pause() };
        }
    });
    let s = child(|| {
        loop {
            // SAFETY: pause has no preconditions.
            unsafe { libc::pause() };
        }
    });
    kill(k, Signal::SIGTERM).expect("kill k");
    kill(x, Signal::SIGKILL).expect("kill x");
    kill(s, Signal::SIGSTOP).expect("stop s");
    while state(z) != 'Z' || state(k) != 'Z' || state(x) != 'Z' || state(s) != 'T' {
        std::thread::sleep(Duration::from_millis(5));
    }
    // Stop signals sent to a stopped task stay queued (until a SIGCONT flushes them).
    kill(s, Signal::SIGSTOP).expect("stop s again");
    // SAFETY: tkill on our own stopped child's only thread.
    if unsafe { libc::syscall(libc::SYS_tkill, s.as_raw(), libc::SIGSTOP) } != 0 {
        panic!("tkill: {}", std::io::Error::last_os_error());
    }
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&report)
        .expect("open report");
    writeln!(out, "ready z={z} k={k} x={x} s={s}").expect("report");
    while !CHECK.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut bad = Vec::new();
    if state(s) != 'T' {
        bad.push(format!("stopped child in state {}", state(s)));
    }
    match waitpid(z, None) {
        Ok(WaitStatus::Exited(_, 42)) => {}
        other => bad.push(format!("zombie z reaped as {other:?}")),
    }
    match waitpid(k, None) {
        Ok(WaitStatus::Signaled(_, Signal::SIGTERM, _)) => {}
        other => bad.push(format!("zombie k reaped as {other:?}")),
    }
    match waitpid(x, None) {
        Ok(WaitStatus::Signaled(_, Signal::SIGKILL, _)) => {}
        other => bad.push(format!("zombie x reaped as {other:?}")),
    }
    if let Err(e) = kill(s, Signal::SIGCONT) {
        bad.push(format!("SIGCONT to the stopped child: {e}"));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while state(s) == 'T' && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    if state(s) == 'T' {
        bad.push("stopped child still stopped after SIGCONT".into());
    }
    let _ = kill(s, Signal::SIGKILL);
    let _ = waitpid(s, None);
    if bad.is_empty() {
        writeln!(out, "ok").expect("report");
    } else {
        writeln!(out, "bad {}", bad.join("; ")).expect("report");
    }
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}
