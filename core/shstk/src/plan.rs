//! What restore does for shadow stacks, as data: [`plan_mm`] once per address space (create
//! each area again and fill it), [`plan_thread`] once per thread that ran with one (turn it on
//! from inside the thread, point it at the dumped top, re-enable extra features, lock).
//! [`run`] executes steps against [`ShadowStackOps`].
//!
//! Why these steps (x86; arm64 is the same shape): shadow-stack memory cannot be `mmap`ed,
//! only created with `map_shadow_stack`, which places it at a fixed address with
//! `MAP_FIXED_NOREPLACE` semantics and writes a token at its top: we read that token back
//! before filling the area, so that a kernel that put something else there is caught.
//! Normal stores fault on it, but FOLL_FORCE writes (`/proc/PID/mem`, `PTRACE_POKEDATA`,
//! which CRIU's compel also uses for its tokens) work without `WRSS`. `ARCH_SHSTK_ENABLE`
//! only acts on the calling thread (the kernel refuses it through ptrace), and allocates a
//! fresh stack; the pointer is then moved to the dumped one through the `NT_X86_SHSTK`
//! regset, which needs no restore token since the thread is stopped under ptrace (CRIU's
//! restorer instead switches with `RSTORSSP` and pushes a sigreturn token, because it
//! resumes through `rt_sigreturn`). The kernel's fresh stack stays mapped: the kernel frees
//! it when the thread exits, and unmapping it ourselves would make that free hit whatever
//! is mapped there later.

use std::fmt;

use crate::layout::{self, ShadowStackVma};
use crate::{ShstkError, Token, arm64, x86};

/// The architecture of a thread's shadow stack and its feature bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// x86_64 CET: `ARCH_SHSTK_*` bits.
    X86 {
        /// Enabled features.
        features: u64,
    },
    /// arm64 GCS: `PR_SHADOW_STACK_*` bits.
    Arm64 {
        /// Enabled mode bits.
        enabled: u64,
        /// Locked mode bits.
        locked: u64,
    },
}

impl Arch {
    /// Highest user address + 1 (4-level paging on x86_64, 52-bit VAs on arm64).
    pub fn task_size(&self) -> u64 {
        match self {
            Arch::X86 { .. } => x86::TASK_SIZE_MAX,
            Arch::Arm64 { .. } => 1 << 52,
        }
    }

    /// The token `map_shadow_stack(.., SHADOW_STACK_SET_TOKEN)` leaves in `vma`.
    pub fn map_token(&self, vma: &ShadowStackVma) -> Option<Token> {
        match self {
            Arch::X86 { .. } => x86::map_token(vma.start, vma.len()),
            Arch::Arm64 { .. } => arm64::map_token(vma.start, vma.len(), false),
        }
    }

    /// What the machine calls it, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Arch::X86 { .. } => "x86 shadow stack",
            Arch::Arm64 { .. } => "arm64 GCS",
        }
    }
}

/// One thread's recorded shadow stack (only threads that ran with one have it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreadShadowStack {
    /// The thread.
    pub tid: i32,
    /// Architecture and features.
    pub arch: Arch,
    /// SSP or GCSPR_EL0.
    pub ptr: u64,
}

impl ThreadShadowStack {
    /// From CRIU's `user_x86_cet_entry`: `None` for a thread with the stack off.
    pub fn from_x86(tid: i32, cet: x86::Cet) -> Result<Option<Self>, ShstkError> {
        cet.check()
            .map_err(|reason| ShstkError::BadState { tid, reason })?;
        Ok(cet.enabled().then_some(ThreadShadowStack {
            tid,
            arch: Arch::X86 {
                features: cet.features,
            },
            ptr: cet.ssp,
        }))
    }

    /// From the `NT_ARM_GCS` regset: `None` for a thread with GCS off.
    pub fn from_arm64(tid: i32, gcs: arm64::UserGcs) -> Result<Option<Self>, ShstkError> {
        gcs.check()
            .map_err(|reason| ShstkError::BadState { tid, reason })?;
        Ok(gcs.enabled().then_some(ThreadShadowStack {
            tid,
            arch: Arch::Arm64 {
                enabled: gcs.features_enabled,
                locked: gcs.features_locked,
            },
            ptr: gcs.gcspr_el0,
        }))
    }
}

/// One thing restore does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreStep {
    /// `map_shadow_stack(vma.start, len, SHADOW_STACK_SET_TOKEN)`, then `token` read back.
    Map {
        /// The area.
        vma: ShadowStackVma,
        /// The token the kernel must have written.
        token: Token,
    },
    /// Write the dumped contents of the area (FOLL_FORCE writes).
    Fill {
        /// The area.
        vma: ShadowStackVma,
    },
    /// The thread itself turns features on (`ARCH_SHSTK_ENABLE` one bit at a time, or
    /// `PR_SET_SHADOW_STACK_STATUS` with the whole mode).
    Enable {
        /// The thread.
        tid: i32,
        /// Feature bits.
        features: u64,
    },
    /// Set SSP / GCSPR_EL0 through the regset.
    SetPointer {
        /// The thread.
        tid: i32,
        /// The pointer.
        ptr: u64,
    },
    /// Lock features (`ARCH_SHSTK_LOCK`, `PR_LOCK_SHADOW_STACK_STATUS`).
    Lock {
        /// The thread.
        tid: i32,
        /// Feature bits.
        features: u64,
    },
}

