//! Why a shadow-stack state cannot be restored as recorded.

/// A shadow-stack state or layout that restore cannot use; every variant names the thread.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShstkError {
    /// The shadow-stack pointer is not 8-byte aligned (the kernel refuses it: `ssp_set`).
    #[error("tid {tid}: shadow-stack pointer {ptr:#x} is not 8-byte aligned")]
    Misaligned {
        /// The thread.
        tid: i32,
        /// The pointer.
        ptr: u64,
    },
    /// The pointer is in no shadow-stack area of the dumped address space.
    #[error("tid {tid}: shadow-stack pointer {ptr:#x} is in no shadow-stack area of the image")]
    Outside {
        /// The thread.
        tid: i32,
        /// The pointer.
        ptr: u64,
    },
    /// A shadow-stack area that cannot be mapped again as recorded.
    #[error("shadow-stack area {start:#x}-{end:#x}: {reason}")]
    BadVma {
        /// First address.
        start: u64,
        /// One past the last address.
        end: u64,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Two shadow-stack areas overlap.
    #[error("shadow-stack areas {a:#x} and {b:#x} overlap")]
    Overlap {
        /// Start of the first.
        a: u64,
        /// Start of the second.
        b: u64,
    },
    /// A thread with its shadow stack off records a pointer, or feature bits no kernel has.
    #[error("tid {tid}: {reason}")]
    BadState {
        /// The thread.
        tid: i32,
        /// What is inconsistent.
        reason: String,
    },
    /// A step of the restore failed (reported by [`crate::plan::ShadowStackOps`]).
    #[error("tid {tid}: {step}: {reason}")]
    Step {
        /// The thread.
        tid: i32,
        /// The step, as [`crate::plan::RestoreStep`] prints it.
        step: String,
        /// What the syscall answered.
        reason: String,
    },
}
