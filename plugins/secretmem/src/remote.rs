//! System calls run inside a task (dump and restore contexts alike) and the pipe between
//! criu and the task through which secret pages travel.

use std::os::fd::{AsFd, OwnedFd};

use criu_plugin_api::PluginError;
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, fcntl};

use crate::index::CHUNK;

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

    /// Closes fd `fd` of the task (best effort on cleanup paths: the error is returned).
    pub fn close(&mut self, fd: u64) -> Result<(), PluginError> {
        self.sys("close", libc::SYS_close, [fd, 0, 0, 0, 0, 0])
            .map(|_| ())
    }

    /// Changes the protection of `[addr, addr + len)`.
    pub fn mprotect(&mut self, addr: u64, len: u64, prot: u32) -> Result<(), PluginError> {
        self.sys(
            "mprotect",
            libc::SYS_mprotect,
            [addr, len, u64::from(prot), 0, 0, 0],
        )
        .map(|_| ())
    }
}

/// Grows a pipe to [`CHUNK`] bytes where the system allows; returns its capacity, the most
/// one remote `read`/`write` moves without blocking.
pub fn pipe_capacity(end: &OwnedFd) -> Result<usize, PluginError> {
    let fail = |e: Errno| PluginError::Task {
        pid: std::process::id() as i32,
        op: "fcntl(F_GETPIPE_SZ) on criu's end of the secret pipe".into(),
        source: Box::new(e),
    };
    let size = match fcntl(end.as_fd(), FcntlArg::F_SETPIPE_SZ(CHUNK as i32)) {
        Ok(n) => n,
        // Over /proc/sys/fs/pipe-max-size for us: keep the default size.
        Err(_) => fcntl(end.as_fd(), FcntlArg::F_GETPIPE_SZ).map_err(fail)?,
    };
    Ok(usize::try_from(size)
        .unwrap_or(0)
        .clamp(4096, CHUNK as usize))
}
