//! A socket's receive queue: read at dump without consuming it (`MSG_PEEK` from
//! `SO_PEEK_OFF` 0, the option put back afterwards) and queued again at restore, one
//! `sendmsg` per message so that datagram and seqpacket boundaries stay.
//!
//! Control messages found in a queue are sorted in [`control_of`]. Fds in flight
//! (`SCM_RIGHTS`): a peek installs duplicates of them in criu; [`peek`] hands them out with
//! their message ([`Peeked`]) so that the dump can give each its file id, and closes them
//! when dropped. At restore each message goes out again with its fds ([`send`]).

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::{ControlMessageOwned, MsgFlags, UnixAddr, recvmsg, sendmsg};

use crate::sys::{self, SO_PASSPIDFD, SO_PEEK_OFF};

/// One message of a receive queue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Packet {
    /// Its bytes.
    pub data: Vec<u8>,
    /// The sender's name, datagram sockets only (empty: an unbound sender, or a stream).
    pub addr: Vec<u8>,
    /// The sender's credentials the message carries (`SCM_CREDENTIALS`), when it has some.
    pub creds: Option<Creds>,
    /// The file ids of the fds it carries (`SCM_RIGHTS`), in order (restore side).
    pub rights: Vec<u32>,
}

/// One message peeked at dump, with criu's duplicates of the fds it carries.
#[derive(Debug)]
pub(crate) struct Peeked {
    /// The message (its `rights` still empty: the dump gives the fds their ids).
    pub packet: Packet,
    /// The fds in flight, in the order the message carries them.
    pub fds: Vec<OwnedFd>,
}

/// Credentials attached to a queued message: the sender's pid, uid and gid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Creds {
    /// The sender's pid (as criu sees it).
    pub pid: i32,
    /// Its uid.
    pub uid: u32,
    /// Its gid.
    pub gid: u32,
}

/// Why a queue could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum QueueError {
    /// A system call failed.
    #[error("{op} failed")]
    Sys {
        /// The call.
        op: &'static str,
        /// Its errno.
        #[source]
        source: Errno,
    },
    /// The queue holds something the images cannot carry yet.
    #[error("{0}")]
    Unsupported(String),
}

fn sys(op: &'static str) -> impl Fn(Errno) -> QueueError {
    move |source| QueueError::Sys { op, source }
}

/// What a control message of a queued message means for the dump.
enum Control {
    /// The sender's credentials (`SCM_CREDENTIALS`), kept with the message.
    Creds(Creds),
    /// Nothing to keep (`SCM_SECURITY`, credentials of a message that carries none).
    Ignored,
    /// Fds in flight (`SCM_RIGHTS`): criu's duplicates, installed by the peek.
    Rights(Vec<OwnedFd>),
}

fn control_of(c: &ControlMessageOwned) -> Control {
    match c {
        ControlMessageOwned::ScmRights(fds) => {
            Control::Rights(fds.iter().map(|&fd| sys::own_received(fd)).collect())
        }
        // pid 0: the message carries no credentials (only shown because we asked).
        ControlMessageOwned::ScmCredentials(c) if c.pid() != 0 => Control::Creds(Creds {
            pid: c.pid(),
            uid: c.uid(),
            gid: c.gid(),
        }),
        _ => Control::Ignored,
    }
}

/// The fds in flight among `cmsgs` (criu's duplicates) and the sender's credentials.
fn controls<'a>(
    cmsgs: nix::Result<impl Iterator<Item = ControlMessageOwned> + 'a>,
) -> Result<(Vec<OwnedFd>, Option<Creds>), Errno> {
    let mut rights = Vec::new();
    let mut creds = None;
    for c in cmsgs? {
        match control_of(&c) {
            Control::Rights(fds) => rights.extend(fds),
            Control::Creds(c) => creds = Some(c),
            Control::Ignored => {}
        }
    }
    Ok((rights, creds))
}

/// The name bytes of a sender address (`\0name` for an abstract one).
pub(crate) fn name_of(addr: Option<&UnixAddr>) -> Vec<u8> {
    use nix::sys::socket::SockaddrLike;
    use std::os::unix::ffi::OsStrExt;
    // A sender without a name leaves msg_namelen 0 or just the family: no name (and nix's
    // accessors assert on such an address).
    let Some(a) = addr.filter(|a| a.len() as usize > std::mem::size_of::<libc::sa_family_t>())
    else {
        return Vec::new();
    };
    if let Some(p) = a.path() {
        return p.as_os_str().as_bytes().to_vec();
    }
    match a.as_abstract() {
        Some(n) => [&[0u8][..], n].concat(),
        None => Vec::new(),
    }
}

