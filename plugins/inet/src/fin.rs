//! Half-closed TCP connections (FIN_WAIT1, FIN_WAIT2, CLOSE_WAIT, LAST_ACK, CLOSING), as
//! CRIU's libsoccr rebuilds them. A FIN counts one sequence number but holds no data: at
//! dump the FIN of the send queue is taken out of the queue sizes (the queue sequence
//! numbers keep it, as CRIU's image); at restore the connection is first rebuilt
//! ESTABLISHED, then the FINs are put back: ours with `shutdown(SHUT_WR)` (in repair mode,
//! so it is not sent; as already sent when the peer had acknowledged it), the peer's with a
//! FIN segment forged from the peer's address and sent from a raw socket, which the new
//! socket takes as if it came from the wire. The forged segments carry CRIU's `SOCCR_MARK`,
//! which the network lock lets through.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, BorrowedFd};

use criu_proto::images::TcpStreamEntry;
use criu_sk_common::sys::set_int;
use nix::errno::Errno;

use crate::sys;

const FIN_WAIT1: u32 = 4;
const FIN_WAIT2: u32 = 5;
const CLOSE_WAIT: u32 = 8;
const LAST_ACK: u32 = 9;
const CLOSING: u32 = 11;

/// CRIU's `SOCCR_MARK`: packets criu forges, which the network lock lets pass.
pub const SOCCR_MARK: i32 = 0xC114;

/// TCP header flags.
const TH_FIN: u8 = 0x01;
const TH_ACK: u8 = 0x10;

/// Whether `state` is a half-closed state this plugin dumps and restores.
pub fn is_half_closed(state: u32) -> bool {
    matches!(
        state,
        FIN_WAIT1 | FIN_WAIT2 | CLOSE_WAIT | LAST_ACK | CLOSING
    )
}

/// Our FIN is in the send queue (sent or not): it counts in the queue's sizes at dump.
pub fn fin_in_send_queue(state: u32) -> bool {
    matches!(state, FIN_WAIT1 | FIN_WAIT2 | CLOSING | LAST_ACK)
}

/// The peer's FIN was received: it counts in the receive queue's sequence number.
pub fn fin_received(state: u32) -> bool {
    matches!(state, CLOSE_WAIT | LAST_ACK | CLOSING)
}

/// Takes the FIN out of the send queue's sizes read at dump (`SIOCOUTQ`, `SIOCOUTQNSD`).
pub fn dumped_sizes(state: u32, outq: u32, unsent: u32) -> (u32, u32) {
    if fin_in_send_queue(state) {
        (outq.saturating_sub(1), unsent.saturating_sub(1))
    } else {
        (outq, unsent)
    }
}

/// The queue sequence numbers (receive, send) the connection is rebuilt ESTABLISHED with:
/// those of the image less the FINs that are put back afterwards.
pub fn data_seqs(state: u32, e: &TcpStreamEntry) -> (u32, u32) {
    let inq = e.inq_seq.wrapping_sub(u32::from(fin_received(state)));
    let outq = e.outq_seq.wrapping_sub(u32::from(fin_in_send_queue(state)));
    (inq, outq)
}

/// The window of a connection whose peer's FIN is put back afterwards: that FIN will
/// advance `rcv_wup` again (CRIU's adjustment).
pub fn window(state: u32, w: &mut sys::TcpRepairWindow) {
    if fin_received(state) {
        w.rcv_wup = w.rcv_wup.wrapping_sub(1);
        w.rcv_wnd = w.rcv_wnd.wrapping_add(1);
    }
}

