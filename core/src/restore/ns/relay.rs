//! The fd relay of a restore into a new pid namespace.
//!
//! A task being restored fetches its fds from criu with `pidfd_open(criu)` then
//! `pidfd_getfd`, both run by the task itself. Inside a new pid namespace criu has no pid,
//! so a small process of criu is forked into the namespace (at a pid no task of the tree
//! uses), receives each description criu opened over a socket pair (SCM_RIGHTS) and holds
//! it: the tasks fetch from it instead. It ends when criu closes its end of the socket,
//! before any task of the tree runs.

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::sched::{CloneFlags, setns};
use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
use nix::unistd::Pid;

use crate::sys::clone3::{self, ForkResult};

use super::super::error::{RestoreError, Result};

/// The relay process: its pid inside the namespace and in ours, and criu's end of the socket.
#[derive(Debug)]
pub struct Relay {
    inner: i32,
    host: Pid,
    /// None once stopped. Shared with the plugins' task services, hence the lock.
    sock: std::sync::Mutex<Option<UnixStream>>,
}

fn err(root: i32, step: &str, source: nix::errno::Errno) -> RestoreError {
    RestoreError::Local {
        pid: root,
        step: format!("fd relay: {step}"),
        source,
    }
}

impl Relay {
    /// Forks the relay into the pid namespace of `root_host` (the new root, pid 1 there)
    /// at pid `inner` there.
    pub fn start(root_host: Pid, inner: i32) -> Result<Relay> {
        let r = root_host.as_raw();
        let io = |step: &str, e: std::io::Error| {
            err(
                r,
                step,
                nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
            )
        };
        let theirs = std::fs::File::open(format!("/proc/{r}/ns/pid"))
            .map_err(|e| io("opening the root's pid namespace", e))?;
        let ours = std::fs::File::open("/proc/self/ns/pid")
            .map_err(|e| io("opening criu's pid namespace", e))?;
        let (mine, theirs_sock) = UnixStream::pair().map_err(|e| io("socketpair", e))?;
        setns(theirs.as_fd(), CloneFlags::CLONE_NEWPID)
            .map_err(|e| err(r, "setns into the root's pid namespace", e))?;
        // SAFETY: the child only runs `serve` (raw syscalls on fds and a stack buffer, no
        // allocation) and ends with child_exit.
        let forked = unsafe { clone3::fork_with_tid(Pid::from_raw(inner), 0) };
        let back = setns(ours.as_fd(), CloneFlags::CLONE_NEWPID);
        match forked {
            Ok(ForkResult::Child) => serve(theirs_sock.as_raw_fd()),
            Ok(ForkResult::Parent { child }) => {
                drop(theirs_sock);
                back.map_err(|e| err(r, "setns back into criu's pid namespace", e))?;
                tracing::debug!(inner, host = child.as_raw(), "fd relay started");
                Ok(Relay {
                    inner,
                    host: child,
                    sock: std::sync::Mutex::new(Some(mine)),
                })
            }
            Err(e) => {
                let _ = back;
                Err(err(
                    r,
                    &format!("clone3 at pid {inner} in the namespace"),
                    e,
                ))
            }
        }
    }

    /// The relay's pid inside the namespace (what a task passes to `pidfd_open`).
    pub fn inner_pid(&self) -> i32 {
        self.inner
    }

    /// Hands `fd` (open in criu) to the relay; returns its number there.
    pub fn put(&self, fd: RawFd) -> Result<RawFd> {
        let h = self.host.as_raw();
        let io_err = |step: &str, e: std::io::Error| {
            err(
                h,
                step,
                nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
            )
        };
        let guard = self.sock.lock().unwrap_or_else(|p| p.into_inner());
        let sock = guard.as_ref().ok_or_else(|| {
            err(
                h,
                "handing over an fd after the end",
                nix::errno::Errno::EBADF,
            )
        })?;
        let fds = [fd];
        let cmsg = [ControlMessage::ScmRights(&fds)];
        let iov = [std::io::IoSlice::new(b"f")];
        sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)
            .map_err(|e| err(h, &format!("sending fd {fd}"), e))?;
        let mut num = [0u8; 4];
        (&*sock)
            .read_exact(&mut num)
            .map_err(|e| io_err("reading the relay's fd number", e))?;
        let n = i32::from_le_bytes(num);
        if n < 0 {
            return Err(err(
                h,
                &format!("the relay could not take fd {fd}"),
                nix::errno::Errno::from_raw(-n),
            ));
        }
        Ok(n)
    }

    /// Ends the relay (closing everything it holds) and reaps it.
    pub fn stop(&self) {
        let sock = self.sock.lock().unwrap_or_else(|p| p.into_inner()).take();
        if sock.is_none() {
            return;
        }
        drop(sock);
        while let Err(nix::errno::Errno::EINTR) = nix::sys::wait::waitpid(self.host, None) {}
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let open = self.sock.get_mut().map_or(true, |s| s.is_some());
        if open {
            let _ = nix::sys::signal::kill(self.host, nix::sys::signal::Signal::SIGKILL);
            self.stop();
        }
    }
}

/// The relay's loop: receive one fd, answer its number (or -errno), until criu hangs up.
fn serve(sock: RawFd) -> ! {
    // Nothing of criu but our socket: criu's end must be closed for its close to be seen
    // as EOF, and copies of its other descriptions would outlive the restore's use of them.
    if sock > 0 {
        let _ = clone3::close_range(0, sock - 1);
    }
    let _ = clone3::close_range(sock + 1, RawFd::MAX);
    loop {
        let mut byte = [0u8; 1];
        let mut cbuf = [0u64; 8];
        let mut iov = libc::iovec {
            iov_base: byte.as_mut_ptr().cast(),
            iov_len: 1,
        };
        // SAFETY: zeroed msghdr is valid; every pointer set below points to a live stack
        // buffer of the stated length.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&cbuf);
        // SAFETY: msg describes valid buffers (above).
        let n = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n <= 0 {
            clone3::child_exit(0);
        }
        let mut got: i32 = -libc::EBADMSG;
        // SAFETY: CMSG_FIRSTHDR/CMSG_DATA walk the control buffer the kernel filled.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            if !c.is_null()
                && (*c).cmsg_level == libc::SOL_SOCKET
                && (*c).cmsg_type == libc::SCM_RIGHTS
            {
                got = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<i32>());
            }
        }
        let out = got.to_le_bytes();
        // SAFETY: writes 4 bytes from a stack buffer.
        if unsafe { libc::write(sock, out.as_ptr().cast(), 4) } != 4 {
            clone3::child_exit(1);
        }
    }
}

/// A pid for the relay in the new namespace that no task or thread of the tree uses:
/// counting down from `pid_max - 1`.
pub fn free_pid(used: &std::collections::BTreeSet<i32>, pid_max: i32) -> i32 {
    let mut p = pid_max - 1;
    while used.contains(&p) {
        p -= 1;
    }
    p
}
