//! Shadow stacks for checkpoint/restore, without a single syscall: the facts and arithmetic
//! both architectures share, so that the code that does run syscalls (criu-core's
//! `shstk` module: x86_64 built and run here, arm64 behind `cfg(target_arch = "aarch64")`)
//! stays small.
//!
//! - [`x86`]: CET user shadow stacks. Constants of the uapi headers (`asm/prctl.h`,
//!   `asm/mman.h`, `elf.h`), restore tokens (`ssp | 1` at `ssp - 8`, the 64-bit mode bit),
//!   the token `map_shadow_stack(SHADOW_STACK_SET_TOKEN)` leaves at the top, the per-thread
//!   state CRIU stores in `user_x86_cet_entry` (`cet` = the `ARCH_SHSTK_*` feature bits,
//!   `ssp`).
//! - [`arm64`]: Guarded Control Stacks. `NT_ARM_GCS`'s `struct user_gcs`, the
//!   `PR_*_SHADOW_STACK_*` prctls, cap tokens (`GCS_CAP(addr)` of the kernel's
//!   `asm/gcs.h`).
//! - [`layout`]: a shadow-stack area of a dumped address space and the checks a pointer
//!   into it must pass before anything is created.
//! - [`plan`]: what restore does per thread, as a list of steps run against
//!   [`plan::ShadowStackOps`] (the real syscalls in criu-core, a recording double in tests).
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod arm64;
mod error;
pub mod layout;
pub mod plan;
pub mod x86;

pub use error::ShstkError;

/// A shadow-stack word and where it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    /// Its address.
    pub at: u64,
    /// Its value.
    pub value: u64,
}
pub use layout::ShadowStackVma;
pub use plan::{Arch, RestoreStep, ShadowStackOps, ThreadShadowStack};
