//! Shadow stacks (x86 CET user shadow stacks; arm64 GCS on aarch64): whether tasks that use
//! one can be dumped and restored here. CRIU 4.2 has no `--feature` name for it.

use super::{Check, KernelFeatures, Need};

type Outcome = Result<Option<String>, String>;

pub(super) static CHECKS: &[Check] = &[Check {
    name: "shadow_stack",
    criu_feature: false,
    what: "user shadow stacks: the CPU flag (x86 user_shstk, arm64 HWCAP_GCS), \
           map_shadow_stack, criu's own state",
    need: Need::Optional,
    hint: "needs an x86 CPU with CET user shadow stacks (user_shstk) and Linux 6.6+ built \
           with CONFIG_X86_USER_SHADOW_STACK (arm64: FEAT_GCS, Linux 6.13+); a task that \
           uses a shadow stack can be neither dumped nor restored without it",
    probe: shadow_stack,
}];

fn shadow_stack(_: &mut KernelFeatures) -> Outcome {
    let h = crate::shstk::host_support();
    if let Err(lacks) = h.restorable() {
        let kernel = match (&h.kernel, h.cpu) {
            (Err(e), false) => format!("; {e}"),
            _ => String::new(),
        };
        return Err(format!("{lacks}{kernel}"));
    }
    let own = if h.criu_enabled {
        "criu itself runs with one: restore refused"
    } else {
        "criu itself runs without one"
    };
    Ok(Some(format!("{}; {own}", h.kind)))
}