/// A TCP segment without data from `from` to `to`, IP header included for IPv4 (the raw
/// socket is `IPPROTO_RAW`), with the TCP checksum.
pub fn segment(
    from: SocketAddr,
    to: SocketAddr,
    seq: u32,
    ack: u32,
    flags: u8,
    win: u16,
) -> Vec<u8> {
    let mut tcp = [0u8; 20];
    tcp[0..2].copy_from_slice(&from.port().to_be_bytes());
    tcp[2..4].copy_from_slice(&to.port().to_be_bytes());
    tcp[4..8].copy_from_slice(&seq.to_be_bytes());
    tcp[8..12].copy_from_slice(&ack.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = flags;
    tcp[14..16].copy_from_slice(&win.to_be_bytes());
    let mut pseudo = Vec::with_capacity(40 + tcp.len());
    match (from.ip(), to.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
            pseudo.extend_from_slice(&[0, libc::IPPROTO_TCP as u8]);
            pseudo.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
        }
        (s, d) => {
            pseudo.extend_from_slice(&v6_octets(s));
            pseudo.extend_from_slice(&v6_octets(d));
            pseudo.extend_from_slice(&(tcp.len() as u32).to_be_bytes());
            pseudo.extend_from_slice(&[0, 0, 0, libc::IPPROTO_TCP as u8]);
        }
    }
    pseudo.extend_from_slice(&tcp);
    let sum = checksum(&pseudo);
    tcp[16..18].copy_from_slice(&sum.to_be_bytes());
    match (from.ip(), to.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut ip = vec![0u8; 20];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&(40u16).to_be_bytes());
            ip[8] = 64;
            ip[9] = libc::IPPROTO_TCP as u8;
            ip[12..16].copy_from_slice(&s.octets());
            ip[16..20].copy_from_slice(&d.octets());
            // The kernel fills the header checksum and the id of an IPPROTO_RAW packet.
            ip.extend_from_slice(&tcp);
            ip
        }
        (s, d) => {
            let mut ip = vec![0u8; 40];
            ip[0] = 0x60;
            ip[4..6].copy_from_slice(&(tcp.len() as u16).to_be_bytes());
            ip[6] = libc::IPPROTO_TCP as u8;
            ip[7] = 64;
            ip[8..24].copy_from_slice(&v6_octets(s));
            ip[24..40].copy_from_slice(&v6_octets(d));
            ip.extend_from_slice(&tcp);
            ip
        }
    }
}

fn v6_octets(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

/// The Internet checksum (RFC 1071) of `data`.
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4-mapped pair is sent as IPv4 (a dual-stack socket's connection over IPv4).
fn unmap(a: SocketAddr) -> SocketAddr {
    match a.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), a.port()),
            None => a,
        },
        IpAddr::V4(_) => a,
    }
}

/// Sends a segment from `peer` to `local` on a raw socket marked `SOCCR_MARK`.
fn forge(
    local: SocketAddr,
    peer: SocketAddr,
    seq: u32,
    ack: u32,
    flags: u8,
    win: u16,
) -> Result<(), (Errno, &'static str)> {
    let (l, p) = match (unmap(local), unmap(peer)) {
        (l @ SocketAddr::V4(_), p @ SocketAddr::V4(_)) => (l, p),
        _ => (local, peer),
    };
    let family = if l.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    let raw = sys::inet_socket(family, libc::SOCK_RAW, libc::IPPROTO_RAW)
        .map_err(|e| (e, "socket(SOCK_RAW, IPPROTO_RAW)"))?;
    set_int(raw.as_fd(), libc::SOL_SOCKET, libc::SO_MARK, SOCCR_MARK)
        .map_err(|e| (e, "setsockopt(SO_MARK)"))?;
    let pkt = segment(p, l, seq, ack, flags, win);
    // The port of the destination must be 0 for an IPv6 raw socket (it names a protocol).
    let to = SocketAddr::new(l.ip(), 0);
    let n = sys::send_to(raw.as_fd(), &pkt, Some(to), 0).map_err(|e| (e, "sendto (forged FIN)"))?;
    if n != pkt.len() {
        return Err((Errno::EMSGSIZE, "sendto (forged FIN): short write"));
    }
    Ok(())
}

