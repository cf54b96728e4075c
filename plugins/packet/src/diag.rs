//! Packet sockets as `sock_diag` shows them (`NETLINK_SOCK_DIAG`, `packet_diag_req` with
//! `PACKET_SHOW_INFO | MCLIST | RING_CFG | FANOUT`), as CRIU collects them: the interface,
//! version, reserve, copy threshold, timestamp source and flags, the memberships, both
//! rings' parameters and the fanout, most of which no `getsockopt` shows. The kernel lists
//! the sockets of the asking socket's network namespace: the query runs in a thread that
//! joins the namespace of the socket dumped. (Helper NL moves the inet plugin's exchange
//! into `criu-sk-common`; this one belongs there too.)

use std::collections::HashMap;
use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;
use nix::sched::{CloneFlags, setns};
use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, recv, sendto, socket,
};

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_HDRLEN: usize = 16;
/// `sizeof(struct packet_diag_msg)`: family, type, num, ino, cookie.
const MSG_LEN: usize = 16;
/// `PACKET_SHOW_INFO | PACKET_SHOW_MCLIST | PACKET_SHOW_RING_CFG | PACKET_SHOW_FANOUT`.
const SHOW: u32 = 0x1 | 0x2 | 0x4 | 0x8;
const PACKET_DIAG_INFO: u16 = 0;
const PACKET_DIAG_MCLIST: u16 = 1;
const PACKET_DIAG_RX_RING: u16 = 2;
const PACKET_DIAG_TX_RING: u16 = 3;
const PACKET_DIAG_FANOUT: u16 = 4;
/// `sizeof(struct packet_diag_mclist)`: index, count, type, alen, addr[32].
const MCLIST_LEN: usize = 44;
/// `MAX_ADDR_LEN`.
pub const MAX_ADDR_LEN: usize = 32;

/// `pdi_flags` bits.
pub const PDI_AUXDATA: u32 = 0x2;
/// `PDI_ORIGDEV`.
pub const PDI_ORIGDEV: u32 = 0x4;
/// `PDI_VNETHDR`.
pub const PDI_VNETHDR: u32 = 0x8;
/// `PDI_LOSS`.
pub const PDI_LOSS: u32 = 0x10;

/// `struct packet_diag_info`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Info {
    /// Bound interface (0: all).
    pub ifindex: u32,
    /// `PACKET_VERSION`.
    pub version: u32,
    /// `PACKET_RESERVE`.
    pub reserve: u32,
    /// `PACKET_COPY_THRESH`.
    pub copy_thresh: u32,
    /// `PACKET_TIMESTAMP`.
    pub tstamp: u32,
    /// `PDI_*` bits.
    pub flags: u32,
}

/// One `struct packet_diag_mclist`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Membership {
    /// Interface.
    pub index: u32,
    /// How many times it was added.
    pub count: u32,
    /// `PACKET_MR_*`.
    pub kind: u16,
    /// Its address (`alen` bytes).
    pub addr: Vec<u8>,
}

/// `struct packet_diag_ring`: the `tpacket_req3` that made the ring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ring {
    /// `tp_block_size`.
    pub block_size: u32,
    /// `tp_block_nr`.
    pub block_nr: u32,
    /// `tp_frame_size`.
    pub frame_size: u32,
    /// `tp_frame_nr`.
    pub frame_nr: u32,
    /// `tp_retire_blk_tov`.
    pub retire_tmo: u32,
    /// `tp_sizeof_priv`.
    pub sizeof_priv: u32,
    /// `tp_feature_req_word`.
    pub features: u32,
}

/// One packet socket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desc {
    /// `SOCK_RAW`, `SOCK_DGRAM` or `SOCK_PACKET`.
    pub sock_type: u8,
    /// Protocol, in host byte order (as the kernel reports it).
    pub num: u16,
    /// `PACKET_DIAG_INFO`.
    pub info: Info,
    /// `PACKET_DIAG_MCLIST`.
    pub mclist: Vec<Membership>,
    /// `PACKET_DIAG_RX_RING`.
    pub rx: Option<Ring>,
    /// `PACKET_DIAG_TX_RING`.
    pub tx: Option<Ring>,
    /// `PACKET_DIAG_FANOUT`: id | type << 16 | flags << 24.
    pub fanout: Option<u32>,
}

