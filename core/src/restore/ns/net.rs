//! The root's own network namespace, made before any task exists: criu makes a new one,
//! sets it up from a thread inside (sysctls, devices, their state, addresses, routes, rules,
//! as `ip ... restore` would from CRIU's raw images), then moves its restoring thread in, so
//! that the root is cloned into it and every socket of the tree is created in it; the guard
//! ([`Inside`]) moves the thread back when the restore is over. A veth's outer end is
//! created in criu's namespace under the name `--external veth[IN]:OUT` (or
//! `--veth-pair IN=OUT`) gives, as CRIU; it comes back down and without addresses.
//! Everything is read and checked before anything is made; a failure drops the new
//! namespace (and with it the veth pair).

use std::fs::File;
use std::os::fd::AsRawFd;

use criu_proto::ImageKind;
use criu_proto::images::{InventoryEntry, NdType, NetDeviceEntry, NetnsEntry};
use nix::errno::Errno;

use crate::netns::conf::{self, DEVCONFS4, DEVCONFS6, IPV4_SYSCTL, UNIX_CONF};
use crate::netns::enter::{self, EnterError, Inside};
use crate::netns::ipimg::{self, IpImage};
use crate::netns::links;
use crate::netns::nlmsg;
use crate::netns::sock::{NlError, NlSocket};
use crate::restore::error::{RestoreError, Result, bad};
use crate::restore::imgread::{INVENTORY_MAGIC, Images};
use crate::restore::plan::RestorePlan;

/// `RTA_GATEWAY`, `RTA_MULTIPATH`: routes through a gateway go after the others (the
/// gateway must be reachable through one of those), as `ip route restore` orders them.
const RTA_GATEWAY: u16 = 5;
const RTA_MULTIPATH: u16 = 9;

/// The namespace to make: its images, read and checked.
#[derive(Debug)]
pub struct NetRestore {
    pid: i32,
    id: u32,
    /// Each device with the outer name of its peer (veth).
    links: Vec<(NetDeviceEntry, Option<String>)>,
    ip: Vec<(IpImage, Vec<Vec<u8>>)>,
    conf: NetnsEntry,
}

/// The outer name `--external veth[IN]:OUT` gives veth `name` (`--veth-pair` is given as
/// the same). A bridge to move it to (`OUT@BRIDGE`) is not supported.
fn peer_name(external: &[String], name: &str) -> Option<String> {
    let key = format!("veth[{name}]:");
    external
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix(&key))
        .map(str::to_string)
}

fn enter_err(pid: i32, step: &str, e: EnterError) -> RestoreError {
    let reason = match std::error::Error::source(&e) {
        Some(s) => format!("{e}: {s}"),
        None => e.to_string(),
    };
    RestoreError::Task {
        pid,
        tid: pid,
        step: step.into(),
        reason,
    }
}

