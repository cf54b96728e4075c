//! `--shell-job` with the shell's terminal: a job started from a "shell" (a session leader on a
//! pty) is dumped, killed, and restored by a restorer running in another session on another
//! pty; the job then uses the restorer's terminal. Without `--shell-job` the dump is refused
//! with a message naming the fd, the pid, the terminal and the way out, and the job runs on.
//!
//! The restorer must have the terminal on its stdin, so the restore runs in a helper: this
//! test binary itself, re-run with `--ignored --exact restore_helper_in_terminal` under
//! `setsid -c` with its stdio on the second pty.

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use criu_core::dump::{DumpOptions, dump};
use criu_core::restore::{RestoreOptions, restore};
use criu_proto::images::TtyInfoEntry;
use criu_tests::{PidGuard, ScratchDir, skip_unless_root, wait_pid_gone};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use prost::Message;

use criu_plugin_files as _;
use criu_plugin_pipes as _;
use criu_plugin_tty as _;

/// Ptys are made and handed to children one test at a time, so no other test's child
/// inherits an end before it is marked close-on-exec.
static SERIAL: Mutex<()> = Mutex::new(());

const IMAGES_ENV: &str = "CRIU_TTY_TEST_IMAGES";
const RESULT_ENV: &str = "CRIU_TTY_TEST_RESULT";

struct Pty {
    master: OwnedFd,
    slave: OwnedFd,
    index: u32,
}

