//! A locked TCP connection ([`Tuple`]) and the byte layouts the BPF programs read
//! (`struct netlock_tuple` and `struct netlock_config` of `bpf/netlock.c`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Size of `struct netlock_tuple`.
pub const TUPLE_KEY_LEN: usize = 40;

/// `config.flags` bit: drop every packet of the namespace (namespace scope).
pub const FLAG_ALL_TRAFFIC: u32 = 1;
/// `config.flags` bit: packets with `config.mark` pass.
pub const FLAG_ALLOW_MARK: u32 = 2;

/// CRIU's `SOCCR_MARK`: the mark criu's own repair traffic carries, never dropped.
pub const SOCCR_MARK: u32 = 0xC114;

/// One TCP connection as the dumped tree sees it: `local` is its own end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tuple {
    /// The tree's end.
    pub local: SocketAddr,
    /// The peer.
    pub remote: SocketAddr,
}

impl Tuple {
    /// A tuple; an IPv4-mapped IPv6 pair (a dual-stack socket talking IPv4) becomes IPv4,
    /// as its packets are.
    pub fn new(local: SocketAddr, remote: SocketAddr) -> Tuple {
        match (unmap(local), unmap(remote)) {
            (l, r) if l.is_ipv4() && r.is_ipv4() => Tuple {
                local: l,
                remote: r,
            },
            _ => Tuple { local, remote },
        }
    }

    /// The same connection seen from the peer's side.
    pub fn reversed(self) -> Tuple {
        Tuple {
            local: self.remote,
            remote: self.local,
        }
    }

    /// Whether it is an IPv6 connection.
    pub fn is_ipv6(&self) -> bool {
        self.local.is_ipv6()
    }

    /// The key of the `tuples` map: family, local and remote addresses (16 bytes each,
    /// IPv4 in the first 4), local and remote ports in network byte order.
    pub fn key(&self) -> [u8; TUPLE_KEY_LEN] {
        let mut k = [0u8; TUPLE_KEY_LEN];
        let family = if self.is_ipv6() {
            libc::AF_INET6
        } else {
            libc::AF_INET
        } as u32;
        k[0..4].copy_from_slice(&family.to_ne_bytes());
        put_addr(&mut k[4..20], self.local.ip());
        put_addr(&mut k[20..36], self.remote.ip());
        k[36..38].copy_from_slice(&self.local.port().to_be_bytes());
        k[38..40].copy_from_slice(&self.remote.port().to_be_bytes());
        k
    }
}

fn put_addr(dst: &mut [u8], ip: IpAddr) {
    match ip {
        IpAddr::V4(a) => dst[..4].copy_from_slice(&a.octets()),
        IpAddr::V6(a) => dst.copy_from_slice(&a.octets()),
    }
}

/// `::ffff:a.b.c.d` as `a.b.c.d`.
fn unmap(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), addr.port()),
            None => addr,
        },
        IpAddr::V4(_) => addr,
    }
}

impl std::fmt::Display for Tuple {
    /// `10.0.0.1:80 10.0.0.2:41000`, `[::1]:80 [::1]:41000`: local then remote.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.local, self.remote)
    }
}

impl std::str::FromStr for Tuple {
    type Err = String;

    /// The [`Display`](std::fmt::Display) form.
    fn from_str(s: &str) -> Result<Tuple, String> {
        let mut it = s.split_whitespace();
        let (Some(l), Some(r), None) = (it.next(), it.next(), it.next()) else {
            return Err(format!("{s:?} is not \"LOCAL REMOTE\""));
        };
        let parse = |a: &str| {
            a.parse::<SocketAddr>()
                .map_err(|e| format!("{a:?} is not an address:port ({e})"))
        };
        let (local, remote) = (parse(l)?, parse(r)?);
        if local.is_ipv6() != remote.is_ipv6() {
            return Err(format!("{s:?} mixes IPv4 and IPv6"));
        }
        Ok(Tuple::new(local, remote))
    }
}

