//! What this host offers for shadow stacks, probed once: the CPU flag, the kernel's answer to
//! `map_shadow_stack`, and whether criu itself runs with one.

use std::sync::OnceLock;

/// Shadow-stack support of this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSupport {
    /// What the shadow stack is called here (`"x86 user shadow stack"`, `"arm64 GCS"`).
    pub kind: &'static str,
    /// What a host needs, for messages.
    pub needs: &'static str,
    /// The CPU advertises it (`user_shstk` in /proc/cpuinfo; `HWCAP_GCS`).
    pub cpu: bool,
    /// The kernel creates shadow stacks: `map_shadow_stack` worked (the address it chose),
    /// or what it answered.
    pub kernel: Result<u64, String>,
    /// criu itself runs with a shadow stack (what forked tasks would inherit).
    pub criu_enabled: bool,
}

impl HostSupport {
    /// Whether a shadow stack can be created and enabled here; `Err` says what is missing.
    pub fn restorable(&self) -> Result<(), String> {
        if !self.cpu {
            return Err(self.cpu_missing());
        }
        self.kernel.as_ref().map(drop).map_err(|e| e.clone())
    }

    fn cpu_missing(&self) -> String {
        if cfg!(target_arch = "aarch64") {
            "the CPU or kernel lacks GCS (no HWCAP_GCS in AT_HWCAP)".into()
        } else {
            "the CPU lacks user shadow stacks (no user_shstk flag in /proc/cpuinfo)".into()
        }
    }
}

/// Whether `flag` is among the `flags` of /proc/cpuinfo's text.
pub fn cpuinfo_has(cpuinfo: &str, flag: &str) -> bool {
    cpuinfo
        .lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.trim() == "flags")
        .any(|(_, v)| v.split_whitespace().any(|f| f == flag))
}

#[cfg(target_arch = "x86_64")]
fn probe() -> HostSupport {
    use crate::sys::probe;
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .map(|t| cpuinfo_has(&t, "user_shstk"))
        .unwrap_or(false);
    let kernel = probe::map_shadow_stack_roundtrip().map_err(|e| match e.errno {
        nix::errno::Errno::EOPNOTSUPP => {
            format!("{e} (no CPU support, or a kernel without CONFIG_X86_USER_SHADOW_STACK)")
        }
        nix::errno::Errno::ENOSYS => {
            format!("{e} (a kernel older than 6.6 or built without CONFIG_X86_USER_SHADOW_STACK)")
        }
        _ => e.to_string(),
    });
    let criu_enabled =
        probe::own_shstk_status().is_ok_and(|f| f & criu_shstk::x86::ARCH_SHSTK_SHSTK != 0);
    HostSupport {
        kind: "x86 user shadow stack",
        needs: "an x86 CPU with CET user shadow stacks (user_shstk) and Linux 6.6+ \
                built with CONFIG_X86_USER_SHADOW_STACK",
        cpu,
        kernel,
        criu_enabled,
    }
}

#[cfg(target_arch = "aarch64")]
fn probe() -> HostSupport {
    super::aarch64::probe()
}

/// The probe of this host, run on first use.
pub fn host_support() -> &'static HostSupport {
    static HOST: OnceLock<HostSupport> = OnceLock::new();
    HOST.get_or_init(probe)
}
