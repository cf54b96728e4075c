//! Unix socket options the unix plugin needs or restores, each probed with real sockets
//! doing what the plugin does with it (not only a `setsockopt` that a kernel might accept
//! and ignore).

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, recv,
    recvmsg, send, sendmsg, socketpair,
};

use super::KernelFeatures;
use crate::sys::{kabi, probe};

type Outcome = Result<Option<String>, String>;

fn pair(ty: SockType) -> Result<(OwnedFd, OwnedFd), String> {
    socketpair(AddressFamily::Unix, ty, None, SockFlag::SOCK_CLOEXEC)
        .map_err(|e| format!("socketpair: {e}"))
}

fn get_int(fd: &OwnedFd, opt: libc::c_int) -> Result<i32, String> {
    let mut b = [0u8; 4];
    let n = probe::getsockopt_buf(fd.as_fd(), libc::SOL_SOCKET, opt, &mut b)
        .map_err(|e| e.to_string())?;
    if n != 4 {
        return Err(format!("getsockopt gave {n} bytes"));
    }
    Ok(i32::from_ne_bytes(b))
}

fn set_int(fd: &OwnedFd, opt: libc::c_int, v: i32) -> Result<(), String> {
    probe::setsockopt_int(fd.as_fd(), libc::SOL_SOCKET, opt, v).map_err(|e| e.to_string())
}

/// CRIU's check (a datagram socket reports offset -1 until set), then what the unix
/// plugin does with a stream queue: with the offset at 0, two 1-byte `MSG_PEEK`s return
/// the first two bytes in turn and the offset reads 2.
pub(super) fn so_peek_off(_: &mut KernelFeatures) -> Outcome {
    let (d, _peer) = pair(SockType::Datagram)?;
    match get_int(&d, kabi::SO_PEEK_OFF)? {
        -1 => {}
        v => {
            return Err(format!(
                "a new datagram socket reports SO_PEEK_OFF {v}, not -1"
            ));
        }
    }
    let (a, b) = pair(SockType::Stream)?;
    send(a.as_raw_fd(), b"ab", MsgFlags::empty()).map_err(|e| format!("send: {e}"))?;
    set_int(&b, kabi::SO_PEEK_OFF, 0)?;
    let mut got = [0u8; 2];
    for slot in got.iter_mut() {
        let mut one = [0u8; 1];
        recv(b.as_raw_fd(), &mut one, MsgFlags::MSG_PEEK).map_err(|e| format!("recv: {e}"))?;
        *slot = one[0];
    }
    let off = get_int(&b, kabi::SO_PEEK_OFF)?;
    if &got != b"ab" || off != 2 {
        return Err(format!(
            "peeking a stream socket at offsets 0 and 1 gave {got:?}, offset now {off}"
        ));
    }
    Ok(Some("stream and datagram unix sockets".into()))
}

pub(super) fn so_passpidfd(_: &mut KernelFeatures) -> Outcome {
    let (_a, b) = pair(SockType::Datagram)?;
    set_int(&b, kabi::SO_PASSPIDFD, 1)?;
    match get_int(&b, kabi::SO_PASSPIDFD)? {
        1 => Ok(None),
        v => Err(format!("SO_PASSPIDFD reads {v} after setting 1")),
    }
}

/// With `SO_PASSRIGHTS` off, the kernel refuses to queue `SCM_RIGHTS` to the socket
/// (`sendmsg` fails with EPERM); back on, the same message passes.
pub(super) fn so_passrights(_: &mut KernelFeatures) -> Outcome {
    let (a, b) = pair(SockType::Datagram)?;
    set_int(&b, kabi::SO_PASSRIGHTS, 0)?;
    let fds = [a.as_raw_fd()];
    let iov = [std::io::IoSlice::new(b"x")];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let flags = MsgFlags::empty();
    match sendmsg::<()>(a.as_raw_fd(), &iov, &cmsg, flags, None) {
        Err(nix::errno::Errno::EPERM) => {}
        Ok(_) => return Err("SCM_RIGHTS was queued with SO_PASSRIGHTS off".into()),
        Err(e) => return Err(format!("sendmsg with SO_PASSRIGHTS off: {e}")),
    }
    set_int(&b, kabi::SO_PASSRIGHTS, 1)?;
    sendmsg::<()>(a.as_raw_fd(), &iov, &cmsg, flags, None)
        .map_err(|e| format!("sendmsg with SO_PASSRIGHTS on: {e}"))?;
    let mut buf = [0u8; 1];
    let mut riov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        b.as_raw_fd(),
        &mut riov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(|e| format!("recvmsg: {e}"))?;
    let mut passed = false;
    for c in msg.cmsgs().map_err(|e| e.to_string())? {
        if let ControlMessageOwned::ScmRights(got) = c {
            for fd in got {
                let _ = nix::unistd::close(fd);
                passed = true;
            }
        }
    }
    if passed {
        Ok(Some("refuses SCM_RIGHTS when off".into()))
    } else {
        Err("no fd arrived with SO_PASSRIGHTS on".into())
    }
}

/// A datagram sent to a socket with `SO_PASSPIDFD` arrives with an `SCM_PIDFD`.
pub(super) fn scm_pidfd(_: &mut KernelFeatures) -> Outcome {
    let (a, b) = pair(SockType::Datagram)?;
    set_int(&b, kabi::SO_PASSPIDFD, 1)?;
    send(a.as_raw_fd(), b"x", MsgFlags::empty()).map_err(|e| format!("send: {e}"))?;
    let mut buf = [0u8; 1];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 2], libc::ucred);
    let msg = recvmsg::<()>(
        b.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(|e| format!("recvmsg: {e}"))?;
    let mut found = false;
    for c in msg.cmsgs().map_err(|e| e.to_string())? {
        if let ControlMessageOwned::Unknown(u) = c
            && u.cmsg_header.cmsg_level == libc::SOL_SOCKET
            && u.cmsg_header.cmsg_type == kabi::SCM_PIDFD
            && let Ok(raw) = <[u8; 4]>::try_from(u.data_bytes.as_slice())
        {
            // The pidfd the kernel installed in this process.
            let _ = nix::unistd::close(i32::from_ne_bytes(raw));
            found = true;
        }
    }
    if found {
        Ok(None)
    } else {
        Err("no SCM_PIDFD in the received message".into())
    }
}
