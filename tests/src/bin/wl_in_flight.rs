//! Files in flight workload: two fds that it passed to itself with `SCM_RIGHTS` and has not
//! received yet.
//!
//! It leads its own session, makes a datagram socketpair (fds A and B), a pipe holding
//! `PIPE_DATA` (both ends then closed in the task: the read end lives only in the queued
//! message) and opens DATA_FILE (its first line `0123456789abcdef`) at offset 5, keeping
//! that fd. It sends `hello` with three fds over B to A: the pipe, the file and A itself
//! (a socket carrying itself), closes its copy of the pipe, and reports `ready <pid>`. It
//! then waits until GO_FILE exists (the test creates it after the restore), receives the
//! message on A and checks: payload `hello`, three fds, the first a pipe reading
//! `PIPE_DATA` then EOF, the second the very description of its kept file fd (offset 5,
//! and a seek through one moves the other), the third socket A. It appends `ok` or
//! `fail <why>` and exits 0 or 1.
//!
//! Usage: wl_in_flight REPORT_FILE DATA_FILE GO_FILE

use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg,
    sendmsg, socketpair,
};
use nix::unistd::{Whence, lseek};

const PIPE_DATA: &[u8] = b"bytes queued in a pipe in flight";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, report, data, go] = args.as_slice() else {
        eprintln!("usage: wl_in_flight REPORT_FILE DATA_FILE GO_FILE");
        std::process::exit(2);
    };
    let _ = nix::unistd::setsid();
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(report)
        .expect("open report");
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::Datagram,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .expect("socketpair");
    let file = std::fs::File::open(data).expect("open data file");
    lseek(file.as_fd(), 5, Whence::SeekSet).expect("lseek");
    {
        let (r, w) = nix::unistd::pipe().expect("pipe");
        nix::unistd::write(&w, PIPE_DATA).expect("write pipe");
        drop(w);
        let fds = [r.as_raw_fd(), file.as_raw_fd(), a.as_raw_fd()];
        sendmsg::<()>(
            b.as_raw_fd(),
            &[IoSlice::new(b"hello")],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        )
        .expect("sendmsg");
    }
    writeln!(out, "ready {}", std::process::id()).expect("write");
    while !std::path::Path::new(go).exists() {
        std::thread::sleep(Duration::from_millis(20));
    }
    match check(a.as_raw_fd(), &file) {
        Ok(()) => writeln!(out, "ok").expect("write"),
        Err(why) => {
            writeln!(out, "fail {why}").expect("write");
            std::process::exit(1);
        }
    }
    drop(b);
}

fn check(a: RawFd, file: &std::fs::File) -> Result<(), String> {
    let mut buf = [0u8; 64];
    let mut space = nix::cmsg_space!([RawFd; 4]);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<()>(a, &mut iov, Some(&mut space), MsgFlags::MSG_DONTWAIT)
        .map_err(|e| format!("recvmsg: {e}"))?;
    let mut fds = Vec::new();
    for c in msg.cmsgs().map_err(|e| format!("cmsgs: {e}"))? {
        if let ControlMessageOwned::ScmRights(got) = c {
            fds.extend(got);
        }
    }
    let len = msg.bytes;
    if &buf[..len] != b"hello" {
        return Err(format!(
            "payload {:?}",
            String::from_utf8_lossy(&buf[..len])
        ));
    }
    let [pipe, same, itself] = fds.as_slice() else {
        return Err(format!("{} fds received", fds.len()));
    };
    // SAFETY: the numbers were just installed by recvmsg and belong to nothing else.
    let (pipe, same, itself) = unsafe {
        (
            OwnedFd::from_raw_fd(*pipe),
            OwnedFd::from_raw_fd(*same),
            OwnedFd::from_raw_fd(*itself),
        )
    };
    let ino = |fd: RawFd| {
        // SAFETY: `fd` is open for the whole call (borrowed from an fd this function holds).
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        nix::sys::stat::fstat(fd).map(|s| s.st_ino).unwrap_or(0)
    };
    if ino(itself.as_raw_fd()) != ino(a) {
        return Err("the third fd is not the socket itself".into());
    }
    let mut got = Vec::new();
    std::fs::File::from(pipe)
        .read_to_end(&mut got)
        .map_err(|e| format!("read pipe: {e}"))?;
    if got != PIPE_DATA {
        return Err(format!("pipe gave {:?}", String::from_utf8_lossy(&got)));
    }
    let pos = lseek(same.as_fd(), 0, Whence::SeekCur).map_err(|e| format!("lseek: {e}"))?;
    if pos != 5 {
        return Err(format!("file in flight at offset {pos}"));
    }
    lseek(file.as_fd(), 9, Whence::SeekSet).map_err(|e| format!("lseek: {e}"))?;
    let pos = lseek(same.as_fd(), 0, Whence::SeekCur).map_err(|e| format!("lseek: {e}"))?;
    if pos != 9 {
        return Err(format!("not the kept file's description (offset {pos})"));
    }
    Ok(())
}
