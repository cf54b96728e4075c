//! The rest of CRIU 4.2's `criu check --feature` names (criu/cr-check.c, feature_list), and
//! the answer `criu check --feature NAME` gives for each.
//!
//! CRIU's test driver runs `criu check --feature NAME` and skips a test when it exits
//! non-zero, so the answer is "can this implementation checkpoint it here", not only "does
//! the kernel have it": a feature of a resource criu-rs does not checkpoint yet is missing
//! whatever the kernel says ([`NOT_BUILT`]; the kernel's answer is kept in the reason).

use std::path::Path;

use super::checks_rawsk::net_diag_raw;
use super::{Check, CheckResult, KernelFeatures, Need, Status, UnknownFeature};
use crate::sys::probe;

type Outcome = Result<Option<String>, String>;

macro_rules! criu {
    ($name:literal, $what:literal, $hint:literal, $probe:ident) => {
        Check {
            name: $name,
            criu_feature: true,
            what: $what,
            need: Need::Optional,
            hint: $hint,
            probe: $probe,
        }
    };
}

pub(super) static CHECKS: &[Check] = &[
    criu!("tun", "/dev/net/tun", "needs CONFIG_TUN", dev_net_tun),
    criu!(
        "tun_ns",
        "/dev/net/tun",
        "needs CONFIG_TUN (Linux 4.16+ for TUNGETDEVNETNS)",
        dev_net_tun
    ),
    criu!(
        "loginuid",
        "/proc/self/loginuid",
        "needs CONFIG_AUDITSYSCALL",
        loginuid
    ),
    criu!(
        "autofs",
        "autofs in /proc/filesystems",
        "needs CONFIG_AUTOFS_FS",
        autofs
    ),
    criu!(
        "compat_cr",
        "32-bit tasks",
        "criu-rs dumps x86_64 tasks only",
        never
    ),
    criu!(
        "net_diag_raw",
        "raw IPv4 and IPv6 sockets",
        "needs CAP_NET_RAW",
        net_diag_raw
    ),
    criu!("nsid", "network namespace ids", "needs Linux 4.0+", never),
    criu!("link_nsid", "IFLA_LINK_NETNSID", "needs Linux 4.0+", never),
    criu!(
        "external_net_ns",
        "external network namespaces",
        "a CRIU version flag",
        never
    ),
    criu!("newifindex", "IFLA_NEW_IFINDEX", "needs Linux 5.8+", never),
    criu!(
        "nftables",
        "nftables (the nft tool)",
        "install nftables",
        nft_tool
    ),
    criu!(
        "has_ipt_legacy",
        "iptables-legacy in PATH",
        "install iptables",
        ipt_legacy
    ),
    criu!(
        "apparmor_stacking",
        "AppArmor namespaces and stacking",
        "needs AppArmor",
        apparmor
    ),
    criu!(
        "network_lock_nftables",
        "nftables network lock (the nft tool)",
        "install nftables",
        nft_tool
    ),
    criu!(
        "ipv6_freebind",
        "IPV6_FREEBIND on an AF_INET6 socket",
        "needs Linux 4.15+",
        ipv6_freebind
    ),
    criu!(
        "timer_cr_ids",
        "PR_TIMER_CREATE_RESTORE_IDS",
        "needs Linux 6.15 or newer; POSIX timers cannot be restored with their ids without it",
        timer_cr_ids
    ),
    criu!(
        "overlayfs_maps",
        "overlayfs paths in /proc/PID/maps",
        "needs Linux 4.19+",
        never
    ),
    criu!(
        "breakpoints",
        "hardware breakpoints (debug registers)",
        "needs CONFIG_HAVE_HW_BREAKPOINT",
        never
    ),
    criu!(
        "pagemap_scan_guard_pages",
        "MADV_GUARD_INSTALL reported by PAGEMAP_SCAN",
        "needs Linux 6.13 or newer",
        guard_pages
    ),
];

/// CRIU feature names whose resource criu-rs does not checkpoint yet, with what is missing.
pub static NOT_BUILT: &[(&str, &str)] = &[
    (
        "mem_dirty_track",
        "incremental dumps (pre-dump, --track-mem) are not built",
    ),
    ("tun", "tun devices are not dumped"),
    ("tun_ns", "tun devices are not dumped"),
    ("userns", "user namespaces are not dumped"),
    ("cgroupns", "cgroup namespaces are not dumped"),
    ("autofs", "autofs mounts are not dumped"),
    ("compat_cr", "32-bit tasks are not dumped"),
    ("uffd", "lazy restore (userfaultfd) is not built"),
    ("uffd-noncoop", "lazy restore (userfaultfd) is not built"),
    (
        "sk_ns",
        "sockets of another network namespace than criu's are refused",
    ),
    (
        "sk_unix_file",
        "unix sockets are dumped (SIOCUNIXFILE finds the directory of a relative name), but \
         not ones bound in another mount namespace: mount namespaces are not dumped",
    ),
    ("nsid", "network namespaces are not dumped"),
    ("link_nsid", "network namespaces are not dumped"),
    ("external_net_ns", "network namespaces are not dumped"),
    ("newifindex", "network devices are not restored"),
    (
        "nftables",
        "nftables rules of a network namespace are not dumped (the nftables network lock \
         is network_lock_nftables)",
    ),
    ("apparmor_stacking", "LSM profiles are not restored"),
    (
        "overlayfs_maps",
        "overlayfs mappings are not told apart (not probed)",
    ),
    ("breakpoints", "hardware breakpoints are not dumped"),
];

