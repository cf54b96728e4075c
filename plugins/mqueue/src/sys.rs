//! nix's message queue calls take an `MqdT`, which can only be made from a raw fd with
//! unsafe code: this is the one place that does it.

#![allow(unsafe_code)]

use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd};

use nix::mqueue::MqdT;

/// Runs `f` with `fd` seen as a message queue descriptor. The descriptor is borrowed: it is
/// never closed here.
pub fn with_mqd<R>(fd: BorrowedFd<'_>, f: impl FnOnce(&MqdT) -> R) -> R {
    // SAFETY: `fd` is open for the whole call (borrowed); an fd that is not a queue only
    // makes the mq_* calls fail with EBADF. ManuallyDrop keeps the MqdT from ever owning it.
    let mqd = ManuallyDrop::new(unsafe { MqdT::from_raw_fd(fd.as_raw_fd()) });
    f(&mqd)
}