/// The address a name stands for (`\0name`: abstract).
pub(crate) fn addr_of(name: &[u8]) -> Result<UnixAddr, Errno> {
    match name.split_first() {
        Some((0, abs)) => UnixAddr::new_abstract(abs),
        _ => {
            use std::os::unix::ffi::OsStrExt;
            UnixAddr::new(std::ffi::OsStr::from_bytes(name))
        }
    }
}

/// Every message queued on `sock` (a duplicate of the task's socket), left in place.
/// `datagrams`: `SOCK_DGRAM`/`SOCK_SEQPACKET` (one message per record); `with_addr`:
/// `SOCK_DGRAM` (sender names kept).
/// `eof_after`: a seqpacket socket whose peer shut down its side answers every peek past
/// its last record with 0 bytes, like an empty record; past this many bytes such an answer
/// ends the queue.
pub(crate) fn peek(
    sock: BorrowedFd<'_>,
    datagrams: bool,
    with_addr: bool,
    eof_after: Option<usize>,
) -> Result<Vec<Peeked>, QueueError> {
    raise_nofile().map_err(sys("setrlimit(RLIMIT_NOFILE)"))?;
    let saved_off = sys::get_int(sock, libc::SOL_SOCKET, SO_PEEK_OFF)
        .map_err(sys("getsockopt(SO_PEEK_OFF)"))?;
    // With SO_PASSPIDFD on, every peek would make a pidfd in criu: off while we peek.
    let saved_pidfd =
        sys::get_optional(sock, SO_PASSPIDFD).map_err(sys("getsockopt(SO_PASSPIDFD)"))?;
    // With SO_PASSCRED on, each peek shows the credentials a message carries.
    let saved_cred = sys::get_int(sock, libc::SOL_SOCKET, libc::SO_PASSCRED)
        .map_err(sys("getsockopt(SO_PASSCRED)"))?;
    if saved_cred == 0 {
        sys::set_int(sock, libc::SOL_SOCKET, libc::SO_PASSCRED, 1)
            .map_err(sys("setsockopt(SO_PASSCRED)"))?;
    }
    if saved_pidfd == Some(1) {
        sys::set_int(sock, libc::SOL_SOCKET, SO_PASSPIDFD, 0)
            .map_err(sys("setsockopt(SO_PASSPIDFD)"))?;
    }
    let result = sys::set_int(sock, libc::SOL_SOCKET, SO_PEEK_OFF, 0)
        .map_err(sys("setsockopt(SO_PEEK_OFF)"))
        .and_then(|()| peek_all(sock, datagrams, with_addr, eof_after));
    // Put the task's settings back whatever happened.
    let back = sys::set_int(sock, libc::SOL_SOCKET, SO_PEEK_OFF, saved_off)
        .map_err(sys("setsockopt(SO_PEEK_OFF) back"));
    let back_pidfd = match saved_pidfd {
        Some(1) => sys::set_int(sock, libc::SOL_SOCKET, SO_PASSPIDFD, 1)
            .map_err(sys("setsockopt(SO_PASSPIDFD) back")),
        _ => Ok(()),
    };
    let back_cred = match saved_cred {
        0 => sys::set_int(sock, libc::SOL_SOCKET, libc::SO_PASSCRED, 0)
            .map_err(sys("setsockopt(SO_PASSCRED) back")),
        _ => Ok(()),
    };
    let packets = result?;
    back_cred?;
    back?;
    back_pidfd?;
    Ok(packets)
}

/// More messages than any receive buffer holds: a peek loop that does not end.
const MAX_PACKETS: usize = 1 << 20;

