//! A client of CRIU's RPC protocol, as runc and go-criu speak it: `criu swrk 3` started on
//! one end of a `SOCK_SEQPACKET` socketpair, `criu_req` out and `criu_resp` in, one message
//! per packet, NOTIFY messages acked one by one.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use criu_proto::rpc::{CriuNotify, CriuReq, CriuReqType, CriuResp};
use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType, sockopt};
use nix::sys::time::TimeVal;
use prost::Message;

use crate::PidGuard;

/// A running `criu swrk` and our end of its socket.
#[derive(Debug)]
pub struct SwrkClient {
    sock: OwnedFd,
    child: Child,
    /// Kills the service if the test ends before it exits; gone once it is reaped.
    guard: Option<PidGuard>,
}

impl SwrkClient {
    /// Starts `criu swrk 3` (`criu` is the binary) with its end of the pair as fd 3, its
    /// stderr to `stderr_log`. Every receive gives up after `timeout`.
    pub fn start(criu: &Path, stderr_log: &Path, timeout: Duration) -> Self {
        let (ours, theirs) = socket::socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .expect("socketpair");
        let tv = TimeVal::new(timeout.as_secs() as i64, 0);
        socket::setsockopt(&ours, sockopt::ReceiveTimeout, &tv).expect("SO_RCVTIMEO");
        let log = std::fs::File::create(stderr_log).expect("stderr log");
        let raw = theirs.as_raw_fd();
        let mut cmd = Command::new(criu);
        cmd.args(["swrk", "3"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        // SAFETY: dup2 is async-signal-safe; it runs in the forked child before exec and
        // touches nothing but the child's fd table (the copy at 3 has no FD_CLOEXEC).
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(raw, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("start criu swrk");
        drop(theirs);
        let guard = PidGuard::new(child.id() as i32);
        SwrkClient {
            sock: ours,
            child,
            guard: Some(guard),
        }
    }

    /// The service's pid.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends raw bytes as one packet (garbage, for the error paths).
    pub fn send_raw(&self, bytes: &[u8]) {
        socket::send(self.sock.as_raw_fd(), bytes, MsgFlags::MSG_NOSIGNAL).expect("send");
    }

    /// Sends a request.
    pub fn send(&self, req: &CriuReq) {
        self.send_raw(&req.encode_to_vec());
    }

    /// Receives one response and the fds attached to it; `None` when the service closed.
    pub fn recv(&self) -> Option<(CriuResp, Vec<OwnedFd>)> {
        let mut buf = vec![0u8; 1 << 20];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 4]);
        let msg = socket::recvmsg::<()>(
            self.sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .expect("recvmsg from criu swrk (timed out?)");
        let mut fds = Vec::new();
        for c in msg.cmsgs().expect("cmsgs") {
            if let socket::ControlMessageOwned::ScmRights(v) = c {
                use std::os::fd::FromRawFd;
                // SAFETY: the kernel just installed these fds for us; we own them now.
                fds.extend(v.into_iter().map(|f| unsafe { OwnedFd::from_raw_fd(f) }));
            }
        }
        let n = msg.bytes;
        if n == 0 {
            return None;
        }
        Some((CriuResp::decode(&buf[..n]).expect("a criu_resp"), fds))
    }

    /// Sends `req` and returns the final response, answering each NOTIFY on the way with
    /// `ack(notify)` (its `notify_success`); also returns every notification seen, in order.
    pub fn call(
        &self,
        req: &CriuReq,
        mut ack: impl FnMut(&CriuNotify) -> bool,
    ) -> (Option<CriuResp>, Vec<CriuNotify>) {
        self.send(req);
        let mut seen = Vec::new();
        loop {
            let Some((resp, _fds)) = self.recv() else {
                return (None, seen);
            };
            if resp.r#type != CriuReqType::Notify as i32 {
                return (Some(resp), seen);
            }
            let n = resp.notify.clone().unwrap_or_default();
            let ok = ack(&n);
            seen.push(n);
            self.send(&CriuReq {
                r#type: CriuReqType::Notify as i32,
                notify_success: Some(ok),
                ..CriuReq::default()
            });
        }
    }

    /// Closes our end and waits (at most `timeout`) for the service to exit.
    pub fn finish(mut self, timeout: Duration) -> ExitStatus {
        let _ = socket::shutdown(self.sock.as_raw_fd(), socket::Shutdown::Write);
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().expect("wait criu swrk") {
                // Reaped: its pid may be reused, so it must not be killed by the guard.
                std::mem::forget(self.guard.take());
                return st;
            }
            assert!(Instant::now() < deadline, "criu swrk did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Our end of the socket (to poll it).
    pub fn socket(&self) -> std::os::fd::BorrowedFd<'_> {
        self.sock.as_fd()
    }
}