/// CRIU feature names whose resource a plugin checkpoints, with that plugin: answered by
/// the kernel probe when the plugin is in this criu (built in or loaded), missing otherwise.
pub static PLUGIN_BACKED: &[(&str, &str)] = &[
    // The inet plugin restores half-closed connections through TCP repair.
    ("tcp_half_closed", "inet"),
    // The inet plugin dumps and restores IP_FREEBIND and IPV6_FREEBIND.
    ("ipv6_freebind", "inet"),
    // The inet plugin dumps and restores raw sockets (without the raw sock_diag).
    ("net_diag_raw", "inet"),
    // `--network-lock iptables` and `--network-lock nftables`.
    ("has_ipt_legacy", "netlock"),
    ("network_lock_nftables", "netlock"),
];

/// `criu check --feature NAME`: the kernel probe of `name`, missing when criu-rs does not
/// checkpoint that resource yet, or when the plugin that does is not in this criu.
pub fn criu_feature(name: &str) -> Result<CheckResult, UnknownFeature> {
    let present = |plugin: &str| {
        crate::plugins::all()
            .iter()
            .any(|p| p.info().name == plugin)
    };
    criu_feature_with(name, present)
}

/// [`criu_feature`] with the question "is plugin P in this criu" answered by `present`.
pub fn criu_feature_with(
    name: &str,
    present: impl Fn(&str) -> bool,
) -> Result<CheckResult, UnknownFeature> {
    let mut result = super::check_feature(name)?;
    let lack = match NOT_BUILT.iter().find(|(n, _)| *n == name) {
        Some((_, lack)) => Some(lack.to_string()),
        None => PLUGIN_BACKED
            .iter()
            .find(|(n, plugin)| *n == name && !present(plugin))
            .map(|(_, plugin)| format!("the {plugin} plugin is neither built in nor loaded")),
    };
    if let Some(lack) = lack {
        let kernel = match &result.status {
            Status::Missing { reason, .. } => reason.clone(),
            ok => ok.to_string(),
        };
        result.status = Status::Missing {
            reason: format!("not supported by criu-rs: {lack} (kernel: {kernel})"),
            hint: "answered as missing so that callers skip what needs it",
        };
    }
    Ok(result)
}

fn never(_: &mut KernelFeatures) -> Outcome {
    Err("not probed".into())
}

fn exists(path: &str) -> Outcome {
    if Path::new(path).exists() {
        Ok(None)
    } else {
        Err(format!("no {path}"))
    }
}

fn dev_net_tun(_: &mut KernelFeatures) -> Outcome {
    exists("/dev/net/tun")
}

fn loginuid(_: &mut KernelFeatures) -> Outcome {
    exists("/proc/self/loginuid")
}

fn apparmor(_: &mut KernelFeatures) -> Outcome {
    exists("/sys/kernel/security/apparmor/features/domain/stack")
}

fn autofs(_: &mut KernelFeatures) -> Outcome {
    let fs = std::fs::read_to_string("/proc/filesystems").map_err(|e| e.to_string())?;
    if fs
        .lines()
        .any(|l| l.split_whitespace().last() == Some("autofs"))
    {
        Ok(None)
    } else {
        Err("autofs is not in /proc/filesystems".into())
    }
}

fn ipt_legacy(_: &mut KernelFeatures) -> Outcome {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("iptables-legacy"))
        .find(|p| p.exists())
        .map(|p| Some(p.display().to_string()))
        .ok_or_else(|| "no iptables-legacy in PATH".into())
}

/// What the netlock plugin runs for `--network-lock nftables`.
fn nft_tool(_: &mut KernelFeatures) -> Outcome {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("nft"))
        .find(|p| p.exists())
        .map(|p| Some(p.display().to_string()))
        .ok_or_else(|| "no nft in PATH".into())
}

fn ipv6_freebind(_: &mut KernelFeatures) -> Outcome {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};
    use std::os::fd::AsFd;
    let s = socket(
        AddressFamily::Inet6,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| format!("socket(AF_INET6): {e}"))?;
    probe::setsockopt_int(s.as_fd(), libc::SOL_IPV6, libc::IPV6_FREEBIND, 1)
        .map_err(|e| e.to_string())?;
    Ok(None)
}

fn timer_cr_ids(_: &mut KernelFeatures) -> Outcome {
    probe::prctl_timer_restore_ids_get()
        .map(|on| Some(format!("currently {}", if on { "on" } else { "off" })))
        .map_err(|e| e.to_string())
}

/// The same facts as the `guard_regions` probe, which runs before this table.
fn guard_pages(kf: &mut KernelFeatures) -> Outcome {
    if kf.guard_regions {
        Ok(None)
    } else {
        Err("PAGEMAP_SCAN does not report guard regions here".into())
    }
}
