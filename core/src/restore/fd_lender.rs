//! Fd lenders: small helper processes that let a restored task without privilege take a file
//! of ours with `pidfd_getfd`.
//!
//! `pidfd_getfd` needs the caller to be allowed to ptrace the fd's owner
//! (`PTRACE_MODE_ATTACH_REALCREDS`). Once a task's credentials are restored to another uid
//! (or to a uid 0 without CAP_SYS_PTRACE), it may no longer ptrace criu, and the plugins'
//! late installs (`RestoreContext::install_fd` in `finish` and the live stages) would fail
//! with EPERM. A lender is forked by criu with the task's real uid and gid in all three
//! slots, no capabilities and the dumpable flag on: the task may ptrace it. The lender holds
//! nothing but its socket to criu; criu passes it one file at a time (`SCM_RIGHTS`), the
//! task takes it from the lender, and criu tells the lender to close it again.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::sys::socket::{
    AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType, recv, sendmsg, socketpair,
};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

/// A live lender process of one (uid, gid).
#[derive(Debug)]
pub(crate) struct FdLender {
    pid: Pid,
    sock: OwnedFd,
}

/// The real uid and gid of `pid` (the first field of `Uid:`/`Gid:` in its status).
pub(crate) fn real_ids(pid: i32) -> std::io::Result<(u32, u32)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_real_ids(&status).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("no Uid:/Gid: lines in /proc/{pid}/status"),
        )
    })
}

fn parse_real_ids(status: &str) -> Option<(u32, u32)> {
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    };
    Some((field("Uid:")?, field("Gid:")?))
}

