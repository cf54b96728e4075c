//! One end of the RPC socket (`SOCK_SEQPACKET`): one packet is one protobuf message, as
//! CRIU's `recv_criu_msg`/`send_criu_msg_with_fd` exchange them.

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::{self, ControlMessage, MsgFlags, sockopt};

/// Largest request accepted: runc's biggest requests are a few KiB; anything near this is
/// not a criu_req.
pub const MAX_PACKET: usize = 4 << 20;

/// A failure on the socket itself.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// `recv`/`send` failed.
    #[error("{op} on the RPC socket (fd {fd})")]
    Io {
        /// The call.
        op: &'static str,
        /// The socket.
        fd: i32,
        /// The errno.
        #[source]
        source: Errno,
    },
    /// The peer closed its end (or sent an empty packet, which CRIU reads the same way).
    #[error("the RPC client closed the connection")]
    Closed,
    /// A packet larger than [`MAX_PACKET`] (dropped).
    #[error("a {0}-byte packet on the RPC socket is larger than any request ({MAX_PACKET} max)")]
    TooLarge(usize),
}

/// The service's end of the connection.
#[derive(Debug)]
pub struct Channel {
    fd: OwnedFd,
}

impl Channel {
    /// Takes `fd` (a connected `SOCK_SEQPACKET` unix socket).
    pub fn new(fd: OwnedFd) -> Self {
        Channel { fd }
    }

    /// The socket, for a notifier that sends on it during a dump or restore.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Receives one packet.
    pub fn recv(&self) -> Result<Vec<u8>, TransportError> {
        recv_packet(self.fd.as_fd())
    }

    /// Sends one packet, with `fd` attached (`SCM_RIGHTS`) when given.
    pub fn send(&self, bytes: &[u8], fd: Option<BorrowedFd<'_>>) -> Result<(), TransportError> {
        send_packet(self.fd.as_fd(), bytes, fd)
    }

    /// The pid of the process at the other end (`SO_PEERCRED`: the socket's creator).
    pub fn peer_pid(&self) -> Result<i32, TransportError> {
        socket::getsockopt(&self.fd, sockopt::PeerCredentials)
            .map(|c| c.pid())
            .map_err(|source| io_err("getsockopt(SO_PEERCRED)", self.fd.as_fd(), source))
    }
}

fn io_err(op: &'static str, fd: BorrowedFd<'_>, source: Errno) -> TransportError {
    TransportError::Io {
        op,
        fd: fd.as_raw_fd(),
        source,
    }
}

/// Receives one packet from `fd`: its length first (`MSG_PEEK | MSG_TRUNC`), then the packet.
pub fn recv_packet(fd: BorrowedFd<'_>) -> Result<Vec<u8>, TransportError> {
    let raw = fd.as_raw_fd();
    let len = loop {
        match socket::recv(raw, &mut [], MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC) {
            Err(Errno::EINTR) => continue,
            r => break r.map_err(|e| io_err("recv", fd, e))?,
        }
    };
    if len > MAX_PACKET {
        // Consumed, so that the next request can be read.
        let _ = socket::recv(raw, &mut [], MsgFlags::MSG_TRUNC);
        return Err(TransportError::TooLarge(len));
    }
    let mut buf = vec![0u8; len];
    let got = loop {
        match socket::recv(raw, &mut buf, MsgFlags::MSG_TRUNC) {
            Err(Errno::EINTR) => continue,
            r => break r.map_err(|e| io_err("recv", fd, e))?,
        }
    };
    if got == 0 {
        return Err(TransportError::Closed);
    }
    buf.truncate(got.min(len));
    Ok(buf)
}

/// Sends `bytes` as one packet on `fd`, with `pass` attached as `SCM_RIGHTS` when given.
pub fn send_packet(
    fd: BorrowedFd<'_>,
    bytes: &[u8],
    pass: Option<BorrowedFd<'_>>,
) -> Result<(), TransportError> {
    let iov = [IoSlice::new(bytes)];
    let fds = pass.map(|p| [p.as_raw_fd()]);
    let cmsgs: Vec<ControlMessage<'_>> = fds
        .as_ref()
        .map(|f| vec![ControlMessage::ScmRights(f)])
        .unwrap_or_default();
    loop {
        match socket::sendmsg::<()>(fd.as_raw_fd(), &iov, &cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
            Err(Errno::EINTR) => continue,
            Err(Errno::EPIPE | Errno::ECONNRESET) => return Err(TransportError::Closed),
            r => return r.map(drop).map_err(|e| io_err("sendmsg", fd, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{AddressFamily, ControlMessageOwned, SockFlag, SockType, recvmsg};
    use std::io::IoSliceMut;

    fn pair() -> (Channel, OwnedFd) {
        let (a, b) = socket::socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        (Channel::new(a), b)
    }

    #[test]
    fn packets_keep_their_bounds_and_an_empty_one_reads_as_closed() {
        let (ch, peer) = pair();
        send_packet(peer.as_fd(), b"one", None).unwrap();
        send_packet(peer.as_fd(), &[7u8; 70_000], None).unwrap();
        assert_eq!(ch.recv().unwrap(), b"one");
        assert_eq!(ch.recv().unwrap().len(), 70_000);
        assert_eq!(ch.peer_pid().unwrap(), std::process::id() as i32);
        drop(peer);
        assert!(matches!(ch.recv(), Err(TransportError::Closed)));
    }

    #[test]
    fn an_fd_travels_with_its_packet() {
        let (ch, peer) = pair();
        let file = std::fs::File::open("/proc/self/status").unwrap();
        ch.send(b"notify", Some(file.as_fd())).unwrap();
        let mut buf = [0u8; 16];
        let mut iov = [IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let msg = recvmsg::<()>(
            peer.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::empty(),
        )
        .unwrap();
        let got: Vec<_> = msg.cmsgs().unwrap().collect();
        assert_eq!(msg.bytes, 6);
        match got.as_slice() {
            [ControlMessageOwned::ScmRights(fds)] => {
                assert_eq!(fds.len(), 1);
                let _ = nix::unistd::close(fds[0]);
            }
            other => panic!("{other:?}"),
        }
        // The client side closing is seen as such on the next send.
        drop(peer);
        assert!(matches!(ch.send(b"x", None), Err(TransportError::Closed)));
    }
}
