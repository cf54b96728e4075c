//! Terminal workload for `--shell-job`: a job of a shell, writing to its terminal.
//!
//! Start it with stdin/stdout/stderr on a pty slave, as the leader of a new session whose
//! controlling terminal that slave is (`setsid -c wl_tty REPORT`). It plays the shell: it
//! forks the job and waits. The job is in the shell's session and process group, so a dump
//! of the job is a shell job. Every 50 ms the job appends to the report file
//!   `tick <n> pid=<pid> sid=<sid> pgid=<pgid> tty0=<ok|bad> tty1=<ok|bad> fg=<pgrp|err>
//!    devtty=<ok|err> size=<rows>x<cols> rdev=<major>:<minor>`
//! (one line) and writes `out <n>` to its terminal. The first report line is `ready <pid>`.
//! After a restore the lines go on with the next `n`: the test checks that they describe
//! the restorer's terminal.
//!
//! Usage: wl_tty REPORT_FILE

use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::time::Duration;

use nix::unistd::{ForkResult, fork, getpgrp, getpid, getsid, isatty, tcgetpgrp};

nix::ioctl_read_bad!(tiocgwinsz, libc::TIOCGWINSZ, libc::winsize);

fn window_size() -> String {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: fd 0 is open for the life of the process; `ws` is a live winsize.
    match unsafe { tiocgwinsz(0, &mut ws) } {
        Ok(_) => format!("{}x{}", ws.ws_row, ws.ws_col),
        Err(e) => format!("err-{e}"),
    }
}

fn state(n: u64) -> String {
    let ok = |b: bool| if b { "ok" } else { "bad" };
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
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
    format!(
        "tick {n} pid={} sid={} pgid={} tty0={} tty1={} fg={fg} devtty={devtty} size={} rdev={rdev}",
        getpid(),
        getsid(None).map(|p| p.as_raw()).unwrap_or(-1),
        getpgrp(),
        ok(isatty(stdin.as_fd()).unwrap_or(false)),
        ok(isatty(stdout.as_fd()).unwrap_or(false)),
        window_size(),
    )
}

fn job(report: &str) -> ! {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(report)
        .expect("open report");
    writeln!(file, "ready {}", getpid()).expect("report");
    let mut n = 0u64;
    loop {
        n += 1;
        writeln!(file, "{}", state(n)).expect("report");
        // A terminal write error (EIO after a hangup) is reported by the next tick's state.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "out {n}");
        let _ = out.flush();
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn main() {
    let Some(report) = std::env::args().nth(1) else {
        eprintln!("usage: wl_tty REPORT_FILE");
        std::process::exit(2);
    };
    // SAFETY: single-threaded program; the child continues in plain Rust code.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => job(&report),
        ForkResult::Parent { child } => {
            // The "shell": stays the session leader (its exit would hang the terminal up).
            let _ = nix::sys::wait::waitpid(child, None);
            loop {
                std::thread::sleep(Duration::from_secs(60));
            }
        }
    }
}
