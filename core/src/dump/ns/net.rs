//! The root's own network namespace: `netdev-N.img` (loopback and veth ends whose peer is
//! outside), `ifaddr-N.img`, `route-N.img`, `route6-N.img`, `rule-N.img` (iproute2's save
//! format, as CRIU) and `netns-N.img` (the sysctls CRIU keeps), read over rtnetlink and
//! `/proc/sys/net` by a criu thread inside the namespace. Devices of other kinds, a veth
//! with both ends inside or in a bridge, and iptables/nftables tables are refused.

use std::io::Write;

use criu_proto::ImageKind;
use criu_proto::images::{NdType, NetDeviceEntry, NetnsEntry};

use crate::image::ImageDir;
use crate::netns::conf::{self, DEVCONFS4, DEVCONFS6, IPV4_SYSCTL, UNIX_CONF};
use crate::netns::enter::{self, EnterError, Inside};
use crate::netns::ipimg::{self, IpImage};
use crate::netns::links::{self, Link};
use crate::netns::nlmsg;
use crate::netns::sock::{NlError, NlSocket};

use super::super::DumpError;
use super::super::run::img;

const STEP: &str = "network namespace";
/// `RT_TABLE_MAIN`, `RTA_TABLE`, `RTM_F_CLONED`: `ip route save` keeps the main table's
/// routes, not cached clones.
const RT_TABLE_MAIN: u32 = 254;
const RTA_TABLE: u16 = 15;
const RTM_F_CLONED: u32 = 0x200;

/// What is read inside the namespace.
struct NetDump {
    links: Vec<NetDeviceEntry>,
    ip: Vec<(IpImage, Vec<Vec<u8>>)>,
    conf: NetnsEntry,
}

fn enter_err(pid: i32, e: EnterError) -> DumpError {
    DumpError::Unexpected {
        pid,
        step: STEP,
        what: format!(
            "{e}: {}",
            std::error::Error::source(&e).map_or(String::new(), |s| s.to_string())
        ),
    }
}

fn nl_err(pid: i32, what: &str, e: NlError) -> DumpError {
    match e.errno() {
        Some(errno) => DumpError::sys(pid, STEP, what.to_string(), errno),
        None => DumpError::Unexpected {
            pid,
            step: STEP,
            what: format!("{what}: {e}"),
        },
    }
}

fn conf_err(pid: i32, e: conf::ConfError) -> DumpError {
    DumpError::Unexpected {
        pid,
        step: STEP,
        what: format!(
            "sysctl: {e}: {}",
            std::error::Error::source(&e).map_or(String::new(), |s| s.to_string())
        ),
    }
}

/// Moves criu's calling thread into `pid`'s network namespace when it is not criu's (None
/// otherwise) until the guard drops: the plugins' sockets (sock_diag) then see the tree's.
pub fn enter_tree(pid: i32) -> Result<Option<Inside>, DumpError> {
    let theirs = enter::of_pid(pid).map_err(|e| enter_err(pid, e))?;
    let mine = enter::current().map_err(|e| enter_err(pid, e))?;
    if enter::same(&theirs, &mine) {
        return Ok(None);
    }
    Inside::enter(&theirs)
        .map(Some)
        .map_err(|e| enter_err(pid, e))
}

/// Writes the images of `pid`'s network namespace, of id `id`.
pub fn dump(dir: &ImageDir, pid: i32, id: u32) -> Result<(), DumpError> {
    let ns = enter::of_pid(pid).map_err(|e| enter_err(pid, e))?;
    let got = enter::in_netns(&ns, || collect(pid)).map_err(|e| enter_err(pid, e))??;
    tracing::info!(pid, id, links = got.links.len(), "network namespace");
    dir.write_image(ImageKind::Netdev, u64::from(id), &got.links)
        .map_err(img(pid, "netdev"))?;
    for (kind, msgs) in &got.ip {
        let name = kind.file_name(id);
        let (mut file, _) = dir.create_file(&name).map_err(img(pid, "ip images"))?;
        file.write_all(&ipimg::encode(*kind, msgs))
            .map_err(|e| DumpError::Unexpected {
                pid,
                step: STEP,
                what: format!("writing {name}: {e}"),
            })?;
    }
    dir.write_single(ImageKind::Netns, u64::from(id), &got.conf)
        .map_err(img(pid, "netns"))
}