impl fmt::Display for RestoreStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestoreStep::Map { vma, .. } => {
                write!(f, "map_shadow_stack({:#x}, {:#x})", vma.start, vma.len())
            }
            RestoreStep::Fill { vma } => write!(f, "filling {:#x}-{:#x}", vma.start, vma.end),
            RestoreStep::Enable { features, .. } => write!(f, "enabling features {features:#x}"),
            RestoreStep::SetPointer { ptr, .. } => write!(f, "setting the pointer to {ptr:#x}"),
            RestoreStep::Lock { features, .. } => write!(f, "locking features {features:#x}"),
        }
    }
}

/// Steps for the shadow-stack areas of one address space: each checked, mapped and filled.
pub fn plan_mm(arch: &Arch, vmas: &[ShadowStackVma]) -> Result<Vec<RestoreStep>, ShstkError> {
    let mut sorted = vmas.to_vec();
    layout::check_all(&mut sorted, arch)?;
    let mut steps = Vec::with_capacity(2 * sorted.len());
    for vma in sorted {
        let token = arch.map_token(&vma).ok_or(ShstkError::BadVma {
            start: vma.start,
            end: vma.end,
            reason: "no room for a token",
        })?;
        steps.push(RestoreStep::Map { vma, token });
        steps.push(RestoreStep::Fill { vma });
    }
    Ok(steps)
}

/// Steps for one thread, whose pointer must lie in one of `vmas` (its address space's
/// areas). x86 locks `ARCH_SHSTK_SHSTK` as CRIU's restorer does (the kernel does not report
/// which features were locked); arm64 locks exactly what the regset reported.
pub fn plan_thread(
    t: &ThreadShadowStack,
    vmas: &[ShadowStackVma],
) -> Result<Vec<RestoreStep>, ShstkError> {
    layout::area_of(t.tid, t.ptr, vmas)?;
    let tid = t.tid;
    let mut steps = Vec::with_capacity(4);
    match t.arch {
        Arch::X86 { features } => {
            steps.push(RestoreStep::Enable {
                tid,
                features: x86::ARCH_SHSTK_SHSTK,
            });
            steps.push(RestoreStep::SetPointer { tid, ptr: t.ptr });
            if features & x86::ARCH_SHSTK_WRSS != 0 {
                steps.push(RestoreStep::Enable {
                    tid,
                    features: x86::ARCH_SHSTK_WRSS,
                });
            }
            steps.push(RestoreStep::Lock {
                tid,
                features: x86::ARCH_SHSTK_SHSTK,
            });
        }
        Arch::Arm64 { enabled, locked } => {
            steps.push(RestoreStep::Enable {
                tid,
                features: enabled,
            });
            steps.push(RestoreStep::SetPointer { tid, ptr: t.ptr });
            if locked != 0 {
                steps.push(RestoreStep::Lock {
                    tid,
                    features: locked,
                });
            }
        }
    }
    Ok(steps)
}

/// The syscalls behind the steps, for one address space (the real ones in criu-core, a
/// recording double in tests). Errors are the syscall's answer as text.
pub trait ShadowStackOps {
    /// `map_shadow_stack(addr, size, SHADOW_STACK_SET_TOKEN)` run by the task; the address
    /// the kernel returned.
    fn map_shadow_stack(&mut self, addr: u64, size: u64) -> Result<u64, String>;
    /// One word of the task's memory.
    fn read_word(&mut self, addr: u64) -> Result<u64, String>;
    /// Writes the dumped contents of `vma`.
    fn fill(&mut self, vma: &ShadowStackVma) -> Result<(), String>;
    /// Thread `tid` enables `features` itself.
    fn enable(&mut self, tid: i32, features: u64) -> Result<(), String>;
    /// Sets thread `tid`'s pointer.
    fn set_pointer(&mut self, tid: i32, ptr: u64) -> Result<(), String>;
    /// Locks `features` of thread `tid`.
    fn lock(&mut self, tid: i32, features: u64) -> Result<(), String>;
}

/// Runs `steps` in order; `mm_tid` is the thread named in errors of address-space steps.
pub fn run(
    steps: &[RestoreStep],
    mm_tid: i32,
    ops: &mut dyn ShadowStackOps,
) -> Result<(), ShstkError> {
    for step in steps {
        let fail = |tid: i32, reason: String| ShstkError::Step {
            tid,
            step: step.to_string(),
            reason,
        };
        match *step {
            RestoreStep::Map { vma, token } => {
                let got = ops
                    .map_shadow_stack(vma.start, vma.len())
                    .map_err(|e| fail(mm_tid, e))?;
                if got != vma.start {
                    return Err(fail(mm_tid, format!("the kernel placed it at {got:#x}")));
                }
                let word = ops.read_word(token.at).map_err(|e| fail(mm_tid, e))?;
                if word != token.value {
                    return Err(fail(
                        mm_tid,
                        format!(
                            "token at {:#x} is {word:#x}, expected {:#x}: not a fresh shadow stack",
                            token.at, token.value
                        ),
                    ));
                }
            }
            RestoreStep::Fill { vma } => ops.fill(&vma).map_err(|e| fail(mm_tid, e))?,
            RestoreStep::Enable { tid, features } => {
                ops.enable(tid, features).map_err(|e| fail(tid, e))?
            }
            RestoreStep::SetPointer { tid, ptr } => {
                ops.set_pointer(tid, ptr).map_err(|e| fail(tid, e))?
            }
            RestoreStep::Lock { tid, features } => {
                ops.lock(tid, features).map_err(|e| fail(tid, e))?
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
