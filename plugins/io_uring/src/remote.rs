//! System calls run inside a task (dump and restore contexts alike), and criu's fds lent
//! to a restored task.

use std::os::fd::BorrowedFd;

use criu_plugin_api::{PluginError, RestoreContext};
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

/// A duplicate of criu's fd `fd` in restored task `pid` (the same open file description),
/// at a free fd number, which it returns; the caller closes it. The core installs it
/// (`install_fd`), which knows how a task reaches criu's fds, also from inside a new pid
/// namespace where criu's own pid names nothing.
pub fn lend_fd(
    ctx: &mut dyn RestoreContext,
    pid: i32,
    fd: BorrowedFd<'_>,
) -> Result<u64, PluginError> {
    let host = ctx.host_pid(pid).ok_or_else(|| PluginError::Unavailable {
        service: "host_pid",
        why: format!("no pid in criu's namespace for restored task {pid}"),
    })?;
    let n = first_free(host)?;
    ctx.install_fd(pid, fd, n, true)?;
    Ok(n as u64)
}

/// An fd number free in the task criu names `host`: above every fd it holds now, and
/// above the two numbers the core's `install_fd` itself takes for a moment (its pidfd and
/// the fetched fd land on the lowest free numbers; a target equal to one of them would be
/// closed again).
fn first_free(host: i32) -> Result<i32, PluginError> {
    let dir = format!("/proc/{host}/fd");
    let rd = std::fs::read_dir(&dir).map_err(|e| PluginError::Path {
        path: dir.clone().into(),
        op: "read_dir",
        source: e,
    })?;
    let max = rd
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .max()
        .unwrap_or(-1);
    Ok(max + 3)
}
