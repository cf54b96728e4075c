use std::collections::HashSet;

use super::*;

/// CRIU's `criu check --feature` names (criu/cr-check.c, feature_list).
const CRIU_FEATURES: &[&str] = &[
    "mnt_id",
    "mem_dirty_track",
    "aio_remap",
    "timerfd",
    "tun",
    "tun_ns",
    "userns",
    "fdinfo_lock",
    "seccomp_suspend",
    "seccomp_filters",
    "loginuid",
    "cgroupns",
    "autofs",
    "tcp_half_closed",
    "compat_cr",
    "uffd",
    "uffd-noncoop",
    "can_map_vdso",
    "sk_ns",
    "sk_unix_file",
    "net_diag_raw",
    "nsid",
    "link_nsid",
    "kcmp_epoll",
    "timens",
    "external_net_ns",
    "clone3_set_tid",
    "newifindex",
    "nftables",
    "has_ipt_legacy",
    "pidfd_store",
    "ns_pid",
    "apparmor_stacking",
    "network_lock_nftables",
    "sockopt_buf_lock",
    "memfd_hugetlb",
    "move_mount_set_group",
    "openat2",
    "get_rseq_conf",
    "ipv6_freebind",
    "pagemap_scan",
    "timer_cr_ids",
    "overlayfs_maps",
    "breakpoints",
    "pagemap_scan_guard_pages",
];

/// `criu check --feature` answers every CRIU name; what criu-rs does not checkpoint is
/// missing whatever the kernel says, what it does follows the kernel.
#[test]
fn every_criu_feature_name_is_answered_truthfully() {
    for name in CRIU_FEATURES {
        let r = criu_feature(name).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.name, *name);
        assert!(r.criu_feature, "{name}");
        let not_built = checks_criu::NOT_BUILT.iter().any(|(n, _)| n == name);
        // No plugin is linked into the core's unit tests.
        let no_plugin = checks_criu::PLUGIN_BACKED.iter().any(|(n, _)| n == name);
        if not_built || no_plugin {
            let Status::Missing { reason, .. } = &r.status else {
                panic!("{name} claims support: {r}");
            };
            assert!(reason.starts_with("not supported by criu-rs: "), "{r}");
            assert!(reason.contains("(kernel: "), "{r}");
        } else {
            assert_eq!(r.status, check_feature(name).unwrap().status, "{name}");
        }
    }
    for (name, _) in checks_criu::NOT_BUILT
        .iter()
        .chain(checks_criu::PLUGIN_BACKED)
    {
        assert!(
            CRIU_FEATURES.contains(name),
            "{name} is not a CRIU feature name"
        );
    }
    // What the engine does, on this kernel (6.18, root): present.
    for name in [
        "clone3_set_tid",
        "can_map_vdso",
        "kcmp_epoll",
        "seccomp_filters",
        "get_rseq_conf",
        "pidfd_store",
        "timer_cr_ids",
        "fdinfo_lock",
    ] {
        assert!(criu_feature(name).unwrap().is_ok(), "{name}");
    }
    assert!(criu_feature("tun").is_ok_and(|r| !r.is_ok()));
    assert!(criu_feature("nope").is_err());
}

/// A feature a plugin checkpoints follows the kernel when that plugin is present, and is
/// missing, naming the plugin, when it is not.
#[test]
fn plugin_backed_features_follow_the_plugin_and_the_kernel() {
    for (name, plugin) in checks_criu::PLUGIN_BACKED {
        assert!(
            !checks_criu::NOT_BUILT.iter().any(|(n, _)| n == name),
            "{name} is in both lists"
        );
        let kernel = check_feature(name).unwrap().status;
        let with = criu_feature_with(name, |p| p == *plugin).unwrap();
        assert_eq!(with.status, kernel, "{name} with the {plugin} plugin");
        let without = criu_feature_with(name, |_| false).unwrap();
        let Status::Missing { reason, .. } = &without.status else {
            panic!("{name} claims support without the {plugin} plugin: {without}");
        };
        assert!(reason.contains(&format!("the {plugin} plugin")), "{reason}");
    }
    // On this kernel (6.18, root), with the plugins: TCP repair after a shutdown and
    // IPV6_FREEBIND work.
    for name in ["tcp_half_closed", "ipv6_freebind"] {
        assert!(criu_feature_with(name, |_| true).unwrap().is_ok(), "{name}");
    }
}

