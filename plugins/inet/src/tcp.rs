//! An established TCP connection through TCP repair (as CRIU's libsoccr): at dump criu puts
//! its duplicate of the socket in repair mode, which freezes it (nothing is sent, the
//! queues can be read with `MSG_PEEK`), and writes `tcp-stream-<ino>.img`: sequence numbers,
//! negotiated options, window, then the receive queue's bytes and the send queue's bytes
//! (sent but unacknowledged first, then not sent yet). At restore a new socket in repair
//! mode gets the same names, sequence numbers, options and queues; repair mode goes off in
//! the restorer's `finish`, just before the tree resumes, and the not-yet-sent bytes are
//! sent then, as an ordinary write.

use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use criu_plugin_api::{DumpContext, FdDesc, ImageCursor, ImageRef, PluginError, PluginImageKind};
use criu_proto::images::TcpStreamEntry;
use criu_sk_common::sys::{SO_PEEK_OFF, get_int, set_int};
use nix::errno::Errno;
use prost::Message;

use crate::dump::{Sock, TCP_ESTABLISHED, fd_err, refuse};
use crate::sys::{self, TcpRepairOpt, TcpRepairWindow};
use crate::{DumpState, fin, tcp_state_name};

/// `TCPI_OPT_TIMESTAMPS` (linux/tcp.h), in `opt_mask`.
pub const TCPI_OPT_TIMESTAMPS: u32 = 1;
/// `TCPI_OPT_SACK`.
pub const TCPI_OPT_SACK: u32 = 2;
/// `TCPI_OPT_WSCALE`.
pub const TCPI_OPT_WSCALE: u32 = 4;

/// The image of connection `ino`.
pub fn image(ino: u32) -> ImageRef {
    ImageRef::numbered(PluginImageKind::TcpStream, u64::from(ino))
}

/// One connection's saved state: the entry and its queues' bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    /// `tcp_stream_entry`.
    pub entry: TcpStreamEntry,
    /// The receive queue (`inq_len` bytes).
    pub inq: Vec<u8>,
    /// The send queue (`outq_len` bytes; the last `unsq_len` not sent yet).
    pub outq: Vec<u8>,
}

impl Stream {
    /// The bytes of the send queue that were sent (and wait for their ACK).
    pub fn sent(&self) -> &[u8] {
        &self.outq[..self.outq.len() - self.unsent().len()]
    }

    /// The bytes of the send queue that were not sent yet.
    pub fn unsent(&self) -> &[u8] {
        let n = self.entry.unsq_len.unwrap_or(0) as usize;
        &self.outq[self.outq.len() - n.min(self.outq.len())..]
    }
}

fn peek_queue(
    f: BorrowedFd<'_>,
    queue: i32,
    len: u32,
) -> Result<(u32, Vec<u8>), (Errno, &'static str)> {
    set_int(f, libc::SOL_TCP, sys::TCP_REPAIR_QUEUE, queue)
        .map_err(|e| (e, "setsockopt(TCP_REPAIR_QUEUE)"))?;
    let seq = get_int(f, libc::SOL_TCP, libc::TCP_QUEUE_SEQ)
        .map_err(|e| (e, "getsockopt(TCP_QUEUE_SEQ)"))? as u32;
    // One byte more than announced: a queue longer than its size would show.
    let mut buf = vec![0u8; len as usize + 1];
    let n = if len == 0 {
        0
    } else {
        sys::recv_from(f, &mut buf, libc::MSG_PEEK | libc::MSG_DONTWAIT)
            .map_err(|e| (e, "recv(MSG_PEEK)"))?
            .0
    };
    if n != len as usize {
        return Err((Errno::EIO, "recv(MSG_PEEK): queue length changed"));
    }
    buf.truncate(n);
    Ok((seq, buf))
}

