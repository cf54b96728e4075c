//! `criu check`: probes this kernel for what the engine relies on.
//!
//! Plain `check` prints the required features that are missing and "Looks good." when none
//! is; `--all` prints every feature with its status and, for a missing one, what it would
//! take; `--feature NAME` answers whether criu-rs can use that feature
//! here, for every name CRIU knows (exit 1 when missing, also when the kernel has it but
//! criu-rs does not checkpoint that resource yet), as CRIU's test driver uses it.
//! `network_lock_ebpf` (the default `--network-lock`) is probed by the netlock plugin:
//! optional, listed by `--all`, printed by plain `check` only when missing.

use std::process::ExitCode;

use anyhow::Result;
use criu_core::kerndat::{self, CheckResult};

use crate::args::Options;

pub fn run(opts: &Options) -> Result<ExitCode> {
    if opts.plugins {
        return Ok(check_plugins(opts));
    }
    if !opts.feature.is_empty() {
        return check_features(&opts.feature);
    }
    let results = kerndat::run_checks();
    let netlock = network_lock_check();
    if opts.all || !netlock.is_ok() {
        println!("{netlock}");
    }
    if opts.all {
        // CRIU's names with the answer `--feature` gives, so both views agree.
        for result in &results {
            let shown = match result.criu_feature {
                true => kerndat::criu_feature(result.name).unwrap_or_else(|_| result.clone()),
                false => result.clone(),
            };
            println!("{shown}");
        }
    } else {
        for result in results.iter().filter(|r| r.is_required() && !r.is_ok()) {
            println!("{result}");
        }
    }
    Ok(verdict(&results))
}

/// `check --plugins`: every plugin, built-in or loaded, with name, version, origin and what
/// it handles; then every refused plugin file (exit 1 when there is one).
fn check_plugins(opts: &Options) -> ExitCode {
    use criu_core::plugins::{Origin, PluginLoadError};
    let refused = crate::plugins::load(opts);
    for plugin in criu_core::plugins::listing() {
        println!("{plugin}");
    }
    // A .so of a plugin that is already there (a built-in one's standalone build) is listed,
    // not an error.
    let mut errors = 0;
    for e in &refused {
        match e {
            PluginLoadError::Duplicate { name, path, origin } => {
                let file = Origin::File(path.clone());
                println!("{name} [{file}] not used: a plugin of that name is {origin}");
            }
            _ => errors += 1,
        }
    }
    if errors == 0 {
        println!("Looks good.");
        ExitCode::SUCCESS
    } else {
        eprintln!("Error: {errors} plugin file(s) or directories refused; see above");
        ExitCode::from(1)
    }
}

fn check_features(names: &[String]) -> Result<ExitCode> {
    let mut results = Vec::with_capacity(names.len());
    for name in names {
        let result = match name.replace('-', "_").as_str() {
            NETWORK_LOCK_EBPF => network_lock_check(),
            _ => kerndat::criu_feature(name)?,
        };
        println!("{result}");
        results.push(result);
    }
    if results.iter().all(CheckResult::is_ok) {
        println!("Looks good.");
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::from(1))
    }
}

fn verdict(results: &[CheckResult]) -> ExitCode {
    if kerndat::all_required_ok(results) {
        println!("Looks good.");
        ExitCode::SUCCESS
    } else {
        let missing = results
            .iter()
            .filter(|r| r.is_required() && !r.is_ok())
            .count();
        eprintln!("Error: {missing} required feature(s) missing; see above");
        ExitCode::from(1)
    }
}

/// The feature name of the eBPF network lock.
const NETWORK_LOCK_EBPF: &str = "network_lock_ebpf";

/// Whether `--network-lock ebpf` works here: the plugin loads its programs, attaches them
/// in a new network namespace and checks bpffs.
fn network_lock_check() -> CheckResult {
    use kerndat::{Need, Status};
    #[cfg(feature = "builtin-plugins")]
    let status = match criu_plugin_netlock::probe() {
        Ok(detail) => Status::Ok {
            detail: Some(detail),
        },
        Err(reason) => Status::Missing {
            reason,
            hint: "needs bpf() with CAP_BPF and CAP_NET_ADMIN, TCX (Linux 6.6+) and bpffs; \
                   else use --network-lock iptables|nftables|skip",
        },
    };
    #[cfg(not(feature = "builtin-plugins"))]
    let status = Status::Missing {
        reason: "criu was built without its plugins".into(),
        hint: "the netlock plugin probes it",
    };
    CheckResult {
        name: NETWORK_LOCK_EBPF,
        criu_feature: false,
        what: "eBPF network lock (tc programs through TCX, pins in bpffs)",
        need: Need::Optional,
        status,
    }
}
