//! Raw inet sockets (`SOCK_RAW`, any IP protocol), as CRIU keeps them: the
//! `ip_opts_raw_entry` of their `ip_opts` (`IP_HDRINCL`/`IPV6_HDRINCL`, `IP_NODEFRAG`, the
//! ICMP type filter of an `IPPROTO_ICMP`/`IPPROTO_ICMPV6` socket), their local address when
//! bound and their peer when connected. Their name's "port" is the protocol (the kernel's
//! `inet_num`): bind ignores it. Datagrams queued at dump time are dropped, as CRIU drops
//! them; a raw socket has no shutdown state CRIU records.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::BorrowedFd;

use criu_proto::images::{InetSkEntry, IpOptsRawEntry};
use criu_sk_common::sys::{get_bytes, get_int, set_bytes, set_int};
use nix::errno::Errno;

use crate::addr::FAMILY_V6;
use crate::sys;

/// `IPV6_HDRINCL` (linux/in6.h, 4.5+).
pub const IPV6_HDRINCL: i32 = 36;
/// `IP_NODEFRAG` (linux/in.h).
pub const IP_NODEFRAG: i32 = 22;
/// `SOL_RAW` (the level of `ICMP_FILTER`).
pub const SOL_RAW: i32 = 255;
/// `ICMP_FILTER` (linux/icmp.h) and `ICMPV6_FILTER` (linux/icmpv6.h, level `SOL_ICMPV6`).
pub const ICMP_FILTER: i32 = 1;
/// `SOL_ICMPV6`: `IPPROTO_ICMPV6`.
pub const SOL_ICMPV6: i32 = libc::IPPROTO_ICMPV6;
/// Words of `struct icmp_filter` (one) and `struct icmp6_filter` (eight).
const ICMP_FILTER_WORDS: usize = 1;
const ICMP6_FILTER_WORDS: usize = 8;

/// Whether `ie` is a raw socket.
pub fn is_raw(ie: &InetSkEntry) -> bool {
    ie.r#type as i32 == libc::SOCK_RAW
}

/// The level, option and size in words of the ICMP filter of a raw socket of `family` and
/// `proto`, if it has one.
fn icmp_filter(family: u32, proto: u32) -> Option<(i32, i32, usize)> {
    match (family == FAMILY_V6, proto as i32) {
        (false, libc::IPPROTO_ICMP) => Some((SOL_RAW, ICMP_FILTER, ICMP_FILTER_WORDS)),
        (true, libc::IPPROTO_ICMPV6) => Some((SOL_ICMPV6, ICMP_FILTER, ICMP6_FILTER_WORDS)),
        _ => None,
    }
}

/// Reads the raw options of `f` (CRIU's `dump_ip_raw_opts`): `Err` names the option.
pub fn dump_opts(
    f: BorrowedFd<'_>,
    family: u32,
    proto: u32,
) -> Result<IpOptsRawEntry, (Errno, &'static str)> {
    let mut r = IpOptsRawEntry::default();
    if family == FAMILY_V6 {
        let h = get_int(f, libc::SOL_IPV6, IPV6_HDRINCL).map_err(|e| (e, "IPV6_HDRINCL"))?;
        r.hdrincl = (h != 0).then_some(true);
    } else {
        let h = get_int(f, libc::SOL_IP, libc::IP_HDRINCL).map_err(|e| (e, "IP_HDRINCL"))?;
        let n = get_int(f, libc::SOL_IP, IP_NODEFRAG).map_err(|e| (e, "IP_NODEFRAG"))?;
        r.hdrincl = (h != 0).then_some(true);
        r.nodefrag = (n != 0).then_some(true);
    }
    if let Some((level, opt, words)) = icmp_filter(family, proto) {
        let b = get_bytes(f, level, opt, words * 4).map_err(|e| (e, "ICMP_FILTER"))?;
        r.icmpv_filter = b
            .chunks_exact(4)
            .map(|w| u32::from_ne_bytes([w[0], w[1], w[2], w[3]]))
            .collect();
    }
    Ok(r)
}

