//! Restore workload: a process tree. The root (a session leader) starts two children, one
//! of which leads its own process group, and the other starts a grandchild. Every process
//! appends `tick <pid> ppid=<ppid> pgid=<pgid> sid=<sid> n=<n>` to the report every 50 ms,
//! so the test sees who runs, under which parent, group and session.
//!
//! Usage: wl_tree REPORT_FILE [role]   (roles other than the root are internal)

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::unistd::{Pid, getpgid, getpid, getppid, getsid};

fn spawn(report: &str, role: &str) -> Child {
    Command::new(std::env::current_exe().expect("exe"))
        .arg(report)
        .arg(role)
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
    match role.as_str() {
        "root" => {
            let _ = nix::unistd::setsid();
            kids.push(spawn(&report, "a"));
            kids.push(spawn(&report, "b"));
        }
        "a" => kids.push(spawn(&report, "c")),
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
    loop {
        n += 1;
        let line = format!(
            "tick {me} ppid={} pgid={} sid={} n={n} role={role}\n",
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