/// The `config` map's value: flags, then the mark that passes.
pub fn config_value(flags: u32, mark: u32) -> [u8; 8] {
    let mut v = [0u8; 8];
    v[..4].copy_from_slice(&flags.to_ne_bytes());
    v[4..].copy_from_slice(&mark.to_ne_bytes());
    v
}

/// An address of `/proc/net/tcp{,6}` (`0100007F` or 32 hex digits): the kernel prints
/// each 32-bit word of the network-order address as a native integer.
pub fn parse_proc_addr(hex: &str) -> Option<IpAddr> {
    let word = |i: usize| {
        hex.get(i * 8..i * 8 + 8)
            .and_then(|w| u32::from_str_radix(w, 16).ok())
            .map(u32::to_ne_bytes)
    };
    match hex.len() {
        8 => Some(IpAddr::V4(Ipv4Addr::from(word(0)?))),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            Some(IpAddr::V6(Ipv6Addr::from(b)))
        }
        _ => None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn key_layout_matches_the_c_struct() {
        let t: Tuple = "10.0.0.1:80 10.0.0.2:41000".parse().unwrap();
        let k = t.key();
        assert_eq!(&k[0..4], &(libc::AF_INET as u32).to_ne_bytes());
        assert_eq!(&k[4..8], &[10, 0, 0, 1]);
        assert_eq!(&k[8..20], &[0; 12]);
        assert_eq!(&k[20..24], &[10, 0, 0, 2]);
        assert_eq!(&k[36..38], &[0, 80]);
        assert_eq!(&k[38..40], &41000u16.to_be_bytes());
    }

    #[test]
    fn mapped_addresses_become_ipv4() {
        let t: Tuple = "[::ffff:10.0.0.1]:80 [::ffff:10.0.0.2]:9".parse().unwrap();
        assert_eq!(t.to_string(), "10.0.0.1:80 10.0.0.2:9");
        assert!(!t.is_ipv6());
        assert!("1.2.3.4:1 [::1]:2".parse::<Tuple>().is_err());
        assert!("1.2.3.4:1".parse::<Tuple>().is_err());
    }

    #[test]
    fn proc_net_tcp_addresses() {
        // 127.0.0.1 on a little-endian machine, as /proc/net/tcp prints it.
        let lo = u32::from_ne_bytes([127, 0, 0, 1]);
        assert_eq!(
            parse_proc_addr(&format!("{lo:08X}")),
            Some("127.0.0.1".parse().unwrap())
        );
        let one = u32::from_ne_bytes([0, 0, 0, 1]);
        let v6 = format!("{:08X}{:08X}{:08X}{one:08X}", 0, 0, 0);
        assert_eq!(parse_proc_addr(&v6), Some("::1".parse().unwrap()));
        assert_eq!(parse_proc_addr("0100007"), None);
        assert_eq!(parse_proc_addr("zz00007F"), None);
    }

    fn any_tuple() -> impl Strategy<Value = Tuple> {
        prop_oneof![
            (
                any::<[u8; 4]>(),
                any::<u16>(),
                any::<[u8; 4]>(),
                any::<u16>()
            )
                .prop_map(|(a, p, b, q)| Tuple::new(
                    SocketAddr::new(Ipv4Addr::from(a).into(), p),
                    SocketAddr::new(Ipv4Addr::from(b).into(), q)
                )),
            (
                any::<[u8; 16]>(),
                any::<u16>(),
                any::<[u8; 16]>(),
                any::<u16>()
            )
                .prop_map(|(a, p, b, q)| Tuple::new(
                    SocketAddr::new(Ipv6Addr::from(a).into(), p),
                    SocketAddr::new(Ipv6Addr::from(b).into(), q)
                )),
        ]
    }

    proptest! {
        #[test]
        fn text_form_round_trips(t in any_tuple()) {
            prop_assert_eq!(t.to_string().parse::<Tuple>().unwrap(), t);
            prop_assert_eq!(t.reversed().reversed(), t);
        }
    }

    pub(crate) fn arb_tuple() -> impl Strategy<Value = Tuple> {
        any_tuple()
    }
}
