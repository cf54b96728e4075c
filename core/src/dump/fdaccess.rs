//! How the dump gets hold of a task's fds and tells whether two fds share an open file
//! description. The intended implementation is pidfd_getfd + kcmp(KCMP_FILE); until the
//! syscall layer offers them (`sys::pidfd` is empty at this commit), [`ProcFdAccess`]
//! reopens `/proc/PID/fd/N` (a new description of the same file or pipe) and treats every fd
//! as its own description.

use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;

use super::DumpError;

pub trait FdAccess {
    /// A descriptor in our process for fd `fd` of the task.
    fn get(&mut self, fd: i32) -> Result<OwnedFd, DumpError>;
    /// Whether task fds `a` and `b` share one open file description.
    fn same_description(&mut self, a: i32, b: i32) -> bool;
}

/// The stop-gap described in the module docs.
#[derive(Debug)]
pub struct ProcFdAccess {
    pub pid: i32,
}

impl FdAccess for ProcFdAccess {
    fn get(&mut self, fd: i32) -> Result<OwnedFd, DumpError> {
        let path = format!("/proc/{}/fd/{fd}", self.pid);
        let open = |write: bool| {
            std::fs::OpenOptions::new()
                .read(!write)
                .write(write)
                .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
                .open(&path)
        };
        // Write-only files (and pipe write ends) may refuse a read open.
        let f = open(false).or_else(|_| open(true)).map_err(|e| {
            DumpError::sys(
                self.pid,
                "files",
                format!("reopen {path}"),
                nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
            )
        })?;
        Ok(f.into())
    }

    fn same_description(&mut self, _a: i32, _b: i32) -> bool {
        false
    }
}
