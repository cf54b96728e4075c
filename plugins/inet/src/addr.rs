//! Socket addresses in CRIU's form: a port in host order and the address as 1 (IPv4) or 4
//! (IPv6) `uint32`s holding the address bytes as they are in memory (CRIU copies
//! `sin_addr` / `sin6_addr` into them), and the sender of a queued datagram in our field
//! `sk_packet_entry.criu_rs_addr` (the address bytes, then the port, big-endian: 6 or 18
//! bytes).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// `AF_INET` as CRIU's `inet_sk_entry.family` holds it.
pub const FAMILY_V4: u32 = libc::AF_INET as u32;
/// `AF_INET6`.
pub const FAMILY_V6: u32 = libc::AF_INET6 as u32;

/// An address as CRIU's words.
pub fn words_of(ip: IpAddr) -> Vec<u32> {
    let bytes: Vec<u8> = match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    bytes
        .chunks_exact(4)
        .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// The address CRIU's words hold for `family`; `None` when their number does not fit it.
pub fn ip_of(family: u32, words: &[u32]) -> Option<IpAddr> {
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    match family {
        FAMILY_V4 => <[u8; 4]>::try_from(bytes.as_slice())
            .ok()
            .map(|b| IpAddr::V4(Ipv4Addr::from(b))),
        FAMILY_V6 => <[u8; 16]>::try_from(bytes.as_slice())
            .ok()
            .map(|b| IpAddr::V6(Ipv6Addr::from(b))),
        _ => None,
    }
}

/// The "any" address of `family` (an unbound socket's name).
pub fn unspecified(family: u32) -> IpAddr {
    if family == FAMILY_V6 {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    }
}

/// A datagram sender as `criu_rs_addr` bytes.
pub fn sender_bytes(a: SocketAddr) -> Vec<u8> {
    let mut out = match a.ip() {
        IpAddr::V4(ip) => ip.octets().to_vec(),
        IpAddr::V6(ip) => ip.octets().to_vec(),
    };
    out.extend_from_slice(&a.port().to_be_bytes());
    out
}

/// The sender `criu_rs_addr` bytes name; `None` unless they are 6 or 18 bytes long.
pub fn sender_of(bytes: &[u8]) -> Option<SocketAddr> {
    let (ip, port) = bytes.split_at_checked(bytes.len().checked_sub(2)?)?;
    let port = u16::from_be_bytes([port[0], port[1]]);
    let ip = match ip.len() {
        4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(ip).ok()?)),
        16 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(ip).ok()?)),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Where a datagram for a socket bound to `local` is sent at restore: its own address, the
/// loopback one when it is bound to "any".
pub fn delivery_target(local: SocketAddr) -> SocketAddr {
    let ip = match local.ip() {
        IpAddr::V4(a) if a.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(a) if a.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, local.port())
}

/// `a` as an IPv6 address when `family` is IPv6 and `a` is IPv4 (a dual-stack socket's
/// peer as `recvmsg` gives it in v4-mapped form is already IPv6; this covers the rest).
pub fn for_family(family: u32, a: SocketAddr) -> SocketAddr {
    match (family, a.ip()) {
        (FAMILY_V6, IpAddr::V4(ip)) => SocketAddr::new(IpAddr::V6(ip.to_ipv6_mapped()), a.port()),
        _ => a,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<[u8; 4]>().prop_map(|b| IpAddr::V4(Ipv4Addr::from(b))),
            any::<[u8; 16]>().prop_map(|b| IpAddr::V6(Ipv6Addr::from(b))),
        ]
    }

    proptest! {
        #[test]
        fn words_round_trip(ip in any_ip()) {
            let family = if ip.is_ipv4() { FAMILY_V4 } else { FAMILY_V6 };
            prop_assert_eq!(ip_of(family, &words_of(ip)), Some(ip));
        }

        #[test]
        fn sender_round_trip(ip in any_ip(), port in any::<u16>()) {
            let a = SocketAddr::new(ip, port);
            prop_assert_eq!(sender_of(&sender_bytes(a)), Some(a));
        }

        #[test]
        fn odd_sender_lengths_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let ok = sender_of(&bytes).is_some();
            prop_assert_eq!(ok, bytes.len() == 6 || bytes.len() == 18);
        }
    }

    #[test]
    fn words_hold_the_bytes_in_memory_order() {
        // CRIU memcpy()s in_addr: 127.0.0.1 is the bytes 7f 00 00 01 in the first word.
        let w = words_of("127.0.0.1".parse().unwrap());
        assert_eq!(w[0].to_ne_bytes(), [127, 0, 0, 1]);
        assert_eq!(ip_of(FAMILY_V4, &[w[0], 0]), None);
    }
}