/// A failed `sock_diag` query.
#[derive(Debug, thiserror::Error)]
pub enum DiagError {
    /// A system call failed.
    #[error("sock_diag of packet sockets: {op} failed")]
    Sys {
        /// The call.
        op: &'static str,
        /// Its errno.
        #[source]
        source: Errno,
    },
    /// The kernel's answer did not parse.
    #[error("sock_diag of packet sockets: malformed answer: {0}")]
    Malformed(String),
}

fn sys_err(op: &'static str) -> impl Fn(Errno) -> DiagError {
    move |source| DiagError::Sys { op, source }
}

/// The dump request for every packet socket.
pub fn request() -> Vec<u8> {
    let len = NLMSG_HDRLEN + 20;
    let mut r = Vec::with_capacity(len);
    r.extend_from_slice(&(len as u32).to_ne_bytes());
    r.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    r.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    r.extend_from_slice(&1u32.to_ne_bytes()); // seq
    r.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel
    r.push(libc::AF_PACKET as u8);
    r.push(0); // sdiag_protocol
    r.extend_from_slice(&[0; 2]); // pad
    r.extend_from_slice(&0u32.to_ne_bytes()); // pdiag_ino: all
    r.extend_from_slice(&SHOW.to_ne_bytes());
    r.extend_from_slice(&[0xff; 8]); // cookie: none
    r
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn words<const N: usize>(p: &[u8], what: &str, ino: u32) -> Result<[u32; N], DiagError> {
    let mut w = [0u32; N];
    for (i, v) in w.iter_mut().enumerate() {
        *v = u32_at(p, i * 4).ok_or_else(|| {
            DiagError::Malformed(format!("{what} of {} bytes, socket {ino}", p.len()))
        })?;
    }
    Ok(w)
}

fn ring(p: &[u8], ino: u32) -> Result<Ring, DiagError> {
    let [
        block_size,
        block_nr,
        frame_size,
        frame_nr,
        retire_tmo,
        sizeof_priv,
        features,
    ] = words::<7>(p, "packet_diag_ring", ino)?;
    Ok(Ring {
        block_size,
        block_nr,
        frame_size,
        frame_nr,
        retire_tmo,
        sizeof_priv,
        features,
    })
}

fn mclist(p: &[u8], ino: u32) -> Result<Vec<Membership>, DiagError> {
    if !p.len().is_multiple_of(MCLIST_LEN) {
        return Err(DiagError::Malformed(format!(
            "PACKET_DIAG_MCLIST of {} bytes, socket {ino}",
            p.len()
        )));
    }
    Ok(p.chunks_exact(MCLIST_LEN)
        .map(|m| {
            let alen = usize::from(u16_at(m, 10).unwrap_or_default()).min(MAX_ADDR_LEN);
            Membership {
                index: u32_at(m, 0).unwrap_or_default(),
                count: u32_at(m, 4).unwrap_or_default(),
                kind: u16_at(m, 8).unwrap_or_default(),
                addr: m[12..12 + alen].to_vec(),
            }
        })
        .collect())
}

/// One `packet_diag_msg` with its attributes: (inode, socket).
pub fn parse_msg(p: &[u8]) -> Result<(u32, Desc), DiagError> {
    let bad = |what: String| DiagError::Malformed(what);
    if p.len() < MSG_LEN {
        return Err(bad(format!("packet_diag_msg of {} bytes", p.len())));
    }
    let ino = u32_at(p, 4).unwrap_or_default();
    let mut d = Desc {
        sock_type: p[1],
        num: u16_at(p, 2).unwrap_or_default(),
        ..Desc::default()
    };
    let mut info = false;
    let mut a = &p[MSG_LEN..];
    while a.len() >= 4 {
        let len = usize::from(u16_at(a, 0).unwrap_or_default());
        let kind = u16_at(a, 2).unwrap_or_default();
        if len < 4 || len > a.len() {
            return Err(bad(format!(
                "attribute {kind} of length {len}, socket {ino}"
            )));
        }
        let v = &a[4..len];
        match kind {
            PACKET_DIAG_INFO => {
                let [ifindex, version, reserve, copy_thresh, tstamp, flags] =
                    words::<6>(v, "packet_diag_info", ino)?;
                d.info = Info {
                    ifindex,
                    version,
                    reserve,
                    copy_thresh,
                    tstamp,
                    flags,
                };
                info = true;
            }
            PACKET_DIAG_MCLIST => d.mclist = mclist(v, ino)?,
            PACKET_DIAG_RX_RING => d.rx = Some(ring(v, ino)?),
            PACKET_DIAG_TX_RING => d.tx = Some(ring(v, ino)?),
            PACKET_DIAG_FANOUT => d.fanout = Some(words::<1>(v, "fanout", ino)?[0]),
            _ => {}
        }
        a = &a[align4(len).min(a.len())..];
    }
    if !info {
        return Err(bad(format!("no PACKET_DIAG_INFO for socket {ino}")));
    }
    Ok((ino, d))
}

/// Parses one `recv` worth of messages into `out`; `true` once `NLMSG_DONE` is seen.
pub fn parse_batch(mut b: &[u8], out: &mut HashMap<u32, Desc>) -> Result<bool, DiagError> {
    while !b.is_empty() {
        let (Some(len), Some(kind)) = (u32_at(b, 0), u16_at(b, 4)) else {
            return Err(DiagError::Malformed(format!(
                "netlink header of {} bytes",
                b.len()
            )));
        };
        let len = len as usize;
        if len < NLMSG_HDRLEN || len > b.len() {
            return Err(DiagError::Malformed(format!(
                "netlink message length {len} of {}",
                b.len()
            )));
        }
        let p = &b[NLMSG_HDRLEN..len];
        match kind {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let code = u32_at(p, 0)
                    .ok_or_else(|| DiagError::Malformed("short NLMSG_ERROR".into()))?
                    as i32;
                return Err(DiagError::Sys {
                    op: "SOCK_DIAG_BY_FAMILY",
                    source: Errno::from_raw(-code),
                });
            }
            SOCK_DIAG_BY_FAMILY => {
                let (ino, d) = parse_msg(p)?;
                out.insert(ino, d);
            }
            other => {
                return Err(DiagError::Malformed(format!(
                    "netlink message type {other}"
                )));
            }
        }
        b = &b[align4(len).min(b.len())..];
    }
    Ok(false)
}

fn query_here() -> Result<HashMap<u32, Desc>, DiagError> {
    let sock = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkSockDiag,
    )
    .map_err(sys_err("socket(NETLINK_SOCK_DIAG)"))?;
    sendto(
        sock.as_raw_fd(),
        &request(),
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )
    .map_err(sys_err("sendto"))?;
    let mut out = HashMap::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = recv(sock.as_raw_fd(), &mut buf, MsgFlags::empty()).map_err(sys_err("recv"))?;
        if n == 0 {
            return Err(DiagError::Malformed(
                "end of stream before NLMSG_DONE".into(),
            ));
        }
        if parse_batch(&buf[..n], &mut out)? {
            return Ok(out);
        }
    }
}

/// Every packet socket of the network namespace `netns` (an fd of it), by inode.
pub fn query(netns: BorrowedFd<'_>) -> Result<HashMap<u32, Desc>, DiagError> {
    std::thread::scope(|s| {
        s.spawn(|| {
            setns(netns, CloneFlags::CLONE_NEWNET).map_err(sys_err("setns(CLONE_NEWNET)"))?;
            query_here()
        })
        .join()
        .unwrap_or_else(|_| Err(DiagError::Malformed("the query thread panicked".into())))
    })
}