fn pty(rows: u16, cols: u16) -> Pty {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let r = nix::pty::openpty(Some(&ws), None).expect("openpty");
    for fd in [&r.master, &r.slave] {
        nix::fcntl::fcntl(
            fd.as_fd(),
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )
        .expect("cloexec");
    }
    let flags = nix::fcntl::fcntl(r.master.as_fd(), nix::fcntl::FcntlArg::F_GETFL).expect("getfl");
    nix::fcntl::fcntl(
        r.master.as_fd(),
        nix::fcntl::FcntlArg::F_SETFL(
            nix::fcntl::OFlag::from_bits_retain(flags) | nix::fcntl::OFlag::O_NONBLOCK,
        ),
    )
    .expect("nonblocking master");
    let link = std::fs::read_link(format!("/proc/self/fd/{}", {
        use std::os::fd::AsRawFd;
        r.slave.as_raw_fd()
    }))
    .expect("slave link");
    let index = link
        .to_str()
        .and_then(|l| l.strip_prefix("/dev/pts/"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected slave path {link:?}"));
    Pty {
        master: r.master,
        slave: r.slave,
        index,
    }
}

/// Everything the terminal's programs wrote so far (the master is non-blocking).
fn drain(master: &OwnedFd, into: &mut String) {
    let mut f = std::fs::File::from(master.try_clone().expect("dup master"));
    let mut buf = [0u8; 4096];
    loop {
        match f.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => into.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
}

fn stdio(fd: &OwnedFd) -> Stdio {
    Stdio::from(fd.try_clone().expect("dup slave"))
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The last `tick` line, parsed into (n, the `key=value` fields).
fn last_tick(report: &Path) -> Option<(u64, Vec<(String, String)>)> {
    let all = lines(report);
    let line = all.iter().rev().find(|l| l.starts_with("tick "))?;
    let mut words = line.split_whitespace().skip(1);
    let n = words.next()?.parse().ok()?;
    let fields = words
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Some((n, fields))
}

fn field<'a>(fields: &'a [(String, String)], key: &str) -> &'a str {
    fields
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {key} in {fields:?}"))
}

/// Waits for a tick numbered above `after`.
fn wait_tick(report: &Path, after: u64) -> (u64, Vec<(String, String)>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some((n, f)) = last_tick(report)
            && n > after
        {
            return (n, f);
        }
        assert!(
            Instant::now() < deadline,
            "no tick after {after}: {:?}",
            lines(report)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The shell (`setsid -c wl_tty`, session leader on the pty) and its job. Returns the guards
/// (shell first) and the job's pid.
#[allow(
    clippy::zombie_processes,
    reason = "PidGuard kills and reaps it by pid"
)]
fn start_job(report: &Path, tty: &Pty) -> (Vec<PidGuard>, i32) {
    let shell = Command::new("setsid")
        .arg("-c")
        .arg(env!("CARGO_BIN_EXE_wl_tty"))
        .arg(report)
        .stdin(stdio(&tty.slave))
        .stdout(stdio(&tty.slave))
        .stderr(stdio(&tty.slave))
        .spawn()
        .expect("start setsid -c wl_tty");
    let mut guards = vec![PidGuard::new(shell.id() as i32)];
    let deadline = Instant::now() + Duration::from_secs(20);
    let job = loop {
        if let Some(p) = lines(report)
            .iter()
            .find_map(|l| l.strip_prefix("ready ")?.parse::<i32>().ok())
        {
            break p;
        }
        assert!(Instant::now() < deadline, "the job did not start");
        std::thread::sleep(Duration::from_millis(20));
    };
    guards.push(PidGuard::new(job));
    (guards, job)
}

fn image_entries<M: Message + Default>(path: &Path) -> Vec<M> {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut rest = data.get(8..).expect("image header");
    let mut out = Vec::new();
    while rest.len() >= 4 {
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        out.push(M::decode(&rest[4..4 + len]).expect("entry"));
        rest = &rest[4 + len..];
    }
    out
}

/// Runs the restore helper with `stdin` (and stdout/stderr) on `tty`, or on /dev/null when
/// `None`; returns its one-line result and, with a terminal, the guard of the session
/// leader (a `sh` that stays, so the terminal is not hung up when the helper exits).
#[allow(
    clippy::zombie_processes,
    reason = "PidGuard kills and reaps it by pid"
)]
fn run_restore_helper(
    images: &Path,
    result: &Path,
    tty: Option<&Pty>,
) -> (String, Option<PidGuard>) {
    let exe = std::env::current_exe().expect("test binary");
    let helper_args = [
        "--ignored",
        "--exact",
        "restore_helper_in_terminal",
        "--nocapture",
        "--test-threads=1",
    ];
    let _ = std::fs::remove_file(result);
    let mut guard = None;
    match tty {
        Some(tty) => {
            let sh = Command::new("setsid")
                .args(["-c", "sh", "-c", r#""$0" "$@"; exec sleep 600"#])
                .arg(&exe)
                .args(helper_args)
                .env(IMAGES_ENV, images)
                .env(RESULT_ENV, result)
                .stdin(stdio(&tty.slave))
                .stdout(stdio(&tty.slave))
                .stderr(stdio(&tty.slave))
                .spawn()
                .expect("start restore helper");
            guard = Some(PidGuard::new(sh.id() as i32));
        }
        None => {
            let status = Command::new(&exe)
                .args(helper_args)
                .env(IMAGES_ENV, images)
                .env(RESULT_ENV, result)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("run restore helper");
            assert!(status.success(), "helper: {status:?}");
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(s) = std::fs::read_to_string(result)
            && s.ends_with('\n')
        {
            return (s.trim_end().to_string(), guard);
        }
        assert!(
            Instant::now() < deadline,
            "the restore helper gave no result"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Not a test of its own: the restorer run by `shell_job_dump_and_restore_on_another_terminal`.
#[test]
#[ignore = "run by shell_job_dump_and_restore_on_another_terminal inside a terminal"]
fn restore_helper_in_terminal() {
    let (Some(images), Some(result)) = (std::env::var_os(IMAGES_ENV), std::env::var_os(RESULT_ENV))
    else {
        panic!("{IMAGES_ENV} and {RESULT_ENV} are set by the test that runs this helper");
    };
    let opts = RestoreOptions {
        images_dir: PathBuf::from(images),
        detach: true,
        shell_job: true,
        ..RestoreOptions::default()
    };
    let line = match restore(&opts) {
        Ok(outcome) => format!("ok {outcome:?}\n"),
        Err(e) => format!("err {e}\n").replace('\n', " ") + "\n",
    };
    std::fs::write(result, line).expect("write result");
}

fn kill_and_wait(pids: &[i32]) {
    for &p in pids {
        let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
    }
}

#[test]
fn shell_job_dump_and_restore_on_another_terminal() {
    if skip_unless_root("shell_job_dump_and_restore_on_another_terminal") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = ScratchDir::new("tty-shell-job");
    let report = scratch.path().join("report.txt");
    let images = scratch.path().join("images");
    let result = scratch.path().join("result.txt");
    std::fs::create_dir_all(&images).expect("images dir");

    let first = pty(33, 101);
    let (guards, job) = start_job(&report, &first);
    let shell = guards[0].pid();
    let (n0, before) = wait_tick(&report, 2);
    assert_eq!(field(&before, "tty0"), "ok", "{before:?}");
    assert_eq!(field(&before, "devtty"), "ok", "{before:?}");
    assert_eq!(
        field(&before, "sid"),
        shell.to_string(),
        "the job is in the shell's session"
    );
    assert_eq!(field(&before, "size"), "33x101");
    assert_eq!(field(&before, "rdev"), format!("136:{}", first.index));
    let mut seen = String::new();
    drain(&first.master, &mut seen);
    assert!(seen.contains(&format!("out {n0}")), "{seen:?}");

    let mut d = DumpOptions::new(job, &images);
    d.shell_job = true;
    d.leave_stopped = true;
    dump(&d).unwrap_or_else(|e| panic!("dump --shell-job: {e}\n{e:?}"));
    let (dumped, _) = last_tick(&report).expect("ticks");
    kill_and_wait(&[job, shell]);
    drop(guards);
    assert!(
        wait_pid_gone(job, Duration::from_secs(10)),
        "pid {job} still taken"
    );

    // CRIU's entries: one tty-info entry for the shell's terminal, with its settings.
    let infos: Vec<TtyInfoEntry> = image_entries(&images.join("tty-info.img"));
    assert_eq!(infos.len(), 1, "{infos:?}");
    let info = &infos[0];
    assert_eq!(info.id, first.index << 1);
    assert_eq!(info.pty.as_ref().map(|p| p.index), Some(first.index));
    assert_eq!(
        info.sid, shell as u32,
        "the terminal's session is the shell's"
    );
    let ws = info.winsize.as_ref().expect("winsize");
    assert_eq!((ws.ws_row, ws.ws_col), (33, 101));
    drop(first);

    // A restorer without a terminal is told what to do, and leaves nothing behind.
    let (res, _) = run_restore_helper(&images, &result, None);
    assert!(res.starts_with("err "), "{res}");
    assert!(res.contains(criu_plugin_tty::NO_TERMINAL_HINT), "{res}");
    assert!(
        wait_pid_gone(job, Duration::from_secs(10)),
        "failed restore left {job}"
    );

    let second = pty(44, 120);
    let (res, restorer) = run_restore_helper(&images, &result, Some(&second));
    let _restorer = restorer.expect("restorer guard");
    let _job = PidGuard::new(job);
    assert!(res.starts_with("ok "), "{res}");
    let (n1, after) = wait_tick(&report, dumped);
    assert_eq!(n1, dumped + 1, "the counter goes on");
    let (n2, after2) = wait_tick(&report, n1);
    assert_eq!(field(&after, "pid"), job.to_string());
    for f in [&after, &after2] {
        assert_eq!(field(f, "tty0"), "ok", "{f:?}");
        assert_eq!(field(f, "tty1"), "ok", "{f:?}");
        assert_eq!(field(f, "devtty"), "ok", "{f:?}");
        // The restorer's terminal, with its own settings.
        assert_eq!(field(f, "rdev"), format!("136:{}", second.index), "{f:?}");
        assert_eq!(field(f, "size"), "44x120", "{f:?}");
        assert!(field(f, "fg").parse::<i32>().is_ok(), "{f:?}");
    }
    assert_eq!(
        field(&after, "sid"),
        _restorer.pid().to_string(),
        "the job joined the restorer's session"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut out = String::new();
    while !out.contains(&format!("out {n2}")) {
        assert!(
            Instant::now() < deadline,
            "nothing on the new terminal: {out:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
        drain(&second.master, &mut out);
    }
    kill_and_wait(&[job]);
}

#[test]
fn dump_of_a_shell_job_without_the_option_is_refused() {
    if skip_unless_root("dump_of_a_shell_job_without_the_option_is_refused") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = ScratchDir::new("tty-no-shell-job");
    let report = scratch.path().join("report.txt");
    let images = scratch.path().join("images");
    std::fs::create_dir_all(&images).expect("images dir");
    let tty = pty(24, 80);
    let (_guards, job) = start_job(&report, &tty);
    wait_tick(&report, 1);

    let e =
        dump(&DumpOptions::new(job, &images)).expect_err("a shell job dumped without --shell-job");
    // The whole chain, as the CLI prints it.
    let mut err = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        err.push_str(&format!(": {s}"));
        src = s.source();
    }
    for want in [
        "use --shell-job".to_string(),
        format!("/dev/pts/{}", tty.index),
        format!("pid {job}"),
        "fd 0".to_string(),
    ] {
        assert!(err.contains(&want), "{want:?} missing from: {err}");
    }
    // The job runs on.
    let (n, _) = last_tick(&report).expect("ticks");
    wait_tick(&report, n + 2);
    let mut out = String::new();
    drain(&tty.master, &mut out);
    assert!(out.contains("out "), "{out:?}");
}

/// The last `tick <role>` line of `report`, parsed into (n, the `key=value` fields).
fn last_tick_of(report: &Path, role: &str) -> Option<(u64, Vec<(String, String)>)> {
    let prefix = format!("tick {role} ");
    let all = lines(report);
    let line = all.iter().rev().find(|l| l.starts_with(&prefix))?;
    let mut words = line[prefix.len()..].split_whitespace();
    let n = words.next()?.parse().ok()?;
    let fields = words
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Some((n, fields))
}

/// Waits for a tick of `role` numbered above `after`.
fn wait_tick_of(report: &Path, role: &str, after: u64) -> (u64, Vec<(String, String)>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some((n, f)) = last_tick_of(report, role)
            && n > after
        {
            return (n, f);
        }
        assert!(
            Instant::now() < deadline,
            "no tick of {role} after {after}: {:?}",
            lines(report)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

const ROLES: [&str; 4] = ["j", "a", "b", "c"];

/// The pid each role of `wl_tty_tree` reported.
fn role_pids(report: &Path) -> Vec<(String, i32)> {
    lines(report)
        .iter()
        .filter_map(|l| {
            let mut w = l.strip_prefix("ready ")?.split_whitespace();
            Some((w.next()?.to_string(), w.next()?.parse().ok()?))
        })
        .collect()
}

#[test]
#[allow(
    clippy::zombie_processes,
    reason = "PidGuard kills and reaps it by pid"
)]
fn shell_job_tree_keeps_its_terminal_and_foreground_group() {
    if skip_unless_root("shell_job_tree_keeps_its_terminal_and_foreground_group") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = ScratchDir::new("tty-shell-job-tree");
    let report = scratch.path().join("report.txt");
    let images = scratch.path().join("images");
    let result = scratch.path().join("result.txt");
    std::fs::create_dir_all(&images).expect("images dir");

    let first = pty(25, 90);
    let shell = Command::new("setsid")
        .arg("-c")
        .arg(env!("CARGO_BIN_EXE_wl_tty_tree"))
        .arg(&report)
        .stdin(stdio(&first.slave))
        .stdout(stdio(&first.slave))
        .stderr(stdio(&first.slave))
        .spawn()
        .expect("start setsid -c wl_tty_tree");
    let shell = shell.id() as i32;
    let mut guards = vec![PidGuard::new(shell)];
    let mut dumped = Vec::new();
    for role in ROLES {
        let (n, f) = wait_tick_of(&report, role, 1);
        dumped.push(n);
        assert_eq!(field(&f, "tty0"), "ok", "{role}: {f:?}");
        assert_eq!(field(&f, "devtty"), "ok", "{role}: {f:?}");
        assert_eq!(field(&f, "sid"), shell.to_string(), "{role}: {f:?}");
    }
    let pids = role_pids(&report);
    let pid_of = |role: &str| {
        pids.iter()
            .find(|(r, _)| r == role)
            .map(|(_, p)| *p)
            .unwrap_or_else(|| panic!("no pid for {role}: {pids:?}"))
    };
    let j = pid_of("j");
    guards.extend(ROLES.iter().map(|r| PidGuard::new(pid_of(r))));
    let (_, f) = last_tick_of(&report, "c").expect("c");
    assert_eq!(field(&f, "pgid"), pid_of("c").to_string());
    // The job is the terminal's foreground group, for every process of the session.
    for role in ROLES {
        let (_, f) = last_tick_of(&report, role).expect("tick");
        assert_eq!(field(&f, "fg"), j.to_string(), "{role}: {f:?}");
    }

    let mut d = DumpOptions::new(j, &images);
    d.shell_job = true;
    d.leave_stopped = true;
    dump(&d).unwrap_or_else(|e| panic!("dump --shell-job: {e}\n{e:?}"));
    let infos: Vec<TtyInfoEntry> = image_entries(&images.join("tty-info.img"));
    assert_eq!(infos.len(), 1, "{infos:?}");
    assert_eq!(infos[0].pgrp, j as u32, "the dumped foreground group");
    let all: Vec<i32> = ROLES.iter().map(|r| pid_of(r)).collect();
    kill_and_wait(&all);
    kill_and_wait(&[shell]);
    drop(guards);
    for &p in &all {
        assert!(
            wait_pid_gone(p, Duration::from_secs(10)),
            "pid {p} still taken"
        );
    }
    drop(first);

    let second = pty(30, 100);
    let (res, restorer) = run_restore_helper(&images, &result, Some(&second));
    let restorer = restorer.expect("restorer guard");
    let _g: Vec<PidGuard> = all.iter().map(|&p| PidGuard::new(p)).collect();
    assert!(res.starts_with("ok "), "{res}");
    for (role, n) in ROLES.iter().zip(&dumped) {
        let (_, f) = wait_tick_of(&report, role, *n + 2);
        assert_eq!(field(&f, "pid"), pid_of(role).to_string(), "{role}");
        assert_eq!(field(&f, "tty0"), "ok", "{role}: {f:?}");
        assert_eq!(field(&f, "devtty"), "ok", "{role}: {f:?}");
        assert_eq!(
            field(&f, "rdev"),
            format!("136:{}", second.index),
            "{role}: {f:?}"
        );
        assert_eq!(
            field(&f, "sid"),
            restorer.pid().to_string(),
            "{role} joined the restorer's session"
        );
        let pgid = if *role == "c" { pid_of("c") } else { j };
        assert_eq!(field(&f, "pgid"), pgid.to_string(), "{role}: {f:?}");
        assert_eq!(
            field(&f, "fg"),
            j.to_string(),
            "{role}: the job is the foreground group again: {f:?}"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut out = String::new();
    while !out.contains("out b ") {
        assert!(
            Instant::now() < deadline,
            "nothing on the new terminal: {out:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
        drain(&second.master, &mut out);
    }
    kill_and_wait(&all);
}