#[test]
fn names_are_unique_and_criu_names_are_criu_names() {
    let names = feature_names();
    let set: HashSet<_> = names.iter().collect();
    assert_eq!(set.len(), names.len(), "duplicate check name");
    for c in all_checks() {
        assert_eq!(
            CRIU_FEATURES.contains(&c.name),
            c.criu_feature,
            "{}: criu_feature flag does not match CRIU's list",
            c.name
        );
        assert!(!c.hint.is_empty() && !c.what.is_empty(), "{}", c.name);
    }
    let req = required_features();
    for r in [
        "ptrace_seize",
        "remote_syscall",
        "clone3_set_tid",
        "pidfd_store",
    ] {
        assert!(req.contains(&r), "{r} must be required");
    }
    assert!(!req.contains(&"mem_dirty_track"));
}

#[test]
fn this_kernel_passes_the_required_checks() {
    let results = run_checks();
    for r in &results {
        println!("{r}");
    }
    assert_eq!(results.len(), feature_names().len());
    let failed: Vec<String> = results
        .iter()
        .filter(|r| r.is_required() && !r.is_ok())
        .map(|r| r.to_string())
        .collect();
    // The machine facts: kernel 6.18, root, ptrace/clone3/pidfd/... all available.
    assert!(failed.is_empty(), "required checks failed: {failed:#?}");
    assert!(all_required_ok(&results));
    let kf = kernel_features();
    assert!(kf.ptrace && kf.remote_syscall && kf.clone3_set_tid && kf.can_map_vdso);
    assert_eq!(kf.mm_map_size, Some(104));
    assert!(kf.xsave_size.unwrap_or(0) >= 576);
    // Missing ones name a reason and what would enable them.
    for r in results.iter().filter(|r| !r.is_ok()) {
        let Status::Missing { reason, hint } = &r.status else {
            unreachable!()
        };
        assert!(!reason.is_empty() && !hint.is_empty(), "{r}");
    }
}

#[test]
fn single_feature_lookup() {
    let r = check_feature("timens").expect("known");
    assert_eq!(r.name, "timens");
    assert!(r.criu_feature);
    require("clone3_set_tid").expect("this kernel has clone3 set_tid");
    assert!(matches!(
        require("no_such_thing"),
        Err(FeatureError::Unknown(_))
    ));
    if let Some(missing) = run_checks().into_iter().find(|c| !c.is_ok()) {
        let e = require(missing.name).expect_err("missing");
        assert!(
            e.to_string()
                .starts_with(&format!("kernel feature {} is missing", missing.name))
        );
    }
    let e = check_feature("no_such_thing").expect_err("unknown");
    assert_eq!(e.name, "no_such_thing");
    assert!(e.to_string().contains("clone3_set_tid"));
}

#[test]
fn display_and_required_logic() {
    let ok = CheckResult {
        name: "clone3_set_tid",
        criu_feature: true,
        what: "x",
        need: Need::Restore,
        status: Status::Ok { detail: None },
    };
    let missing = CheckResult {
        name: "mem_dirty_track",
        criu_feature: true,
        what: "x",
        need: Need::Optional,
        status: Status::Missing {
            reason: "clear_refs 4: Invalid argument".into(),
            hint: "needs CONFIG_MEM_SOFT_DIRTY=y",
        },
    };
    assert_eq!(
        ok.to_string(),
        "clone3_set_tid         ok [required for restore]"
    );
    assert_eq!(
        missing.to_string(),
        "mem_dirty_track        MISSING: clear_refs 4: Invalid argument; needs \
         CONFIG_MEM_SOFT_DIRTY=y"
    );
    assert!(all_required_ok(&[ok.clone(), missing.clone()]));
    let mut bad = ok;
    bad.status = missing.status;
    assert!(!all_required_ok(&[bad]));
}