fn peek_all(
    sock: BorrowedFd<'_>,
    datagrams: bool,
    with_addr: bool,
    eof_after: Option<usize>,
) -> Result<Vec<Peeked>, QueueError> {
    let mut packets = Vec::new();
    let mut off: usize = 0;
    let mut buf = vec![0u8; 64 << 10];
    let mut flags = MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC;
    if datagrams {
        // A datagram's whole length, also when it does not fit.
        flags |= MsgFlags::MSG_TRUNC;
    }
    loop {
        // Room for SCM_MAX_FD (253) fds and the credentials: more than a message can carry.
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 253], libc::ucred);
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        // Stream and seqpacket messages have no address (nix's UnixAddr asserts one).
        let got = if with_addr {
            recvmsg::<UnixAddr>(sock.as_raw_fd(), &mut iov, Some(&mut cmsg), flags).map(|m| {
                (
                    m.bytes,
                    m.flags,
                    name_of(m.address.as_ref()),
                    controls(m.cmsgs()),
                )
            })
        } else {
            recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut cmsg), flags)
                .map(|m| (m.bytes, m.flags, Vec::new(), controls(m.cmsgs())))
        };
        let (len, addr, (rights, creds)) = match got {
            // The buffer holds any message's fds: criu ran out of fds even at its hard
            // RLIMIT_NOFILE (raised in `peek`). The fds it could take are not shown (nix
            // reads no truncated control data): they stay open until criu exits, the dump
            // failing anyway.
            Ok((_, f, _, _)) if f.contains(MsgFlags::MSG_CTRUNC) => {
                return Err(QueueError::Unsupported(format!(
                    "message {} of the queue carries more fds (SCM_RIGHTS) than criu can \
                     receive under its RLIMIT_NOFILE: raise its hard limit",
                    packets.len()
                )));
            }
            Ok((len, _, addr, controls)) => (
                len,
                addr,
                controls.map_err(sys("reading control messages"))?,
            ),
            Err(Errno::EAGAIN) => return Ok(packets),
            Err(e) => return Err(sys("recvmsg(MSG_PEEK)")(e)),
        };
        if len == 0 && (!datagrams || eof_after.is_some_and(|total| off >= total)) {
            // End of stream (the peer shut down its side): nothing more is queued.
            return Ok(packets);
        }
        if packets.len() >= MAX_PACKETS {
            return Err(QueueError::Unsupported(format!(
                "the queue does not end after {MAX_PACKETS} messages"
            )));
        }
        // Too long for the buffer: peek it again, whole, from where it starts. A stream
        // write carrying fds that fills the buffer may go on: a second peek into the
        // same write would show its fds again.
        if (datagrams && len > buf.len()) || (!datagrams && !rights.is_empty() && len == buf.len())
        {
            let want = if datagrams { len } else { 2 * buf.len() };
            buf.resize(want, 0);
            set_peek_off(sock, off)?;
            continue;
        }
        // A stream peek glues the writes before the one carrying fds to it, and shows no
        // boundary between them (a peek of their first byte already shows the fds): they
        // are queued again as one write, which a reader taking all that is queued (as
        // recvmsg does) sees the same, as with CRIU.
        off += len;
        packets.push(Peeked {
            packet: Packet {
                data: buf[..len].to_vec(),
                addr,
                creds,
                rights: Vec::new(),
            },
            fds: rights,
        });
    }
}

/// Raises criu's soft `RLIMIT_NOFILE` to its hard limit (as CRIU does): a peek installs
/// the fds in flight in criu, and a message whose fds do not fit comes truncated.
fn raise_nofile() -> Result<(), Errno> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
        tracing::debug!(
            from = soft,
            to = hard,
            "raised RLIMIT_NOFILE for fds in flight"
        );
    }
    Ok(())
}

fn set_peek_off(sock: BorrowedFd<'_>, off: usize) -> Result<(), QueueError> {
    let at =
        i32::try_from(off).map_err(|_| QueueError::Unsupported("a queue over 2 GiB".into()))?;
    sys::set_int(sock, libc::SOL_SOCKET, SO_PEEK_OFF, at).map_err(sys("setsockopt(SO_PEEK_OFF)"))
}

/// Sends `data` from `from` as one message: to `to` (an unconnected datagram target) or to
/// `from`'s peer, with `creds` as its `SCM_CREDENTIALS` when given (root may name any
/// existing pid) and `fds` as its `SCM_RIGHTS` when not empty. Never blocks: a queue that
/// does not fit is an error.
pub(crate) fn send(
    from: BorrowedFd<'_>,
    to: Option<&UnixAddr>,
    data: &[u8],
    creds: Option<Creds>,
    fds: &[std::os::fd::RawFd],
) -> Result<(), Errno> {
    use nix::sys::socket::{ControlMessage, UnixCredentials};
    let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL;
    let ucred = creds.map(|c| {
        UnixCredentials::from(libc::ucred {
            pid: c.pid,
            uid: c.uid,
            gid: c.gid,
        })
    });
    let mut cmsg: Vec<ControlMessage<'_>> =
        ucred.iter().map(ControlMessage::ScmCredentials).collect();
    if !fds.is_empty() {
        cmsg.push(ControlMessage::ScmRights(fds));
    }
    let iov = [std::io::IoSlice::new(data)];
    let n = sendmsg(from.as_raw_fd(), &iov, &cmsg, flags, to)?;
    if n != data.len() {
        // Stream sockets: a partial write means the receive buffer is full.
        return Err(Errno::EAGAIN);
    }
    Ok(())
}
