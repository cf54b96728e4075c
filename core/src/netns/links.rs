//! Network devices as rtnetlink shows them (`RTM_NEWLINK` answers), and the requests that
//! make them again: loopback's state and a veth whose peer goes to another namespace.

use criu_proto::images::NetDeviceEntry;

use super::nlmsg::{self, Builder};

/// rtnetlink message types.
pub const RTM_NEWLINK: u16 = 16;
pub const RTM_GETLINK: u16 = 18;
pub const RTM_SETLINK: u16 = 19;
pub const RTM_NEWADDR: u16 = 20;
pub const RTM_GETADDR: u16 = 22;
pub const RTM_NEWROUTE: u16 = 24;
pub const RTM_GETROUTE: u16 = 26;
pub const RTM_NEWRULE: u16 = 32;
pub const RTM_GETRULE: u16 = 34;
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_LINK: u16 = 5;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_LINK_NETNSID: u16 = 37;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
/// `ARPHRD_LOOPBACK`.
pub const ARPHRD_LOOPBACK: u16 = 772;
/// `IFF_UP`.
pub const IFF_UP: u32 = 1;

/// One device, as the kernel describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    /// `ARPHRD_*`.
    pub hw_type: u16,
    pub flags: u32,
    pub name: String,
    pub mtu: u32,
    pub address: Option<Vec<u8>>,
    /// `IFLA_INFO_KIND` ("veth", "bridge", ...), none for loopback and plain devices.
    pub kind: Option<String>,
    /// `IFLA_LINK`: the peer's index (veth).
    pub link: Option<u32>,
    /// `IFLA_LINK_NETNSID`: the peer is in another namespace.
    pub link_netnsid: Option<i32>,
    pub master: Option<u32>,
}

/// Parses one `RTM_NEWLINK` message.
pub fn parse(m: &[u8]) -> Result<Link, String> {
    let p = nlmsg::payload(m);
    if p.len() < 16 {
        return Err("RTM_NEWLINK shorter than its ifinfomsg".into());
    }
    let hw_type = u16::from_ne_bytes([p[2], p[3]]);
    let index = u32::from_ne_bytes([p[4], p[5], p[6], p[7]]);
    let flags = u32::from_ne_bytes([p[8], p[9], p[10], p[11]]);
    let a = nlmsg::attrs(&p[16..])?;
    let name = nlmsg::find(&a, IFLA_IFNAME)
        .map(nlmsg::as_str)
        .ok_or_else(|| format!("link {index} has no name"))?;
    let kind = match nlmsg::find(&a, IFLA_LINKINFO) {
        Some(info) => nlmsg::find(&nlmsg::attrs(info)?, IFLA_INFO_KIND).map(nlmsg::as_str),
        None => None,
    };
    Ok(Link {
        index,
        hw_type,
        flags,
        mtu: nlmsg::find(&a, IFLA_MTU)
            .and_then(nlmsg::as_u32)
            .unwrap_or(0),
        address: nlmsg::find(&a, IFLA_ADDRESS).map(<[u8]>::to_vec),
        kind,
        link: nlmsg::find(&a, IFLA_LINK).and_then(nlmsg::as_u32),
        link_netnsid: nlmsg::find(&a, IFLA_LINK_NETNSID)
            .and_then(nlmsg::as_u32)
            .map(|v| v as i32),
        master: nlmsg::find(&a, IFLA_MASTER).and_then(nlmsg::as_u32),
        name,
    })
}

/// A request for the dump of every device.
pub fn dump_request() -> [u8; 16] {
    nlmsg::ifinfomsg(libc::AF_UNSPEC as u8, 0, 0, 0, 0)
}

/// `RTM_SETLINK` for device `index`: up or down as `flags` says, and `mtu`.
pub fn set_state(index: u32, flags: u32, mtu: u32) -> Vec<u8> {
    let mut b = Builder::new(
        RTM_SETLINK,
        0,
        &nlmsg::ifinfomsg(0, 0, index as i32, flags & IFF_UP, IFF_UP),
    );
    b.attr(IFLA_MTU, &mtu.to_ne_bytes());
    b.finish()
}