fn collect(pid: i32) -> Result<NetDump, DumpError> {
    refuse_netfilter(pid)?;
    let mut nl = NlSocket::route().map_err(|e| nl_err(pid, "rtnetlink socket", e))?;
    let answers = nl
        .dump(links::RTM_GETLINK, &links::dump_request())
        .map_err(|e| nl_err(pid, "RTM_GETLINK", e))?;
    let mut devs = Vec::new();
    for m in &answers {
        let link = links::parse(m).map_err(|what| DumpError::Unexpected {
            pid,
            step: STEP,
            what,
        })?;
        devs.push(device(pid, &link)?);
    }
    let addrs = nl
        .dump(
            links::RTM_GETADDR,
            &[libc::AF_UNSPEC as u8, 0, 0, 0, 0, 0, 0, 0],
        )
        .map_err(|e| nl_err(pid, "RTM_GETADDR", e))?;
    let mut ip = vec![(IpImage::Addr, addrs)];
    for (kind, family) in [
        (IpImage::Route, libc::AF_INET),
        (IpImage::Route6, libc::AF_INET6),
    ] {
        let all = nl
            .dump(links::RTM_GETROUTE, &rtmsg(family as u8))
            .map_err(|e| nl_err(pid, "RTM_GETROUTE", e))?;
        ip.push((
            kind,
            all.into_iter().filter(|m| is_saved_route(m)).collect(),
        ));
    }
    // IPv4 then IPv6 rules in one rule-N.img. CRIU's `ip rule save` has IPv4 only, but
    // its `ip rule restore` (and ours) replays any family, a default rule the new
    // namespace has already being an EEXIST that both skip.
    let mut rules = Vec::new();
    for family in [libc::AF_INET, libc::AF_INET6] {
        rules.extend(
            nl.dump(links::RTM_GETRULE, &rtmsg(family as u8))
                .map_err(|e| nl_err(pid, "RTM_GETRULE", e))?,
        );
    }
    ip.push((IpImage::Rule, rules));
    let c = |r: Result<_, conf::ConfError>| r.map_err(|e| conf_err(pid, e));
    let dir = |proto, dev| format!("/proc/sys/net/{proto}/conf/{dev}");
    let conf = NetnsEntry {
        def_conf4: c(conf::read_all(&dir("ipv4", "default"), &DEVCONFS4))?,
        all_conf4: c(conf::read_all(&dir("ipv4", "all"), &DEVCONFS4))?,
        def_conf6: c(conf::read_all(&dir("ipv6", "default"), &DEVCONFS6))?,
        all_conf6: c(conf::read_all(&dir("ipv6", "all"), &DEVCONFS6))?,
        unix_conf: c(conf::read_all("/proc/sys/net/unix", &UNIX_CONF))?,
        ipv4_sysctl: c(conf::read_all("/proc/sys/net/ipv4", &IPV4_SYSCTL))?,
        ..Default::default()
    };
    Ok(NetDump {
        links: devs,
        ip,
        conf,
    })
}

/// A `struct rtmsg` (also the layout of `struct fib_rule_hdr`) asking for `family`.
fn rtmsg(family: u8) -> [u8; 12] {
    let mut b = [0u8; 12];
    b[0] = family;
    b
}

/// Whether `ip route save` would keep route `m`: main table, not a cached clone.
fn is_saved_route(m: &[u8]) -> bool {
    let p = nlmsg::payload(m);
    if p.len() < 12 {
        return false;
    }
    let flags = u32::from_ne_bytes([p[8], p[9], p[10], p[11]]);
    let table = nlmsg::attrs(&p[12..])
        .ok()
        .and_then(|a| nlmsg::find(&a, RTA_TABLE).and_then(nlmsg::as_u32))
        .unwrap_or(u32::from(p[4]));
    table == RT_TABLE_MAIN && flags & RTM_F_CLONED == 0
}

