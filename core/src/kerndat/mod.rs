//! Kernel feature detection: every probe runs once per process (on first use) and the
//! results are kept in [`KernelFeatures`]. `criu check` prints them.
//!
//! Names: where CRIU has a `criu check --feature NAME` for the same thing, the check carries
//! CRIU's name (`criu_feature = true`); checks CRIU runs without a name, or that only this
//! implementation needs, have descriptive names of our own. [`check_feature`] accepts both.
//!
//! "Required" follows this implementation's design (no parasite: ptrace, remote syscalls,
//! process_vm_readv, pidfd_getfd, clone3 set_tid, PR_SET_MM_MAP, ARCH_MAP_VDSO), not CRIU's
//! categories.

use std::fmt;
use std::sync::OnceLock;

mod checks;
mod checks_criu;
mod checks_extra;
mod checks_fsnotify;
mod checks_ipc;
mod checks_mem;
mod checks_rawsk;
mod checks_shstk;
mod checks_sockets;

pub use checks_criu::{criu_feature, criu_feature_with};

/// What a feature is needed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Need {
    /// Dumping any process needs it.
    Dump,
    /// Restoring any process needs it.
    Restore,
    /// Both dump and restore need it.
    DumpAndRestore,
    /// Only some resources or options need it.
    Optional,
}

impl Need {
    pub fn is_required(self) -> bool {
        self != Need::Optional
    }
}

impl fmt::Display for Need {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Need::Dump => "required for dump",
            Need::Restore => "required for restore",
            Need::DumpAndRestore => "required for dump and restore",
            Need::Optional => "optional",
        })
    }
}

/// Outcome of one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Works; `detail` says what was seen (e.g. a size or feature mask), if useful.
    Ok { detail: Option<String> },
    /// Does not work: `reason` is what the kernel answered, `hint` what would enable it.
    Missing { reason: String, hint: &'static str },
}

impl Status {
    pub fn is_ok(&self) -> bool {
        matches!(self, Status::Ok { .. })
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Ok { detail: None } => f.write_str("ok"),
            Status::Ok { detail: Some(d) } => write!(f, "ok ({d})"),
            Status::Missing { reason, hint } => write!(f, "MISSING: {reason}; {hint}"),
        }
    }
}

/// One probed feature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    /// Feature name (CRIU's where `criu_feature`).
    pub name: &'static str,
    /// `name` is one of CRIU's `criu check --feature` names.
    pub criu_feature: bool,
    /// One-line description of what was exercised.
    pub what: &'static str,
    pub need: Need,
    pub status: Status,
}

impl CheckResult {
    pub fn is_ok(&self) -> bool {
        self.status.is_ok()
    }
    pub fn is_required(&self) -> bool {
        self.need.is_required()
    }
}

/// `NAME  ok (detail)` or `NAME  MISSING: reason; hint`, plus "[required for ...]" for
/// required features.
impl fmt::Display for CheckResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:<22} {}", self.name, self.status)?;
        if self.need.is_required() {
            write!(f, " [{}]", self.need)?;
        }
        Ok(())
    }
}

/// `check_feature` was given a name no check has.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown feature {name:?} (known: {known})")]
pub struct UnknownFeature {
    pub name: String,
    pub known: String,
}

/// Everything probed, as results and as typed facts the engine uses.
#[derive(Debug, Clone, Default)]
pub struct KernelFeatures {
    pub checks: Vec<CheckResult>,
    /// ptrace seize/interrupt/regsets of a child work.
    pub ptrace: bool,
    /// Remote syscalls (PTRACE_SYSCALL through a vDSO `syscall`) work.
    pub remote_syscall: bool,
    /// Size of the XSAVE regset (NT_X86_XSTATE), if readable.
    pub xsave_size: Option<usize>,
    pub clone3_set_tid: bool,
    /// `sizeof(struct prctl_mm_map)` from PR_SET_MM_MAP_SIZE.
    pub mm_map_size: Option<u32>,
    pub can_map_vdso: bool,
    pub ptrace_get_rseq_conf: bool,
    pub pidfd_getfd: bool,
    /// /proc/PID/pagemap shows PFNs (not zeroed for lack of CAP_SYS_ADMIN).
    pub pagemap_pfn: bool,
    pub pagemap_scan: bool,
    /// PAGEMAP_SCAN reports PAGE_IS_GUARD for MADV_GUARD_INSTALL regions.
    pub guard_regions: bool,
    pub soft_dirty: bool,
    /// UFFDIO_API features, if userfaultfd works.
    pub uffd_features: Option<u64>,
    pub memfd_secret: bool,
    pub io_uring: bool,
    pub timens: bool,
    pub seccomp_suspend: bool,
    pub bpf: bool,
}