/// Reads the connection of `f` (in repair mode).
fn save(f: BorrowedFd<'_>, state: u32) -> Result<Stream, (Errno, &'static str)> {
    let ti = sys::tcp_info(f).map_err(|e| (e, "getsockopt(TCP_INFO)"))?;
    if u32::from(ti.tcpi_state) != state {
        return Err((Errno::EAGAIN, "TCP_INFO: the state changed during the dump"));
    }
    let outq_len = sys::outq(f).map_err(|e| (e, "ioctl(SIOCOUTQ)"))?;
    let unsq_len = sys::outq_not_sent(f).map_err(|e| (e, "ioctl(SIOCOUTQNSD)"))?;
    // Our FIN holds no data: out of the sizes (the peeks would come short of them).
    let (outq_len, unsq_len) = fin::dumped_sizes(state, outq_len, unsq_len);
    let inq_len = sys::inq(f).map_err(|e| (e, "ioctl(SIOCINQ)"))?;
    let mss =
        get_int(f, libc::SOL_TCP, libc::TCP_MAXSEG).map_err(|e| (e, "getsockopt(TCP_MAXSEG)"))?;
    let opt_mask = u32::from(ti.tcpi_options);
    let (snd_wscale, rcv_wscale) = if opt_mask & TCPI_OPT_WSCALE != 0 {
        // The bitfields tcpi_snd_wscale:4, tcpi_rcv_wscale:4 (the first in the low bits).
        let w = ti.tcpi_snd_rcv_wscale;
        (u32::from(w & 0xf), Some(u32::from(w >> 4)))
    } else {
        (0, None)
    };
    let timestamp = if opt_mask & TCPI_OPT_TIMESTAMPS != 0 {
        Some(
            get_int(f, libc::SOL_TCP, libc::TCP_TIMESTAMP)
                .map_err(|e| (e, "getsockopt(TCP_TIMESTAMP)"))? as u32,
        )
    } else {
        None
    };
    let w = sys::repair_window(f).map_err(|e| (e, "getsockopt(TCP_REPAIR_WINDOW)"))?;
    // A peek offset the program set would make the peeks start there: from 0, then back.
    let peek_off =
        get_int(f, libc::SOL_SOCKET, SO_PEEK_OFF).map_err(|e| (e, "getsockopt(SO_PEEK_OFF)"))?;
    let from_zero = || -> Result<(), (Errno, &'static str)> {
        if peek_off >= 0 {
            set_int(f, libc::SOL_SOCKET, SO_PEEK_OFF, 0)
                .map_err(|e| (e, "setsockopt(SO_PEEK_OFF)"))?;
        }
        Ok(())
    };
    let queues = (|| -> Result<_, (Errno, &'static str)> {
        from_zero()?;
        let rq = peek_queue(f, sys::TCP_RECV_QUEUE, inq_len)?;
        from_zero()?;
        let sq = peek_queue(f, sys::TCP_SEND_QUEUE, outq_len)?;
        Ok((rq, sq))
    })();
    if peek_off >= 0 {
        set_int(f, libc::SOL_SOCKET, SO_PEEK_OFF, peek_off)
            .map_err(|e| (e, "setsockopt(SO_PEEK_OFF)"))?;
    }
    let ((inq_seq, inq), (outq_seq, outq)) = queues?;
    set_int(f, libc::SOL_TCP, sys::TCP_REPAIR_QUEUE, 0)
        .map_err(|e| (e, "setsockopt(TCP_REPAIR_QUEUE)"))?;
    let entry = TcpStreamEntry {
        inq_len,
        inq_seq,
        outq_len,
        outq_seq,
        opt_mask,
        snd_wscale,
        mss_clamp: mss as u32,
        rcv_wscale,
        timestamp,
        cork: None,
        nodelay: None,
        unsq_len: Some(unsq_len),
        snd_wl1: Some(w.snd_wl1),
        snd_wnd: Some(w.snd_wnd),
        max_window: Some(w.max_window),
        rcv_wnd: Some(w.rcv_wnd),
        rcv_wup: Some(w.rcv_wup),
    };
    Ok(Stream { entry, inq, outq })
}

/// Dumps the established connection of `fd` into `tcp-stream-<ino>.img`. The socket stays
/// in repair mode (silent) until the dump ends: see [`crate::DumpState`].
pub fn dump(
    ctx: &mut dyn DumpContext,
    fd: &FdDesc,
    sk: &Sock,
    state: u32,
    ino: u32,
) -> Result<(), PluginError> {
    if state != TCP_ESTABLISHED && !fin::is_half_closed(state) {
        return Err(refuse(
            fd,
            format!("{} {}", sk.describe(), tcp_state_name(state)),
            "unfinished TCP connections (SYN_SENT, SYN_RECV) are not supported yet; dump \
             once the connection is established or closed",
        ));
    }
    let f = fd.file();
    let dup = f.try_clone_to_owned().map_err(|e| PluginError::Fd {
        pid: fd.pid,
        fd: fd.fd,
        link: fd.link.clone(),
        op: "dup",
        source: e,
    })?;
    set_int(f, libc::SOL_TCP, libc::TCP_REPAIR, 1).map_err(fd_err(fd, "setsockopt(TCP_REPAIR)"))?;
    // Recorded at once: whatever fails next, the dump's end turns repair mode off again.
    ctx.state::<DumpState>()?
        .repaired
        .push((fd.pid, fd.fd, dup));
    let stream = save(f, state).map_err(|(e, op)| fd_err(fd, op)(e))?;
    tracing::debug!(
        pid = fd.pid, fd = fd.fd, sock = %sk.describe(),
        inq = stream.inq.len(), outq = stream.outq.len(),
        unsent = stream.unsent().len(), "TCP connection in repair mode"
    );
    let mut extra = stream.inq.clone();
    extra.extend_from_slice(&stream.outq);
    ctx.write_entry(image(ino), &stream.entry.encode_to_vec(), &extra)
}