impl NetRestore {
    /// Reads the images of the root's network namespace: None when the root shares criu's
    /// (or the images carry no namespace ids).
    pub fn load(
        images: &Images,
        plan: &RestorePlan,
        external: &[String],
    ) -> Result<Option<NetRestore>> {
        let root = &plan.tasks[0];
        let (Some(ids), true) = (&root.ids, images.exists("inventory.img")) else {
            return Ok(None);
        };
        let inv: InventoryEntry = images.single("inventory.img", INVENTORY_MAGIC)?;
        let (Some(mine), Some(criu)) = (ids.net_ns_id, inv.root_ids.and_then(|r| r.net_ns_id))
        else {
            return Ok(None);
        };
        if mine == criu {
            return Ok(None);
        }
        let pid = root.pid;
        let name = ImageKind::Netdev.file_name(u64::from(mine));
        if !images.exists(&name) {
            return Err(bad(&name, None, "missing (the root's network namespace)"));
        }
        let devs: Vec<NetDeviceEntry> = images.entries(&name, ImageKind::Netdev.magic())?;
        let mut links = Vec::new();
        for (i, d) in devs.into_iter().enumerate() {
            let ty = NdType::try_from(d.r#type).map_err(|_| {
                bad(
                    &name,
                    Some(i),
                    format!("device {}: unknown device type {}", d.name, d.r#type),
                )
            })?;
            let peer = match ty {
                NdType::Loopback => None,
                NdType::Veth => {
                    let out =
                        peer_name(external, &d.name).ok_or_else(|| RestoreError::Unsupported {
                            pid,
                            what: format!(
                                "veth {} of the network namespace without an outer name",
                                d.name
                            ),
                            hint: "name its outer end as CRIU: --external veth[IN]:OUT or \
                               --veth-pair IN=OUT",
                        })?;
                    if out.contains('@') {
                        return Err(RestoreError::Unsupported {
                            pid,
                            what: format!(
                                "veth {}: moving its outer end to a bridge ({out})",
                                d.name
                            ),
                            hint: "give the outer name alone and attach it to the bridge \
                                   after the restore",
                        });
                    }
                    Some(out)
                }
                other => {
                    return Err(RestoreError::Unsupported {
                        pid,
                        what: format!("network device {} of type {}", d.name, other.as_str_name()),
                        hint: "only loopback and veth devices are restored; dump the tree \
                               without that device",
                    });
                }
            };
            links.push((d, peer));
        }
        let mut ip = Vec::new();
        for (kind, ty) in [
            (IpImage::Addr, links::RTM_NEWADDR),
            (IpImage::Route, links::RTM_NEWROUTE),
            (IpImage::Route6, links::RTM_NEWROUTE),
            (IpImage::Rule, links::RTM_NEWRULE),
        ] {
            let file = kind.file_name(mine);
            let bytes = match std::fs::read(images.path(&file)) {
                Ok(b) => b,
                // CRIU lets `ip rule save` fail.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && kind == IpImage::Rule => {
                    continue;
                }
                Err(e) => return Err(bad(&file, None, format!("cannot read: {e}"))),
            };
            let msgs = ipimg::decode(kind, &bytes).map_err(|r| bad(&file, None, r))?;
            for (i, m) in msgs.iter().enumerate() {
                if nlmsg::msg_type(m) != ty {
                    return Err(bad(
                        &file,
                        Some(i),
                        format!("netlink message type {}, expected {ty}", nlmsg::msg_type(m)),
                    ));
                }
            }
            ip.push((kind, msgs));
        }
        let name = ImageKind::Netns.file_name(u64::from(mine));
        if !images.exists(&name) {
            return Err(bad(&name, None, "missing (the root's network namespace)"));
        }
        let conf: NetnsEntry = images.single(&name, ImageKind::Netns.magic())?;
        Ok(Some(NetRestore {
            pid,
            id: mine,
            links,
            ip,
            conf,
        }))
    }

    /// Makes the namespace, sets it up and moves the calling thread into it until the
    /// returned guard drops.
    pub fn create(&self) -> Result<Inside> {
        let pid = self.pid;
        let host = enter::current().map_err(|e| enter_err(pid, "network namespace", e))?;
        let ns = enter::create().map_err(|e| enter_err(pid, "making the network namespace", e))?;
        enter::in_netns(&ns, || self.configure(&host))
            .map_err(|e| enter_err(pid, "entering the new network namespace", e))??;
        tracing::info!(
            pid,
            id = self.id,
            inode = enter::inode(&ns),
            "network namespace made"
        );
        Inside::enter(&ns).map_err(|e| enter_err(pid, "entering the new network namespace", e))
    }

    fn nl_err(&self, step: String, e: NlError) -> RestoreError {
        match e.errno() {
            Some(source) => RestoreError::Local {
                pid: self.pid,
                step,
                source,
            },
            None => RestoreError::Task {
                pid: self.pid,
                tid: self.pid,
                step,
                reason: e.to_string(),
            },
        }
    }

    fn conf(
        &self,
        dir: &str,
        names: &[&str],
        entries: &[criu_proto::images::SysctlEntry],
    ) -> Result<()> {
        conf::write_all(dir, names, entries).map_err(|e| RestoreError::Task {
            pid: self.pid,
            tid: self.pid,
            step: format!("network namespace sysctls ({dir})"),
            reason: match std::error::Error::source(&e) {
                Some(s) => format!("{e}: {s}"),
                None => e.to_string(),
            },
        })
    }

    /// Runs inside the new namespace; `host` is criu's (where veth peers go).
    fn configure(&self, host: &File) -> Result<()> {
        let c = &self.conf;
        let dir = |proto, dev: &str| format!("/proc/sys/net/{proto}/conf/{dev}");
        self.conf(&dir("ipv4", "all"), &DEVCONFS4, &c.all_conf4)?;
        self.conf(&dir("ipv4", "default"), &DEVCONFS4, &c.def_conf4)?;
        self.conf(&dir("ipv6", "all"), &DEVCONFS6, &c.all_conf6)?;
        self.conf(&dir("ipv6", "default"), &DEVCONFS6, &c.def_conf6)?;
        let mut nl = NlSocket::route().map_err(|e| self.nl_err("rtnetlink socket".into(), e))?;
        for (d, peer) in &self.links {
            if let Some(peer) = peer {
                let req = links::new_veth(d, peer, host.as_raw_fd());
                nl.request(req, nlmsg::F_CREATE | nlmsg::F_EXCL)
                    .map_err(|e| {
                        self.nl_err(format!("creating veth {} (peer {peer} outside)", d.name), e)
                    })?;
            }
            self.conf(&dir("ipv4", &d.name), &DEVCONFS4, &d.conf4)?;
            self.conf(&dir("ipv6", &d.name), &DEVCONFS6, &d.conf6)?;
            nl.request(links::set_state(d.ifindex, d.flags, d.mtu), 0)
                .map_err(|e| self.nl_err(format!("setting the state of device {}", d.name), e))?;
        }
        for (kind, msgs) in &self.ip {
            let mut order: Vec<usize> = (0..msgs.len()).collect();
            if matches!(kind, IpImage::Route | IpImage::Route6) {
                order.sort_by_key(|&i| has_gateway(&msgs[i]));
            }
            for i in order {
                let msg = match kind {
                    IpImage::Rule => links::rule_with_priority(&msgs[i]),
                    _ => msgs[i].clone(),
                };
                match nl.request(msg, nlmsg::F_CREATE | nlmsg::F_EXCL) {
                    Ok(()) => {}
                    // What the kernel made itself (loopback's addresses, link routes).
                    Err(e) if e.errno() == Some(Errno::EEXIST) => {}
                    Err(e) => {
                        let file = kind.file_name(self.id);
                        return Err(self.nl_err(format!("restoring {file}, entry {i}"), e));
                    }
                }
            }
        }
        self.conf("/proc/sys/net/unix", &UNIX_CONF, &c.unix_conf)?;
        self.conf("/proc/sys/net/ipv4", &IPV4_SYSCTL, &c.ipv4_sysctl)
    }
}

/// Whether route message `m` goes through a gateway.
fn has_gateway(m: &[u8]) -> bool {
    let p = nlmsg::payload(m);
    p.get(12..)
        .and_then(|a| nlmsg::attrs(a).ok())
        .is_some_and(|a| {
            a.iter()
                .any(|(t, _)| *t == RTA_GATEWAY || *t == RTA_MULTIPATH)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outer_names_come_from_external_veth_entries() {
        let ext = vec![
            "unix[5]".to_string(),
            "veth[eth0]:out0".into(),
            "veth[eth0]:out1".into(),
        ];
        assert_eq!(peer_name(&ext, "eth0").as_deref(), Some("out1"));
        assert_eq!(peer_name(&ext, "eth1"), None);
    }
}