/// `RTM_NEWLINK` making veth `nde` (its index, name, MTU and address) down, its peer named
/// `peer` in the namespace of fd `peer_ns`.
pub fn new_veth(nde: &NetDeviceEntry, peer: &str, peer_ns: i32) -> Vec<u8> {
    let mut b = Builder::new(
        RTM_NEWLINK,
        0,
        &nlmsg::ifinfomsg(0, 0, nde.ifindex as i32, 0, 0),
    );
    b.attr_str(IFLA_IFNAME, &nde.name);
    b.attr(IFLA_MTU, &nde.mtu.to_ne_bytes());
    if let Some(a) = nde.address.as_ref().filter(|a| !a.is_empty()) {
        b.attr(IFLA_ADDRESS, a);
    }
    b.nest(IFLA_LINKINFO).attr_str(IFLA_INFO_KIND, "veth");
    b.nest(IFLA_INFO_DATA).nest(VETH_INFO_PEER);
    b.raw(&nlmsg::ifinfomsg(0, 0, 0, 0, 0));
    b.attr_str(IFLA_IFNAME, peer);
    b.attr(IFLA_NET_NS_FD, &peer_ns.to_ne_bytes());
    b.finish()
}

/// `FRA_PRIORITY`.
const FRA_PRIORITY: u16 = 6;
/// `sizeof(struct fib_rule_hdr)`.
const FIB_RULE_HDR: usize = 12;

/// A dumped rule (`RTM_NEWRULE`) with its priority made explicit. The kernel leaves
/// `FRA_PRIORITY` out of a priority-0 rule, and a rule added without it gets the next
/// free priority instead: the namespace's own `0: from all lookup local` would come back a
/// second time as 32765 rather than be an EEXIST the restore skips.
pub fn rule_with_priority(m: &[u8]) -> Vec<u8> {
    let mut out = m.to_vec();
    let p = nlmsg::payload(m);
    let has = match p.get(FIB_RULE_HDR..).map(nlmsg::attrs) {
        Some(Ok(a)) => nlmsg::find(&a, FRA_PRIORITY).is_some(),
        // Malformed: sent as it is, the kernel's answer names the entry.
        _ => true,
    };
    if !has {
        out.resize((out.len() + 3) & !3, 0);
        out.extend_from_slice(&8u16.to_ne_bytes());
        out.extend_from_slice(&FRA_PRIORITY.to_ne_bytes());
        out.extend_from_slice(&0u32.to_ne_bytes());
        let len = out.len() as u32;
        out[..4].copy_from_slice(&len.to_ne_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_rule_without_priority_gets_priority_zero() {
        // nlmsghdr (16) + fib_rule_hdr (12) + FRA_TABLE (8).
        let mut m = vec![0u8; 36];
        m[..4].copy_from_slice(&36u32.to_ne_bytes());
        m[28..36].copy_from_slice(&[8, 0, 15, 0, 255, 0, 0, 0]);
        let r = rule_with_priority(&m);
        assert_eq!(r.len(), 44);
        assert_eq!(u32::from_ne_bytes(r[..4].try_into().unwrap()), 44);
        let a = nlmsg::attrs(&nlmsg::payload(&r)[FIB_RULE_HDR..]).unwrap();
        assert_eq!(nlmsg::find(&a, FRA_PRIORITY), Some(&0u32.to_ne_bytes()[..]));
        assert_eq!(rule_with_priority(&r), r, "already explicit: unchanged");
    }

    use super::*;

    #[test]
    fn a_veth_request_parses_back_as_that_veth() {
        let nde = NetDeviceEntry {
            r#type: 2,
            ifindex: 7,
            mtu: 1400,
            flags: 0x1003,
            name: "eth7".into(),
            address: Some(vec![2, 0, 0, 0, 0, 9]),
            ..Default::default()
        };
        let mut m = new_veth(&nde, "out7", 5);
        // As the kernel would echo it: RTM_NEWLINK with the same attributes.
        m[4..6].copy_from_slice(&RTM_NEWLINK.to_ne_bytes());
        let l = parse(&m).unwrap();
        assert_eq!(
            (l.index, l.name.as_str(), l.mtu, l.kind.as_deref()),
            (7, "eth7", 1400, Some("veth"))
        );
        assert_eq!(l.address, Some(vec![2, 0, 0, 0, 0, 9]));
        let s = parse(&set_state(1, 0x49, 65536)).unwrap_err();
        assert!(s.contains("no name"), "{s}");
    }
}