/// Reads and checks `tcp-stream-<ino>.img` (`body` is what the context returned) for the
/// socket `what`: its queue sizes must match the bytes that follow.
pub fn parse(ino: u32, what: &str, body: &[u8]) -> Result<Stream, PluginError> {
    let img = image(ino);
    let bad = |reason: String| PluginError::bad_image(img.to_string(), format!("{what}: {reason}"));
    let mut c = ImageCursor::new(img, body);
    let entry: TcpStreamEntry = c
        .next_entry()
        .map_err(|e| bad(format!("{e}")))?
        .ok_or_else(|| bad("no tcp_stream_entry in it".into()))?;
    if entry.unsq_len.unwrap_or(0) > entry.outq_len {
        return Err(bad(format!(
            "{} unsent bytes in a send queue of {}",
            entry.unsq_len.unwrap_or(0),
            entry.outq_len
        )));
    }
    let need = u64::from(entry.inq_len) + u64::from(entry.outq_len);
    let have = c.rest();
    if have.len() as u64 != need {
        return Err(bad(format!(
            "the queues' sizes (receive {} + send {} bytes) disagree with the {} bytes of data \
             after the entry",
            entry.inq_len,
            entry.outq_len,
            have.len()
        )));
    }
    let (inq, outq) = have.split_at(entry.inq_len as usize);
    Ok(Stream {
        entry,
        inq: inq.to_vec(),
        outq: outq.to_vec(),
    })
}

fn set_queue_seq(f: BorrowedFd<'_>, queue: i32, seq: u32) -> Result<(), (Errno, &'static str)> {
    set_int(f, libc::SOL_TCP, sys::TCP_REPAIR_QUEUE, queue)
        .map_err(|e| (e, "setsockopt(TCP_REPAIR_QUEUE)"))?;
    set_int(f, libc::SOL_TCP, libc::TCP_QUEUE_SEQ, seq as i32)
        .map_err(|e| (e, "setsockopt(TCP_QUEUE_SEQ)"))
}

