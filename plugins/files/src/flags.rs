//! Open flags as CRIU stores them and as restore reuses them.

use std::os::fd::BorrowedFd;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};

/// Flags that only matter when a file is created; never replayed on restore.
const CREATION_ONLY: u32 = (libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_NOCTTY) as u32;

/// The access mode bits.
pub(crate) const O_ACCMODE: u32 = libc::O_ACCMODE as u32;

/// The flags to open a dumped description with: the saved ones without creation-time
/// flags, plus close-on-exec (the core sets the task's fd flags when it installs the fd).
pub(crate) fn reopen_flags(saved: u32) -> OFlag {
    let mut flags = saved & !CREATION_ONLY;
    // A file made with O_TMPFILE keeps O_TMPFILE (which includes O_DIRECTORY) in its flags;
    // reopening it must neither create a new one nor demand a directory.
    if flags & TMPFILE_ONLY != 0 {
        flags &= !(libc::O_TMPFILE as u32);
    }
    OFlag::from_bits_retain(flags as i32) | OFlag::O_CLOEXEC
}

/// `open()` ignores `O_ASYNC`: set it afterwards when the dumped description had it.
pub(crate) fn apply_async(fd: BorrowedFd<'_>, saved: u32) -> Result<(), Errno> {
    if saved & libc::O_ASYNC as u32 == 0 {
        return Ok(());
    }
    let now = fcntl(fd, FcntlArg::F_GETFL)?;
    fcntl(
        fd,
        FcntlArg::F_SETFL(OFlag::from_bits_retain(now | libc::O_ASYNC)),
    )
    .map(drop)
}

/// `__O_TMPFILE`: `O_TMPFILE` without its `O_DIRECTORY` part.
const TMPFILE_ONLY: u32 = (libc::O_TMPFILE & !libc::O_DIRECTORY) as u32;

/// CRIU skips the size check for append-only writers (logs grow after the dump).
pub(crate) fn should_check_size(flags: u32) -> bool {
    !(flags & O_ACCMODE == libc::O_WRONLY as u32 && flags & libc::O_APPEND as u32 != 0)
}

/// Major numbers of terminals (tty, console/ptmx, pty slaves): a terminal plugin's job.
pub(crate) fn is_tty_major(major: u64) -> bool {
    matches!(major, 2..=5 | 136..=143)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reopen_drops_creation_flags_only() {
        let rdwr_append = (libc::O_RDWR | libc::O_APPEND) as u32;
        let f = reopen_flags(rdwr_append | libc::O_CREAT as u32 | libc::O_TRUNC as u32);
        assert_eq!(f.bits(), (rdwr_append | libc::O_CLOEXEC as u32) as i32);
        let dir = reopen_flags(libc::O_DIRECTORY as u32);
        assert!(
            dir.contains(OFlag::O_DIRECTORY),
            "a directory keeps O_DIRECTORY"
        );
        let tmp = reopen_flags(libc::O_TMPFILE as u32 | libc::O_RDWR as u32);
        assert_eq!(tmp.bits(), libc::O_RDWR | libc::O_CLOEXEC);
    }

    #[test]
    fn size_check_skipped_for_append_writers_only() {
        assert!(!should_check_size((libc::O_WRONLY | libc::O_APPEND) as u32));
        assert!(should_check_size((libc::O_RDWR | libc::O_APPEND) as u32));
        assert!(should_check_size(libc::O_WRONLY as u32));
    }
}
