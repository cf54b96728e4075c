//! Terminal workload for `--shell-job` with a tree: a shell with job control and its
//! foreground job, a pipeline plus a child in its own group.
//!
//! Start it as the leader of a new session whose controlling terminal is the pty slave on its
//! stdio (`setsid -c wl_tty_tree REPORT`). It plays the shell: it forks the job `j` into a new
//! process group, makes that group the terminal's foreground one (`tcsetpgrp`) and waits.
//!
//! ```text
//! shell        session leader, owns the terminal
//! └─ j         the job: own group J (foreground), in the shell's session
//!    ├─ a      group J: writes 1, 2, 3... into a pipe (`a | b`)
//!    ├─ b      group J: reads the pipe, writes `out b <n>` to the terminal
//!    └─ c      its own group C in the session (a background group)
//! ```
//!
//! Every process appends, every 50 ms (b: for each number read), one line to the report:
//!   `tick <role> <n> pid=<pid> sid=<sid> pgid=<pgid> tty0=<ok|bad> fg=<pgrp|err>
//!    devtty=<ok|err> rdev=<major>:<minor>`
//! The first line of each is `ready <role> <pid>`.
//!
//! Usage: wl_tty_tree REPORT_FILE

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::time::{Duration, Instant};

use criu_tests::workload::fork_child;
use nix::unistd::{Pid, getpgrp, getpid, getsid, isatty, pipe, setpgid, tcgetpgrp, tcsetpgrp};

fn state(role: &str, n: u64) -> String {
    let stdin = std::io::stdin();
    let fg = match tcgetpgrp(stdin.as_fd()) {
        Ok(p) => p.to_string(),
        Err(e) => format!("err-{e}"),
    };
    let devtty = match std::fs::OpenOptions::new().write(true).open("/dev/tty") {
        Ok(_) => "ok".to_string(),
        Err(e) => format!("err-{}", e.raw_os_error().unwrap_or(0)),
    };
    let rdev = match std::fs::metadata("/proc/self/fd/0") {
        Ok(m) if m.file_type().is_char_device() => {
            let r = m.rdev();
            format!("{}:{}", nix::sys::stat::major(r), nix::sys::stat::minor(r))
        }
        _ => "none".into(),
    };
    let tty0 = if isatty(stdin.as_fd()).unwrap_or(false) {
        "ok"
    } else {
        "bad"
    };
    format!(
        "tick {role} {n} pid={} sid={} pgid={} tty0={tty0} fg={fg} devtty={devtty} rdev={rdev}\n",
        getpid(),
        getsid(None).map(|p| p.as_raw()).unwrap_or(-1),
        getpgrp(),
    )
}

fn open_report(report: &str, role: &str) -> std::fs::File {
    let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(report)
    else {
        std::process::exit(3);
    };
    // One write(2) per line: lines of several processes must not interleave.
    let _ = f.write_all(format!("ready {role} {}\n", getpid()).as_bytes());
    f
}

/// Reports every 50 ms, running `each(n)` first.
fn tick_forever(report: &str, role: &str, mut each: impl FnMut(u64)) -> ! {
    let mut f = open_report(report, role);
    let mut n = 0u64;
    loop {
        n += 1;
        each(n);
        if f.write_all(state(role, n).as_bytes()).is_err() {
            std::process::exit(3);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn job(report: &str) {
    // The shell makes the job the foreground group right after forking it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while tcgetpgrp(std::io::stdin().as_fd()).ok() != Some(getpgrp()) {
        if Instant::now() > deadline {
            std::process::exit(6);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let (rd, wr) = pipe().expect("pipe");
    let r = report.to_string();
    let mut wfile = std::fs::File::from(wr.try_clone().expect("dup"));
    fork_child(move || {
        tick_forever(&r, "a", |n| {
            let _ = wfile.write_all(format!("{n}\n").as_bytes());
        })
    });
    let r = report.to_string();
    let rfile = std::fs::File::from(rd.try_clone().expect("dup"));
    fork_child(move || {
        let mut f = open_report(&r, "b");
        let mut out = std::io::stdout();
        for line in BufReader::new(rfile).lines() {
            let Ok(line) = line else { break };
            let n: u64 = line.trim().parse().unwrap_or(0);
            let _ = out.write_all(format!("out b {n}\n").as_bytes());
            let _ = out.flush();
            if f.write_all(state("b", n).as_bytes()).is_err() {
                std::process::exit(3);
            }
        }
        std::process::exit(7)
    });
    drop((rd, wr));
    let r = report.to_string();
    let c = fork_child(move || {
        setpgid(Pid::from_raw(0), Pid::from_raw(0)).expect("setpgid c");
        tick_forever(&r, "c", |_| {})
    });
    let _ = setpgid(c, c);
    tick_forever(report, "j", |_| {})
}

fn main() {
    let Some(report) = std::env::args().nth(1) else {
        eprintln!("usage: wl_tty_tree REPORT_FILE");
        std::process::exit(2);
    };
    let r = report.clone();
    let j = fork_child(move || {
        setpgid(Pid::from_raw(0), Pid::from_raw(0)).expect("setpgid j");
        job(&r)
    });
    // The "shell": puts the job in the foreground, then stays the session leader (its exit
    // would hang the terminal up).
    let _ = setpgid(j, j);
    tcsetpgrp(std::io::stdin().as_fd(), j).expect("tcsetpgrp");
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}
