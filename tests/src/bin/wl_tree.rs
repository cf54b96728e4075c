//! Restore workload: a process tree. The root (a session leader) starts two children, one
//! of which leads its own process group, and the other starts a grandchild. Every process
//! appends `tick <pid> ppid=<ppid> pgid=<pgid> sid=<sid> n=<n>` to the report every 50 ms,
//! so the test sees who runs, under which parent, group and session. The root also shares a
//! pipe with child `a` (inherited across fork+exec): each tick the root writes a byte and
//! `a` drains what arrived, reporting the running total as ` got=<n>` (other roles: `got=0`).
//!
//! Usage: wl_tree REPORT_FILE [role]   (roles other than the root are internal)

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::unistd::{Pid, getpgid, getpid, getppid, getsid};

fn spawn(report: &str, role: &str, extra: &[String]) -> Child {
    Command::new(std::env::current_exe().expect("exe"))
        .arg(report)
        .arg(role)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(report) = args.get(1).cloned() else {
        eprintln!("usage: wl_tree REPORT_FILE");
        std::process::exit(2);
    };
    let role = args.get(2).cloned().unwrap_or_else(|| "root".into());
    let mut kids = Vec::new();
    let mut feed = None;
    let mut drain: Option<std::os::fd::OwnedFd> = None;
    match role.as_str() {
        "root" => {
            let _ = nix::unistd::setsid();
            // Not CLOEXEC: child `a` inherits both ends across exec.
            let (r, w) = nix::unistd::pipe().expect("pipe");
            use std::os::fd::AsRawFd;
            kids.push(spawn(&report, "a", &[r.as_raw_fd().to_string()]));
            kids.push(spawn(&report, "b", &[]));
            drop(r);
            feed = Some(w);
        }
        "a" => {
            let fd: i32 = args.get(3).and_then(|s| s.parse().ok()).expect("pipe fd");
            // The fd number came from our parent, which passed its read end across exec.
            drain = std::fs::read_link(format!("/proc/self/fd/{fd}"))
                .ok()
                .filter(|l| l.to_string_lossy().starts_with("pipe:"))
                .map(|_| reopen(fd));
            kids.push(spawn(&report, "c", &[]));
        }
        "b" => nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0)).expect("setpgid"),
        _ => {}
    }
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&report)
        .expect("open report");
    let me = getpid();
    let mut n = 0u64;
    let mut got = 0u64;
    loop {
        n += 1;
        if let Some(w) = &feed {
            let _ = nix::unistd::write(w, b"x");
        }
        if let Some(r) = &drain {
            let mut buf = [0u8; 64];
            while let Ok(k @ 1..) = nix::unistd::read(r, &mut buf) {
                got += k as u64;
            }
        }
        let line = format!(
            "tick {me} ppid={} pgid={} sid={} n={n} role={role} got={got}\n",
            getppid(),
            getpgid(None).map(|p| p.as_raw()).unwrap_or(-1),
            getsid(None).map(|p| p.as_raw()).unwrap_or(-1),
        );
        if out.write_all(line.as_bytes()).is_err() {
            std::process::exit(3);
        }
        std::thread::sleep(Duration::from_millis(50));
        // Keep the children handles alive (and reap any that exit).
        kids.retain_mut(|k| k.try_wait().ok().flatten().is_none());
    }
}

/// The inherited pipe end `fd` as a non-blocking owned fd (opened again through /proc, which
/// gives the same pipe).
fn reopen(fd: i32) -> std::os::fd::OwnedFd {
    nix::fcntl::open(
        format!("/proc/self/fd/{fd}").as_str(),
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .expect("reopen pipe")
}