impl KernelFeatures {
    /// Runs every probe now (use [`kernel_features`] for the cached copy).
    pub fn probe() -> KernelFeatures {
        let mut kf = KernelFeatures::default();
        for c in all_checks() {
            let status = match (c.probe)(&mut kf) {
                Ok(detail) => Status::Ok { detail },
                Err(reason) => Status::Missing {
                    reason,
                    hint: c.hint,
                },
            };
            tracing::debug!(feature = c.name, %status, "kernel probe");
            kf.checks.push(CheckResult {
                name: c.name,
                criu_feature: c.criu_feature,
                what: c.what,
                need: c.need,
                status,
            });
        }
        kf
    }

    /// True when every required feature works (`criu check` then prints "Looks good.").
    pub fn all_required_ok(&self) -> bool {
        all_required_ok(&self.checks)
    }

    /// Looks a result up by name.
    pub fn get(&self, name: &str) -> Option<&CheckResult> {
        self.checks.iter().find(|c| c.name == name)
    }
}

/// The probe results of this process, probed on first call.
pub fn kernel_features() -> &'static KernelFeatures {
    static KF: OnceLock<KernelFeatures> = OnceLock::new();
    KF.get_or_init(KernelFeatures::probe)
}

/// Every check with its status (for `criu check --all`).
pub fn run_checks() -> Vec<CheckResult> {
    kernel_features().checks.clone()
}

/// One check by name (for `criu check --feature NAME`).
pub fn check_feature(name: &str) -> Result<CheckResult, UnknownFeature> {
    kernel_features()
        .get(name)
        .cloned()
        .ok_or_else(|| UnknownFeature {
            name: name.to_owned(),
            known: feature_names().join(", "),
        })
}

/// A feature the caller needs is missing (or unknown).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeatureError {
    #[error("kernel feature {name} is missing ({reason}); {hint}")]
    Missing {
        name: &'static str,
        reason: String,
        hint: &'static str,
    },
    #[error(transparent)]
    Unknown(#[from] UnknownFeature),
}

/// Fails with the probe's reason and hint unless feature `name` works, e.g.
/// `kerndat::require("clone3_set_tid")?` before a restore.
pub fn require(name: &str) -> Result<(), FeatureError> {
    let r = check_feature(name)?;
    match r.status {
        Status::Ok { .. } => Ok(()),
        Status::Missing { reason, hint } => Err(FeatureError::Missing {
            name: r.name,
            reason,
            hint,
        }),
    }
}

/// All check names, in probing order.
pub fn feature_names() -> Vec<&'static str> {
    all_checks().map(|c| c.name).collect()
}

/// Names of the required checks.
pub fn required_features() -> Vec<&'static str> {
    all_checks()
        .filter(|c| c.need.is_required())
        .map(|c| c.name)
        .collect()
}

/// True when every required result in `results` is ok.
pub fn all_required_ok(results: &[CheckResult]) -> bool {
    results.iter().all(|c| !c.is_required() || c.is_ok())
}

/// Every check table, in probing order.
fn all_checks() -> impl Iterator<Item = &'static Check> {
    checks::CHECKS
        .iter()
        .chain(checks_extra::CHECKS)
        .chain(checks_ipc::CHECKS)
        .chain(checks_fsnotify::CHECKS)
        .chain(checks_mem::CHECKS)
        .chain(checks_shstk::CHECKS)
        .chain(checks_criu::CHECKS)
}

/// A probe: returns a detail on success or the reason it failed, and records typed facts.
type ProbeFn = fn(&mut KernelFeatures) -> Result<Option<String>, String>;

/// One entry of the check table.
struct Check {
    name: &'static str,
    criu_feature: bool,
    what: &'static str,
    need: Need,
    hint: &'static str,
    probe: ProbeFn,
}

#[cfg(test)]
mod tests;
