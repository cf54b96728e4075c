//! The task services the core offers plugins (dump and restore contexts alike): remote
//! syscalls in a thread stopped under us, fds fetched with `pidfd_getfd`, errors in the
//! plugin contract's terms.

use std::os::fd::OwnedFd;

use criu_plugin_api::PluginError;
use nix::unistd::Pid;

pub(crate) fn task_err(
    pid: i32,
    op: String,
    e: impl std::error::Error + Send + Sync + 'static,
) -> PluginError {
    PluginError::Task {
        pid,
        op,
        source: Box::new(e),
    }
}

/// One syscall in thread `tid` (of `pid`), which must be in a ptrace-stop under us:
/// registers and signal mask are put back afterwards.
pub(crate) fn remote_syscall(
    pid: i32,
    tid: i32,
    nr: i64,
    args: [u64; 6],
) -> Result<i64, PluginError> {
    let op = || format!("remote syscall {nr} in thread {tid}");
    let mut r = crate::sys::remote::RemoteTask::new(Pid::from_raw(pid), Pid::from_raw(tid))
        .map_err(|e| task_err(pid, op(), e))?;
    let ret = r.syscall(nr, args).map_err(|e| task_err(pid, op(), e))?;
    tracing::debug!(pid, tid, nr, ret, "plugin remote syscall");
    Ok(ret)
}

/// `pidfd_getfd` of fd `fd` of `pid`.
pub(crate) fn dup_task_fd(pid: i32, fd: i32) -> Result<OwnedFd, PluginError> {
    use crate::sys::pidfd;
    let pidfd = pidfd::pidfd_open(Pid::from_raw(pid), 0)
        .map_err(|e| task_err(pid, "pidfd_open".into(), e))?;
    pidfd::pidfd_getfd(std::os::fd::AsFd::as_fd(&pidfd), fd)
        .map_err(|e| task_err(pid, format!("pidfd_getfd of fd {fd}"), e))
}
