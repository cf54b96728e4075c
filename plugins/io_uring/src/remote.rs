//! System calls run inside a task (dump and restore contexts alike).

use criu_plugin_api::PluginError;
use nix::errno::Errno;

/// Runs one system call in a task: the context's `remote_syscall` for one tid.
pub type Syscall<'a> = dyn FnMut(i64, [u64; 6]) -> Result<i64, PluginError> + 'a;

/// A task, by tid, and how to run system calls in it.
pub struct Task<'a, 'c> {
    /// The thread the calls run in.
    pub tid: i32,
    /// The context's remote syscall service.
    pub call: &'a mut Syscall<'c>,
}

impl Task<'_, '_> {
    /// Runs `name` (`nr`) with `args`; a `-errno` result is an error naming the call.
    pub fn sys(&mut self, name: &str, nr: i64, args: [u64; 6]) -> Result<u64, PluginError> {
        let r = (self.call)(nr, args)?;
        if (-4095..0).contains(&r) {
            return Err(PluginError::Task {
                pid: self.tid,
                op: format!("remote {name}"),
                source: Box::new(Errno::from_raw(-r as i32)),
            });
        }
        Ok(r as u64)
    }

    /// Closes fd `fd` of the task.
    pub fn close(&mut self, fd: u64) -> Result<(), PluginError> {
        self.sys("close", libc::SYS_close, [fd, 0, 0, 0, 0, 0])
            .map(|_| ())
    }

    /// A duplicate of criu's fd `fd` in the task, at the lowest free fd number (`pidfd_open`
    /// of criu + `pidfd_getfd`, the same open file description); the caller closes it.
    pub fn take_fd(&mut self, fd: i32) -> Result<u64, PluginError> {
        let me = std::process::id() as u64;
        let pidfd = self.sys("pidfd_open", libc::SYS_pidfd_open, [me, 0, 0, 0, 0, 0])?;
        let got = self.sys(
            "pidfd_getfd",
            libc::SYS_pidfd_getfd,
            [pidfd, fd as u64, 0, 0, 0, 0],
        );
        let closed = self.close(pidfd);
        let got = got?;
        closed?;
        Ok(got)
    }

    /// `len` bytes (whole pages) of private scratch memory in the task.
    pub fn scratch(&mut self, len: u64) -> Result<u64, PluginError> {
        self.sys(
            "mmap",
            libc::SYS_mmap,
            [
                0,
                len,
                (libc::PROT_READ | libc::PROT_WRITE) as u64,
                (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64,
                u64::MAX,
                0,
            ],
        )
    }

    /// Unmaps scratch memory from [`Task::scratch`].
    pub fn unmap(&mut self, addr: u64, len: u64) -> Result<(), PluginError> {
        self.sys("munmap", libc::SYS_munmap, [addr, len, 0, 0, 0, 0])
            .map(|_| ())
    }
}