impl FdLender {
    /// Forks a lender with uid and gid `ids`; returns once it runs with them.
    pub(crate) fn spawn(ids: (u32, u32)) -> std::io::Result<Self> {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: the child runs only `lender_main`, which makes raw syscalls on its stack
        // and never returns (no allocation, no lock: criu may have other threads).
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if pid == 0 {
            lender_main(theirs.as_raw_fd(), parent, ids);
        }
        drop(theirs);
        let lender = FdLender {
            pid: Pid::from_raw(pid),
            sock: ours,
        };
        // One byte once the credentials are dropped, or EOF if it could not drop them.
        let mut ready = [0u8; 1];
        match recv(lender.sock.as_raw_fd(), &mut ready, MsgFlags::empty()) {
            Ok(1) if ready[0] == b'r' => Ok(lender),
            Ok(_) => Err(std::io::Error::other(format!(
                "fd lender {pid} could not take uid {} gid {}",
                ids.0, ids.1
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// The lender's pid (the task opens a pidfd of it).
    pub(crate) fn pid(&self) -> u32 {
        self.pid.as_raw() as u32
    }

    /// Hands `fd` to the lender; returns its number there.
    pub(crate) fn lend(&self, fd: RawFd) -> std::io::Result<i32> {
        let fds = [fd];
        let iov = [IoSlice::new(&[0u8; 4])];
        let cmsg = [ControlMessage::ScmRights(&fds)];
        sendmsg::<()>(self.sock.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)?;
        self.reply()
    }

    /// Tells the lender to close its number `n` (the task has its copy).
    pub(crate) fn release(&self, n: i32) -> std::io::Result<()> {
        let msg = n.to_ne_bytes();
        let iov = [IoSlice::new(&msg)];
        sendmsg::<()>(self.sock.as_raw_fd(), &iov, &[], MsgFlags::empty(), None)?;
        self.reply().map(|_| ())
    }

    fn reply(&self) -> std::io::Result<i32> {
        let mut buf = [0u8; 4];
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = nix::sys::socket::recvmsg::<()>(
            self.sock.as_raw_fd(),
            &mut iov,
            None,
            MsgFlags::empty(),
        )?;
        if msg.bytes != 4 {
            return Err(std::io::Error::other(format!(
                "fd lender {} answered {} bytes",
                self.pid, msg.bytes
            )));
        }
        let n = i32::from_ne_bytes(buf);
        if n < 0 {
            return Err(std::io::Error::from_raw_os_error(-n));
        }
        Ok(n)
    }
}

impl Drop for FdLender {
    fn drop(&mut self) {
        // Our lender, by pid: it exits at EOF on its socket; the kill covers a stuck one.
        let _ = nix::sys::signal::kill(self.pid, nix::sys::signal::Signal::SIGKILL);
        let _ = waitpid(self.pid, None);
    }
}

/// The lender's whole life (child side of the fork): raw syscalls only.
fn lender_main(sock: RawFd, parent: libc::pid_t, (uid, gid): (u32, u32)) -> ! {
    // SAFETY: plain syscalls on integers and on buffers of this frame.
    unsafe {
        // Nothing of criu's but the socket: other processes of that uid may ptrace us.
        libc::syscall(libc::SYS_close_range, 0u32, (sock - 1) as u32, 0u32);
        libc::syscall(libc::SYS_close_range, (sock + 1) as u32, u32::MAX, 0u32);
        // Raw syscalls: glibc's set*id wrappers would signal threads the child does not have.
        let ok = libc::syscall(libc::SYS_setgroups, 0usize, std::ptr::null::<u32>()) == 0
            && libc::syscall(libc::SYS_setresgid, gid, gid, gid) == 0
            && libc::syscall(libc::SYS_setresuid, uid, uid, uid) == 0
            // Without keep-caps, a uid change from 0 clears the capability sets; a lender
            // of uid 0 drops them by hand (the task may have none).
            && drop_caps() == 0
            && libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == 0
            && libc::prctl(libc::PR_SET_DUMPABLE, 1) == 0
            && libc::getppid() == parent;
        if !ok || libc::write(sock, b"r".as_ptr().cast(), 1) != 1 {
            libc::_exit(1);
        }
        loop {
            let mut buf = [0u8; 4];
            let mut iov = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: 4,
            };
            // Room for one cmsghdr with one int, 8-byte aligned.
            let mut space = [0u64; 4];
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = space.as_mut_ptr().cast();
            msg.msg_controllen = std::mem::size_of_val(&space);
            let got = libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC);
            if got <= 0 {
                libc::_exit(0);
            }
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            let answer: i32 = if !cmsg.is_null()
                && (*cmsg).cmsg_level == libc::SOL_SOCKET
                && (*cmsg).cmsg_type == libc::SCM_RIGHTS
            {
                std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<i32>())
            } else if got == 4 {
                let n = i32::from_ne_bytes(buf);
                if libc::close(n) == 0 {
                    0
                } else {
                    -*libc::__errno_location()
                }
            } else {
                -libc::EINVAL
            };
            let out = answer.to_ne_bytes();
            if libc::write(sock, out.as_ptr().cast(), 4) != 4 {
                libc::_exit(1);
            }
        }
    }
}

/// Clears every capability set of the calling thread (`capset` with zeroed data, v3).
///
/// # Safety
/// A plain syscall on buffers of this frame.
unsafe fn drop_caps() -> libc::c_long {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    let mut hdr = Header {
        version: 0x2008_0522,
        pid: 0,
    };
    let mut data = [0u32; 6];
    // SAFETY: header and two zeroed data structs (3 u32 each), as capset v3 reads.
    unsafe { libc::syscall(libc::SYS_capset, &mut hdr, data.as_mut_ptr()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_ids_are_the_first_fields() {
        let status = "Name:\tx\nUid:\t18943\t0\t0\t0\nGid:\t100\t5\t5\t5\n";
        assert_eq!(parse_real_ids(status), Some((18943, 100)));
        assert_eq!(parse_real_ids("Name:\tx\n"), None);
    }

    #[test]
    fn a_lender_of_another_uid_lends_and_closes() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipping: needs root to fork a lender of another uid");
            return;
        }
        let lender = FdLender::spawn((65534, 65534)).expect("spawn lender");
        let status = std::fs::read_to_string(format!("/proc/{}/status", lender.pid())).unwrap();
        assert!(status.contains("Uid:\t65534\t65534\t65534"), "{status}");
        assert!(status.contains("CapPrm:\t0000000000000000"), "{status}");
        let (r, w) = nix::unistd::pipe().unwrap();
        let n = lender.lend(w.as_raw_fd()).expect("lend");
        let link = std::fs::read_link(format!("/proc/{}/fd/{n}", lender.pid())).unwrap();
        let ours = std::fs::read_link(format!("/proc/self/fd/{}", w.as_raw_fd())).unwrap();
        assert_eq!(link, ours);
        lender.release(n).expect("release");
        assert!(
            std::fs::read_link(format!("/proc/{}/fd/{n}", lender.pid())).is_err(),
            "fd {n} still open in the lender"
        );
        assert!(lender.release(n).is_err(), "closing twice must fail");
        drop((r, w));
    }
}