/// `shutdown(SHUT_WR)` in repair mode: our FIN goes in the send queue, as already sent when
/// the peer had acknowledged it (`acked`).
fn our_fin(f: BorrowedFd<'_>, acked: bool) -> Result<(), (Errno, &'static str)> {
    if acked {
        set_int(f, libc::SOL_TCP, sys::TCP_REPAIR_QUEUE, sys::TCP_SEND_QUEUE)
            .map_err(|e| (e, "setsockopt(TCP_REPAIR_QUEUE)"))?;
    }
    nix::sys::socket::shutdown(
        std::os::fd::AsRawFd::as_raw_fd(&f),
        nix::sys::socket::Shutdown::Write,
    )
    .map_err(|e| (e, "shutdown(SHUT_WR) (repair)"))?;
    if acked {
        set_int(f, libc::SOL_TCP, sys::TCP_REPAIR_QUEUE, 0)
            .map_err(|e| (e, "setsockopt(TCP_REPAIR_QUEUE)"))?;
    }
    Ok(())
}

/// Puts the FINs of a connection in `state` back into `f`, rebuilt ESTABLISHED with its
/// queues and window (CRIU's order: our first FIN, the peer's, our second, the ACK of ours).
pub fn restore(
    f: BorrowedFd<'_>,
    state: u32,
    e: &TcpStreamEntry,
    local: SocketAddr,
    peer: SocketAddr,
) -> Result<(), (Errno, &'static str)> {
    let (inq_seq, outq_seq) = data_seqs(state, e);
    let snd_una = outq_seq.wrapping_sub(e.outq_len);
    // The peer's window as it advertised it (unscaled).
    let win = (e.snd_wnd.unwrap_or(65535) >> e.snd_wscale.min(14)).min(65535) as u16;
    if matches!(state, FIN_WAIT1 | FIN_WAIT2 | CLOSING) {
        our_fin(f, state == FIN_WAIT2)?;
    }
    if fin_received(state) {
        forge(local, peer, inq_seq, snd_una, TH_ACK | TH_FIN, win)?;
    }
    if state == LAST_ACK {
        our_fin(f, false)?;
    }
    if state == FIN_WAIT2 {
        // The peer acknowledges our FIN: one past the send queue's data.
        forge(local, peer, inq_seq, snd_una.wrapping_add(1), TH_ACK, win)?;
    }
    let got = u32::from(
        sys::tcp_info(f)
            .map_err(|e| (e, "getsockopt(TCP_INFO)"))?
            .tcpi_state,
    );
    if got != state {
        tracing::warn!(
            want = state,
            got,
            "half-closed TCP state not reached at once"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fins_leave_the_queue_sizes() {
        assert_eq!(dumped_sizes(FIN_WAIT1, 10, 4), (9, 3));
        assert_eq!(dumped_sizes(FIN_WAIT2, 0, 0), (0, 0));
        assert_eq!(dumped_sizes(CLOSE_WAIT, 10, 4), (10, 4));
        assert_eq!(dumped_sizes(LAST_ACK, 1, 0), (0, 0));
        let e = TcpStreamEntry {
            inq_seq: 100,
            outq_seq: 0,
            ..TcpStreamEntry::default()
        };
        assert_eq!(data_seqs(CLOSING, &e), (99, u32::MAX));
        assert_eq!(data_seqs(1, &e), (100, 0));
    }

    #[test]
    fn a_forged_segment_checks_out() {
        let from: SocketAddr = "127.0.0.2:80".parse().unwrap();
        let to: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let p = segment(from, to, 7, 9, TH_ACK | TH_FIN, 512);
        assert_eq!(p.len(), 40);
        // Summing the pseudo header and the segment with its checksum gives 0.
        let mut all = Vec::new();
        all.extend_from_slice(&p[12..20]);
        all.extend_from_slice(&[0, 6, 0, 20]);
        all.extend_from_slice(&p[20..]);
        assert_eq!(checksum(&all), 0);
        let v6 = segment(
            "[::1]:1".parse().unwrap(),
            "[::1]:2".parse().unwrap(),
            1,
            2,
            0x10,
            3,
        );
        assert_eq!((v6.len(), v6[0] >> 4, v6[6]), (60, 6, 6));
    }
}