/// The netdev entry of `link`, or the refusal naming it.
fn device(pid: i32, link: &Link) -> Result<NetDeviceEntry, DumpError> {
    let refuse = |what: String, hint| DumpError::Unsupported {
        pid,
        step: STEP,
        what,
        hint,
    };
    let ty = match (link.kind.as_deref(), link.hw_type) {
        (None, links::ARPHRD_LOOPBACK) => NdType::Loopback,
        (Some("veth"), _) if link.master.is_some() => {
            return Err(refuse(
                format!(
                    "veth {} enslaved to device {:?} (a bridge inside)",
                    link.name, link.master
                ),
                "only loopback and veth ends with their peer outside are dumped; \
                 release the veth from its master before the dump",
            ));
        }
        (Some("veth"), _) if link.link_netnsid.is_none() => {
            return Err(refuse(
                format!("veth {} whose peer is inside the same namespace", link.name),
                "only veth ends whose peer is outside the tree's namespace are dumped; \
                 move the peer out (ip link set PEER netns ...)",
            ));
        }
        (Some("veth"), _) => NdType::Veth,
        (kind, hw) => {
            return Err(refuse(
                format!(
                    "network device {} (index {}, kind {}, hardware type {hw})",
                    link.name,
                    link.index,
                    kind.unwrap_or("none")
                ),
                "only loopback and veth devices of a network namespace are dumped; \
                 remove the device before the dump",
            ));
        }
    };
    let c = |r: Result<_, conf::ConfError>| r.map_err(|e| conf_err(pid, e));
    Ok(NetDeviceEntry {
        r#type: ty as i32,
        ifindex: link.index,
        mtu: link.mtu,
        flags: link.flags,
        name: link.name.clone(),
        address: (ty != NdType::Loopback)
            .then(|| link.address.clone())
            .flatten(),
        conf4: c(conf::read_all(
            &format!("/proc/sys/net/ipv4/conf/{}", link.name),
            &DEVCONFS4,
        ))?,
        conf6: c(conf::read_all(
            &format!("/proc/sys/net/ipv6/conf/{}", link.name),
            &DEVCONFS6,
        ))?,
        peer_ifindex: link.link,
        ..Default::default()
    })
}

/// iptables (legacy) and nftables tables of the namespace: their rules would need
/// `iptables-save`/`nft`, which criu-rs does not run, so a namespace holding any is refused.
fn refuse_netfilter(pid: i32) -> Result<(), DumpError> {
    let hint = "firewall rules inside the namespace are not dumped (CRIU runs \
                iptables-save/nft; criu-rs does not): remove the tables before the dump";
    for file in ["ip_tables_names", "ip6_tables_names", "arp_tables_names"] {
        let path = format!("/proc/thread-self/net/{file}");
        let names = match std::fs::read_to_string(&path) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(DumpError::Unexpected {
                    pid,
                    step: STEP,
                    what: format!("reading {path}: {e}"),
                });
            }
        };
        if !names.trim().is_empty() {
            return Err(DumpError::Unsupported {
                pid,
                step: STEP,
                what: format!(
                    "iptables tables {} ({file})",
                    names.split_whitespace().collect::<Vec<_>>().join(", ")
                ),
                hint,
            });
        }
    }
    let tables = nft_tables().map_err(|e| nl_err(pid, "listing nftables tables", e))?;
    if !tables.is_empty() {
        return Err(DumpError::Unsupported {
            pid,
            step: STEP,
            what: format!("nftables tables {}", tables.join(", ")),
            hint,
        });
    }
    Ok(())
}

/// The names of the nftables tables of the calling thread's namespace (none when nftables
/// is not in the kernel).
fn nft_tables() -> Result<Vec<String>, NlError> {
    // (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETTABLE; nfgenmsg: family, NFNETLINK_V0, res_id.
    const GETTABLE: u16 = (10 << 8) | 1;
    const NFTA_TABLE_NAME: u16 = 1;
    let absent = |e: &NlError| {
        matches!(
            e.errno(),
            Some(nix::errno::Errno::EPROTONOSUPPORT | nix::errno::Errno::EOPNOTSUPP)
        )
    };
    let mut nl = match NlSocket::netfilter() {
        Ok(s) => s,
        Err(e) if absent(&e) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let answers = match nl.dump(GETTABLE, &[libc::AF_UNSPEC as u8, 0, 0, 0]) {
        Ok(a) => a,
        Err(e) if absent(&e) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(answers
        .iter()
        .map(|m| {
            let p = nlmsg::payload(m);
            nlmsg::attrs(p.get(4..).unwrap_or_default())
                .ok()
                .and_then(|a| nlmsg::find(&a, NFTA_TABLE_NAME).map(nlmsg::as_str))
                .unwrap_or_else(|| "(unnamed)".into())
        })
        .collect())
}
