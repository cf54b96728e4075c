//! How the dump gets hold of a task's fds (pidfd_getfd: the same open file description)
//! and tells whether two fds share a description (kcmp KCMP_FILE).

use std::os::fd::{AsFd, OwnedFd};

use nix::unistd::Pid;

use crate::sys::kcmp::{KcmpType, kcmp};
use crate::sys::pidfd::{pidfd_getfd, pidfd_open};

use super::DumpError;

pub trait FdAccess {
    /// A descriptor in our process for fd `fd` of the task.
    fn get(&mut self, fd: i32) -> Result<OwnedFd, DumpError>;
    /// Whether fd `other_fd` of process `other_pid` and fd `fd` of this task share one open
    /// file description.
    fn same_description(
        &mut self,
        other_pid: i32,
        other_fd: i32,
        fd: i32,
    ) -> Result<bool, DumpError>;
}

/// pidfd_getfd + kcmp on one process.
#[derive(Debug)]
pub struct PidfdAccess {
    pid: i32,
    pidfd: OwnedFd,
}

impl PidfdAccess {
    pub fn new(pid: i32) -> Result<Self, DumpError> {
        let pidfd = pidfd_open(Pid::from_raw(pid), 0)
            .map_err(|e| DumpError::sys(pid, "files", "pidfd_open", e.errno()))?;
        Ok(PidfdAccess { pid, pidfd })
    }
}

impl FdAccess for PidfdAccess {
    fn get(&mut self, fd: i32) -> Result<OwnedFd, DumpError> {
        pidfd_getfd(self.pidfd.as_fd(), fd).map_err(|e| {
            DumpError::sys(
                self.pid,
                "files",
                format!("pidfd_getfd of fd {fd}"),
                e.errno(),
            )
        })
    }

    fn same_description(
        &mut self,
        other_pid: i32,
        other_fd: i32,
        fd: i32,
    ) -> Result<bool, DumpError> {
        let me = Pid::from_raw(self.pid);
        kcmp(
            Pid::from_raw(other_pid),
            me,
            KcmpType::File {
                fd1: other_fd,
                fd2: fd,
            },
        )
        .map(|o| o.is_equal())
        .map_err(|e| {
            DumpError::sys(
                self.pid,
                "files",
                format!("kcmp fd {other_fd} of {other_pid} and fd {fd}"),
                e.errno,
            )
        })
    }
}