/// Checks the raw options of entry `ie`: an ICMP filter only on an ICMP socket, of its
/// size. `Err` says what is wrong.
pub fn validate(ie: &InetSkEntry) -> Result<(), String> {
    let Some(r) = ie.ip_opts.as_ref().and_then(|o| o.raw.as_ref()) else {
        return Ok(());
    };
    if r.icmpv_filter.is_empty() {
        return Ok(());
    }
    match icmp_filter(ie.family, ie.proto) {
        Some((_, _, words)) if words == r.icmpv_filter.len() => Ok(()),
        Some((_, _, words)) => Err(format!(
            "ICMP filter of {} words, the kernel's has {words}",
            r.icmpv_filter.len()
        )),
        None => Err(format!(
            "an ICMP filter on a raw socket of protocol {}",
            ie.proto
        )),
    }
}

/// Sets the raw options of `ie` on `f` (CRIU's `restore_ip_raw_opts`).
pub fn restore_opts(f: BorrowedFd<'_>, ie: &InetSkEntry) -> Result<(), (Errno, &'static str)> {
    let Some(r) = ie.ip_opts.as_ref().and_then(|o| o.raw.as_ref()) else {
        return Ok(());
    };
    if let Some((level, opt, _)) = icmp_filter(ie.family, ie.proto)
        && !r.icmpv_filter.is_empty()
    {
        let bytes: Vec<u8> = r
            .icmpv_filter
            .iter()
            .flat_map(|w| w.to_ne_bytes())
            .collect();
        set_bytes(f, level, opt, &bytes).map_err(|e| (e, "setsockopt(ICMP_FILTER)"))?;
    }
    if let Some(n) = r.nodefrag.filter(|_| ie.family != FAMILY_V6) {
        set_int(f, libc::SOL_IP, IP_NODEFRAG, i32::from(n))
            .map_err(|e| (e, "setsockopt(IP_NODEFRAG)"))?;
    }
    if let Some(h) = r.hdrincl {
        let (level, opt, name) = if ie.family == FAMILY_V6 {
            (libc::SOL_IPV6, IPV6_HDRINCL, "setsockopt(IPV6_HDRINCL)")
        } else {
            (libc::SOL_IP, libc::IP_HDRINCL, "setsockopt(IP_HDRINCL)")
        };
        set_int(f, level, opt, i32::from(h)).map_err(|e| (e, name))?;
    }
    Ok(())
}

/// Binds raw socket `f` to its dumped address `l` (the port is the protocol, which bind
/// ignores); an unbound one (the "any" address) is left alone. An IPv6 address may be
/// gone or tentative: `IPV6_FREEBIND` is on for the bind (a raw IPv6 socket takes no
/// `SOL_IP` option), off again unless it was on at dump.
pub fn bind(
    f: BorrowedFd<'_>,
    ie: &InetSkEntry,
    l: SocketAddr,
) -> Result<(), (Errno, &'static str)> {
    if l.ip().is_unspecified() {
        return Ok(());
    }
    let v6 = matches!(l.ip(), IpAddr::V6(_));
    if v6 {
        set_int(f, libc::SOL_IPV6, sys::IPV6_FREEBIND, 1)
            .map_err(|e| (e, "setsockopt(IPV6_FREEBIND)"))?;
    }
    sys::bind(f, SocketAddr::new(l.ip(), 0)).map_err(|e| (e, "bind"))?;
    let kept = ie.ip_opts.as_ref().and_then(|o| o.freebind) == Some(true);
    if v6 && !kept {
        set_int(f, libc::SOL_IPV6, sys::IPV6_FREEBIND, 0)
            .map_err(|e| (e, "setsockopt(IPV6_FREEBIND)"))?;
    }
    Ok(())
}
