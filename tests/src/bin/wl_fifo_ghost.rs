//! Unlinked FIFO workload: makes a FIFO in WORKDIR, opens it read-only (non-blocking) and
//! write-only, writes a message into it, unlinks the path, then waits for WORKDIR/go. It then
//! checks that the message is still buffered, that its fds still name the removed FIFO, and
//! that a new message written through its write end comes out of its read end.
//!
//! It leads its own session (a restore needs no --shell-job). Report lines:
//!   `ready <pid>` once the FIFO is unlinked, then `after data=<ok|bad:..> link=<ok|bad:..>
//!   again=<ok|bad:..>` once WORKDIR/go exists.
//! Usage: wl_fifo_ghost REPORT_FILE WORKDIR

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::sys::stat::Mode;

const FIRST: &[u8] = b"buffered before the dump";
const SECOND: &[u8] = b"written after the restore";

/// Reads exactly `want.len()` bytes (the reader is non-blocking) and compares.
fn expect(reader: &mut File, want: &[u8]) -> String {
    let mut buf = vec![0u8; want.len() + 16];
    match reader.read(&mut buf) {
        Ok(n) if &buf[..n] == want => "ok".into(),
        Ok(n) => format!("bad:read-{n}-bytes"),
        Err(e) => format!("bad:read-{}", e.kind()),
    }
}

/// The fd names a removed node in the FIFO's directory (after a restore, the temporary name
/// the ghost was recreated at, as with CRIU).
fn link_ok(fd: i32, fifo: &Path) -> String {
    let dir = fifo.parent().unwrap_or(Path::new("/")).to_string_lossy();
    match std::fs::read_link(format!("/proc/self/fd/{fd}")) {
        Ok(l)
            if l.starts_with(dir.as_ref())
                && l.to_string_lossy().ends_with(" (deleted)")
                && std::fs::metadata(format!("/proc/self/fd/{fd}"))
                    .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_fifo(&m.file_type())) =>
        {
            "ok".into()
        }
        Ok(l) => format!("bad:{}", l.display()),
        Err(e) => format!("bad:{e}"),
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (report, work) = match (args.next(), args.next()) {
        (Some(r), Some(w)) => (r, w),
        _ => panic!("usage: wl_fifo_ghost REPORT_FILE WORKDIR"),
    };
    let _ = nix::unistd::setsid();
    let fifo = Path::new(&work).join("fifo");
    nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o640)).expect("mkfifo");
    let mut reader = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .expect("open read end");
    let mut writer = OpenOptions::new()
        .write(true)
        .open(&fifo)
        .expect("open write end");
    writer.write_all(FIRST).expect("write");
    std::fs::remove_file(&fifo).expect("unlink");
    let mut out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&report)
        .expect("report file");
    writeln!(out, "ready {}", std::process::id()).expect("report");
    let go = Path::new(&work).join("go");
    while !go.exists() {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let data = expect(&mut reader, FIRST);
    let link = match (
        link_ok(reader.as_raw_fd(), &fifo),
        link_ok(writer.as_raw_fd(), &fifo),
    ) {
        (r, w) if r == "ok" && w == "ok" => "ok".to_string(),
        (r, w) => format!("bad:r={r},w={w}"),
    };
    let again = match writer.write_all(SECOND) {
        Ok(()) => expect(&mut reader, SECOND),
        Err(e) => format!("bad:write-{}", e.kind()),
    };
    writeln!(out, "after data={data} link={link} again={again}").expect("report");
    // Stay until killed, as the test's guard expects.
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}
