//! The network namespace sysctls CRIU keeps, by its lists and in its order (an image holds
//! the values by position): per-device IPv4 and IPv6 `conf`, `net/unix/max_dgram_qlen` and
//! `net/ipv4/ping_group_range`. Read and written by a thread inside the namespace
//! (`/proc/sys/net` shows the namespace of the thread that looks).

use criu_proto::images::{SysctlEntry, SysctlType};

/// `net/ipv4/conf/DEV/*`, in CRIU's order.
pub const DEVCONFS4: [&str; 30] = [
    "accept_local",
    "accept_redirects",
    "accept_source_route",
    "arp_accept",
    "arp_announce",
    "arp_filter",
    "arp_ignore",
    "arp_notify",
    "bootp_relay",
    "disable_policy",
    "disable_xfrm",
    "force_igmp_version",
    "forwarding",
    "igmpv2_unsolicited_report_interval",
    "igmpv3_unsolicited_report_interval",
    "log_martians",
    "medium_id",
    "promote_secondaries",
    "proxy_arp",
    "proxy_arp_pvlan",
    "route_localnet",
    "rp_filter",
    "secure_redirects",
    "send_redirects",
    "shared_media",
    "src_valid_mark",
    "tag",
    "ignore_routes_with_linkdown",
    "drop_gratuitous_arp",
    "drop_unicast_in_l2_multicast",
];

/// `net/ipv6/conf/DEV/*`, in CRIU's order (`stable_secret` is a string).
pub const DEVCONFS6: [&str; 42] = [
    "accept_dad",
    "accept_ra",
    "accept_ra_defrtr",
    "accept_ra_from_local",
    "accept_ra_min_hop_limit",
    "accept_ra_mtu",
    "accept_ra_pinfo",
    "accept_ra_rt_info_max_plen",
    "accept_ra_rtr_pref",
    "accept_redirects",
    "accept_source_route",
    "autoconf",
    "dad_transmits",
    "disable_ipv6",
    "drop_unicast_in_l2_multicast",
    "drop_unsolicited_na",
    "force_mld_version",
    "force_tllao",
    "forwarding",
    "hop_limit",
    "ignore_routes_with_linkdown",
    "keep_addr_on_down",
    "max_addresses",
    "max_desync_factor",
    "mldv1_unsolicited_report_interval",
    "mldv2_unsolicited_report_interval",
    "mtu",
    "ndisc_notify",
    "optimistic_dad",
    "proxy_ndp",
    "regen_max_retry",
    "router_probe_interval",
    "router_solicitation_delay",
    "router_solicitation_interval",
    "router_solicitations",
    "stable_secret",
    "suppress_frag_ndisc",
    "temp_prefered_lft",
    "temp_valid_lft",
    "use_oif_addrs_only",
    "use_optimistic",
    "use_tempaddr",
];

/// `net/unix/*` (`unix_conf`).
pub const UNIX_CONF: [&str; 1] = ["max_dgram_qlen"];
/// `net/ipv4/*` (`ipv4_sysctl`, strings).
pub const IPV4_SYSCTL: [&str; 1] = ["ping_group_range"];

/// A sysctl that could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ConfError {
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {text:?} is not a 32-bit integer")]
    Parse { path: String, text: String },
}

/// The path of device sysctl `name` of `dev` (or `all`/`default`) for `proto` (ipv4/ipv6).
pub fn dev_path(proto: &str, dev: &str, name: &str) -> String {
    format!("/proc/sys/net/{proto}/conf/{dev}/{name}")
}

fn is_string(name: &str) -> bool {
    name == "stable_secret" || name == "ping_group_range"
}

/// Reads one sysctl as CRIU's entry; one that does not exist (or an unset `stable_secret`,
/// EIO) is an entry without a value, as CRIU writes it.
pub fn read(path: &str, name: &str) -> Result<SysctlEntry, ConfError> {
    let string = is_string(name);
    let mut e = SysctlEntry {
        r#type: if string {
            SysctlType::CtlStr
        } else {
            SysctlType::Ctl32
        } as i32,
        ..Default::default()
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(e),
        Err(err) if err.raw_os_error() == Some(libc::EIO) && string => return Ok(e),
        Err(source) => {
            return Err(ConfError::Io {
                op: "reading",
                path: path.into(),
                source,
            });
        }
    };
    let text = text.trim_end_matches('\n');
    if string {
        e.sarg = Some(text.to_string());
    } else {
        e.iarg = Some(text.trim().parse().map_err(|_| ConfError::Parse {
            path: path.into(),
            text: text.into(),
        })?);
    }
    Ok(e)
}

/// Reads `names` under `dir` (each `dir/name`).
pub fn read_all(dir: &str, names: &[&str]) -> Result<Vec<SysctlEntry>, ConfError> {
    names
        .iter()
        .map(|n| read(&format!("{dir}/{n}"), n))
        .collect()
}

/// The value an entry holds, as the text to write (None: nothing to write).
fn text_of(e: &SysctlEntry) -> Option<String> {
    match SysctlType::try_from(e.r#type) {
        Ok(SysctlType::Ctl32) => e.iarg.map(|v| v.to_string()),
        Ok(SysctlType::CtlStr) => e.sarg.clone(),
        Err(_) => None,
    }
}

/// Writes the entries (by position in `names`) under `dir`, each only where it differs from
/// the namespace's value now; `forwarding` goes first and `accept_redirects` last (setting
/// forwarding resets it). Entries past `names` (a newer CRIU's) are skipped with a warning.
pub fn write_all(dir: &str, names: &[&str], entries: &[SysctlEntry]) -> Result<(), ConfError> {
    if entries.len() > names.len() {
        tracing::warn!(
            dir,
            extra = entries.len() - names.len(),
            "unknown sysctls skipped"
        );
    }
    let mut order: Vec<usize> = (0..entries.len().min(names.len())).collect();
    order.sort_by_key(|&i| match names[i] {
        "forwarding" => 0,
        "accept_redirects" => 2,
        _ => 1,
    });
    for i in order {
        let name = names[i];
        let Some(want) = text_of(&entries[i]) else {
            continue;
        };
        let path = format!("{dir}/{name}");
        let now = read(&path, name)?;
        if text_of(&now).as_deref() == Some(want.as_str()) {
            continue;
        }
        if text_of(&now).is_none() && !std::path::Path::new(&path).exists() {
            tracing::warn!(path, "sysctl absent on this kernel: not restored");
            continue;
        }
        std::fs::write(&path, &want).map_err(|source| ConfError::Io {
            op: "writing",
            path: path.clone(),
            source,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_read_as_criu_entries_and_missing_ones_stay_empty() {
        let e = read("/proc/sys/net/unix/max_dgram_qlen", "max_dgram_qlen").unwrap();
        assert_eq!(e.r#type, SysctlType::Ctl32 as i32);
        assert!(e.iarg.is_some());
        let e = read("/proc/sys/net/ipv4/ping_group_range", "ping_group_range").unwrap();
        assert!(e.sarg.unwrap().contains('\t'));
        let e = read("/proc/sys/net/ipv4/conf/lo/no_such_thing", "no_such_thing").unwrap();
        assert_eq!((e.iarg, e.sarg.as_deref()), (None, None));
        assert_eq!(text_of(&e), None);
    }
}
