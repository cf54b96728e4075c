//! A netlink socket of the calling thread's network namespace (`NETLINK_ROUTE`, or
//! `NETLINK_NETFILTER` to list nftables tables): dump requests and acknowledged requests.

use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::{
    MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, recv, sendto, socket,
};

use super::nlmsg::{self, Builder};

/// One netlink socket; requests are numbered from 1.
#[derive(Debug)]
pub struct NlSocket {
    fd: OwnedFd,
    seq: u32,
}

/// Why a netlink exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum NlError {
    #[error("{op}")]
    Sys {
        op: &'static str,
        #[source]
        source: Errno,
    },
    #[error("the kernel answered with errno {}", Errno::from_raw(*.0))]
    Kernel(i32),
    #[error("malformed answer: {0}")]
    Malformed(String),
}

impl NlError {
    /// The errno the kernel answered with, if it did.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            NlError::Kernel(e) => Some(Errno::from_raw(*e)),
            NlError::Sys { source, .. } => Some(*source),
            NlError::Malformed(_) => None,
        }
    }
}

impl NlSocket {
    /// A `NETLINK_ROUTE` socket.
    pub fn route() -> Result<NlSocket, NlError> {
        Self::open(SockProtocol::NetlinkRoute)
    }

    /// A `NETLINK_NETFILTER` socket.
    pub fn netfilter() -> Result<NlSocket, NlError> {
        Self::open(SockProtocol::NetlinkNetFilter)
    }

    fn open(proto: SockProtocol) -> Result<NlSocket, NlError> {
        let fd = socket(
            nix::sys::socket::AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            proto,
        )
        .map_err(|source| NlError::Sys {
            op: "socket(AF_NETLINK)",
            source,
        })?;
        Ok(NlSocket { fd, seq: 0 })
    }

    fn send(&mut self, mut msg: Vec<u8>, flags: u16) -> Result<u32, NlError> {
        self.seq += 1;
        nlmsg::set_flags_seq(&mut msg, flags, self.seq);
        sendto(
            self.fd.as_raw_fd(),
            &msg,
            &NetlinkAddr::new(0, 0),
            MsgFlags::empty(),
        )
        .map_err(|source| NlError::Sys {
            op: "sendto(netlink)",
            source,
        })?;
        Ok(self.seq)
    }

    /// Receives answers to request `seq`, passing each message to `each` until it returns
    /// true (the last one).
    fn recv_until(
        &mut self,
        seq: u32,
        mut each: impl FnMut(&[u8]) -> Result<bool, NlError>,
    ) -> Result<(), NlError> {
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty()).map_err(|source| {
                NlError::Sys {
                    op: "recv(netlink)",
                    source,
                }
            })?;
            if n == 0 {
                return Err(NlError::Malformed("end of stream".into()));
            }
            for m in nlmsg::split(&buf[..n]).map_err(NlError::Malformed)? {
                if nlmsg::msg_seq(m) != seq {
                    continue;
                }
                if each(m)? {
                    return Ok(());
                }
            }
        }
    }

    /// Sends dump request `ty` (fixed part `fixed`) and returns every answer, whole.
    pub fn dump(&mut self, ty: u16, fixed: &[u8]) -> Result<Vec<Vec<u8>>, NlError> {
        let req = Builder::new(ty, 0, fixed).finish();
        let seq = self.send(req, nlmsg::F_REQUEST | nlmsg::F_DUMP)?;
        let mut out = Vec::new();
        self.recv_until(seq, |m| match nlmsg::msg_type(m) {
            nlmsg::DONE => Ok(true),
            nlmsg::ERROR => match nlmsg::error_code(m).map_err(NlError::Malformed)? {
                0 => Ok(true),
                e => Err(NlError::Kernel(e)),
            },
            _ => {
                out.push(m.to_vec());
                Ok(false)
            }
        })?;
        Ok(out)
    }

    /// Sends `msg` with `flags` (plus `NLM_F_REQUEST | NLM_F_ACK`) and waits for its answer.
    pub fn request(&mut self, msg: Vec<u8>, flags: u16) -> Result<(), NlError> {
        let seq = self.send(msg, flags | nlmsg::F_REQUEST | nlmsg::F_ACK)?;
        let mut result = Ok(());
        self.recv_until(seq, |m| {
            if nlmsg::msg_type(m) != nlmsg::ERROR {
                return Ok(false);
            }
            match nlmsg::error_code(m).map_err(NlError::Malformed)? {
                0 => {}
                e => result = Err(NlError::Kernel(e)),
            }
            Ok(true)
        })?;
        result
    }
}
