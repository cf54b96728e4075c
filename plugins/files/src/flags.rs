//! Open flags as CRIU stores them and as restore reuses them.

use nix::fcntl::OFlag;

/// Flags that only matter when a file is created; never replayed on restore.
const CREATION_ONLY: u32 = (libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_NOCTTY) as u32;

/// The access mode bits.
pub(crate) const O_ACCMODE: u32 = libc::O_ACCMODE as u32;

/// The flags to open a dumped description with: the saved ones without creation-time
/// flags, plus close-on-exec (the core sets the task's fd flags when it installs the fd).
pub(crate) fn reopen_flags(saved: u32) -> OFlag {
    OFlag::from_bits_retain((saved & !CREATION_ONLY) as i32) | OFlag::O_CLOEXEC
}

/// CRIU skips the size check for append-only writers (logs grow after the dump).
pub(crate) fn should_check_size(flags: u32) -> bool {
    !(flags & O_ACCMODE == libc::O_WRONLY as u32 && flags & libc::O_APPEND as u32 != 0)
}

/// Major numbers of terminals (tty, console/ptmx, pty slaves): a terminal plugin's job.
pub(crate) fn is_tty_major(major: u64) -> bool {
    matches!(major, 2..=5 | 136..=143)
}