/// Writes `data` with `send`, in smaller pieces when the kernel refuses a large one (a
/// repair write to the receive queue is one linear buffer).
pub fn send_all(f: BorrowedFd<'_>, mut data: &[u8]) -> Result<(), Errno> {
    let mut chunk = data.len().max(1);
    while !data.is_empty() {
        match sys::send_to(
            f,
            &data[..chunk.min(data.len())],
            None,
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        ) {
            Ok(n) if n > 0 => data = &data[n..],
            Ok(_) => return Err(Errno::EIO),
            Err(Errno::ENOMEM | Errno::EAGAIN) if chunk > 1024 => chunk /= 2,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The options the handshake negotiated, for `TCP_REPAIR_OPTIONS`.
pub fn repair_options(e: &TcpStreamEntry) -> Vec<TcpRepairOpt> {
    let mut opts = Vec::new();
    if e.opt_mask & TCPI_OPT_SACK != 0 {
        opts.push(TcpRepairOpt {
            code: sys::TCPOPT_SACK_PERM,
            val: 0,
        });
    }
    if e.opt_mask & TCPI_OPT_WSCALE != 0 {
        let val = e.snd_wscale + (e.rcv_wscale.unwrap_or(0) << 16);
        opts.push(TcpRepairOpt {
            code: sys::TCPOPT_WINDOW,
            val,
        });
    }
    if e.opt_mask & TCPI_OPT_TIMESTAMPS != 0 {
        opts.push(TcpRepairOpt {
            code: sys::TCPOPT_TIMESTAMP,
            val: 0,
        });
    }
    opts.push(TcpRepairOpt {
        code: sys::TCPOPT_MAXSEG,
        val: e.mss_clamp,
    });
    opts
}

/// Puts connection `s` (in TCP state `state`) into `sock`, a new TCP socket in repair mode
/// already bound to its local name `local`: sequence numbers, `connect` to `peer` (no
/// packet in repair mode), options, the receive queue, the sent part of the send queue,
/// the window; for a half-closed connection the unsent data and the FINs too ([`fin`]).
/// `before_queues` sets the buffer sizes between `connect` and the queues.
pub fn restore(
    sock: &OwnedFd,
    s: &Stream,
    state: u32,
    (local, peer): (SocketAddr, SocketAddr),
    before_queues: impl FnOnce(BorrowedFd<'_>) -> Result<(), (Errno, &'static str)>,
) -> Result<(), (Errno, &'static str)> {
    let f = sock.as_fd();
    let e = &s.entry;
    let (inq_seq, outq_seq) = fin::data_seqs(state, e);
    set_queue_seq(f, sys::TCP_RECV_QUEUE, inq_seq.wrapping_sub(e.inq_len))?;
    set_queue_seq(f, sys::TCP_SEND_QUEUE, outq_seq.wrapping_sub(e.outq_len))?;
    sys::connect(f, peer).map_err(|e| (e, "connect (repair)"))?;
    sys::set_repair_options(f, &repair_options(e))
        .map_err(|e| (e, "setsockopt(TCP_REPAIR_OPTIONS)"))?;
    if let Some(ts) = e
        .timestamp
        .filter(|_| e.opt_mask & TCPI_OPT_TIMESTAMPS != 0)
    {
        set_int(f, libc::SOL_TCP, libc::TCP_TIMESTAMP, ts as i32)
            .map_err(|e| (e, "setsockopt(TCP_TIMESTAMP)"))?;
    }
    before_queues(f)?;
    if !s.inq.is_empty() {
        set_int(f, libc::SOL_TCP, sys::TCP_REPAIR_QUEUE, sys::TCP_RECV_QUEUE)
            .map_err(|e| (e, "setsockopt(TCP_REPAIR_QUEUE)"))?;
        send_all(f, &s.inq).map_err(|e| (e, "send (receive queue)"))?;
    }
    if !s.sent().is_empty() {
        set_int(f, libc::SOL_TCP, sys::TCP_REPAIR_QUEUE, sys::TCP_SEND_QUEUE)
            .map_err(|e| (e, "setsockopt(TCP_REPAIR_QUEUE)"))?;
        send_all(f, s.sent()).map_err(|e| (e, "send (send queue)"))?;
    }
    if let (Some(snd_wl1), Some(snd_wnd), Some(max_window), Some(rcv_wnd), Some(rcv_wup)) =
        (e.snd_wl1, e.snd_wnd, e.max_window, e.rcv_wnd, e.rcv_wup)
    {
        let mut w = TcpRepairWindow {
            snd_wl1,
            snd_wnd,
            max_window,
            rcv_wnd,
            rcv_wup,
        };
        fin::window(state, &mut w);
        sys::set_repair_window(f, &w).map_err(|e| (e, "setsockopt(TCP_REPAIR_WINDOW)"))?;
    }
    set_int(f, libc::SOL_TCP, sys::TCP_REPAIR_QUEUE, 0)
        .map_err(|e| (e, "setsockopt(TCP_REPAIR_QUEUE)"))?;
    if !fin::is_half_closed(state) {
        return Ok(());
    }
    // Our FIN follows the unsent data: they are written now, as CRIU does, out of repair
    // mode for a moment (an ordinary write; the network lock holds it back).
    if !s.unsent().is_empty() {
        set_int(f, libc::SOL_TCP, libc::TCP_REPAIR, 0)
            .map_err(|e| (e, "setsockopt(TCP_REPAIR, off)"))?;
        send_all(f, s.unsent()).map_err(|e| (e, "send (unsent data)"))?;
        set_int(f, libc::SOL_TCP, libc::TCP_REPAIR, 1)
            .map_err(|e| (e, "setsockopt(TCP_REPAIR)"))?;
    }
    fin::restore(f, state, e, local, peer)
}

/// Ends the repair of a restored connection in `state`: repair mode off (the kernel sends a
/// window probe, so both ends resynchronise), then the bytes that were not sent yet at dump
/// (a half-closed connection's are in already, before its FIN).
pub fn resume(f: BorrowedFd<'_>, s: &Stream, state: u32) -> Result<(), (Errno, &'static str)> {
    set_int(f, libc::SOL_TCP, libc::TCP_REPAIR, 0)
        .map_err(|e| (e, "setsockopt(TCP_REPAIR, off)"))?;
    if !s.unsent().is_empty() && !fin::is_half_closed(state) {
        send_all(f, s.unsent()).map_err(|e| (e, "send (unsent data)"))?;
    }
    Ok(())
}
