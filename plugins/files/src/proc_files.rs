//! Files under `/proc/PID/` of a task of the restored tree (`/proc/PID/stat`, `maps`,
//! `fdinfo/N`, `cgroup`, `map_files/...`): the restorer opens every description before it
//! forks the tasks, when those directories do not exist yet. Such a description gets a
//! stand-in (`/dev/null`, read-only) at first; once every task exists (its memory and fds in
//! place) the real file is opened with the dumped flags and offset and installed at every fd
//! of the tree that had the stand-in. Pids are the dumped ones (restored with `set_tid`), so
//! the dumped path names the restored task.

use std::os::fd::{AsFd, OwnedFd};

use criu_plugin_api::{PluginError, RestoreContext};
use criu_proto::images::RegFileEntry;
use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;

/// The files plugin's restore state: the descriptions opened as stand-ins, by file id, and
/// the link remaps to remove ([`crate::link_remap`]).
#[derive(Debug, Default)]
pub struct RestoreState {
    deferred: Vec<(u32, RegFileEntry)>,
    /// Link remaps opened by this restore, removed before the tree resumes.
    pub(crate) links: Vec<String>,
}

/// The pid in `/proc/PID/...` (`None` for any other path, `/proc/self` included).
pub(crate) fn proc_pid(path: &str) -> Option<i32> {
    let rest = path.strip_prefix("/proc/")?;
    let pid = rest.split_once('/').map_or(rest, |(pid, _)| pid);
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// Whether `path` is under `/proc/PID` of a process or thread of the restored tree.
pub(crate) fn of_the_tree(ctx: &dyn RestoreContext, path: &str) -> bool {
    let Some(pid) = proc_pid(path) else {
        return false;
    };
    ctx.tasks()
        .iter()
        .any(|t| t.pid == pid || t.tids.contains(&pid))
}

/// Records `reg` (file id `id`) to be opened once the tasks exist; returns the stand-in.
pub(crate) fn defer(
    ctx: &mut dyn RestoreContext,
    id: u32,
    reg: &RegFileEntry,
) -> Result<OwnedFd, PluginError> {
    ctx.state::<RestoreState>()?
        .deferred
        .push((id, reg.clone()));
    tracing::debug!(
        id,
        path = reg.name,
        "proc file of the tree: opened once the tasks exist"
    );
    open(
        "/dev/null",
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| PluginError::path("/dev/null", "open (stand-in)", e))
}

/// [`criu_plugin_api::RestoreStage::AfterTasksExist`]: opens each deferred file and installs
/// it in place of its stand-in in every task holding it.
pub(crate) fn install(ctx: &mut dyn RestoreContext) -> Result<(), PluginError> {
    let deferred = std::mem::take(&mut ctx.state::<RestoreState>()?.deferred);
    if deferred.is_empty() {
        return Ok(());
    }
    let tasks = ctx.tasks();
    for (id, reg) in deferred {
        let fd = crate::restore::open_reg(ctx, id, &reg)?;
        let mut installed = 0;
        for task in tasks.iter().filter(|t| !t.tids.is_empty()) {
            for tfd in ctx.task_fds(task.pid)? {
                if tfd.id == id {
                    ctx.install_fd(task.pid, fd.as_fd(), tfd.fd, tfd.cloexec)?;
                    installed += 1;
                }
            }
        }
        if installed == 0 {
            // Held by no fd (a file in flight only): the stand-in stays where it went.
            return Err(PluginError::Unsupported {
                resource: format!("{} (file id {id}), held by no fd of the tree", reg.name),
                pid: ctx.current_pid(),
                hint: "a /proc file of the tree is restored only when a task holds it".into(),
            });
        }
        tracing::debug!(
            id,
            path = reg.name,
            installed,
            "proc file of the tree installed"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::proc_pid;

    #[test]
    fn only_numeric_proc_dirs_name_a_pid() {
        assert_eq!(proc_pid("/proc/66/stat"), Some(66));
        assert_eq!(proc_pid("/proc/7/map_files/7f00-7f01"), Some(7));
        assert_eq!(proc_pid("/proc/123"), Some(123));
        assert_eq!(proc_pid("/proc/self/stat"), None);
        assert_eq!(proc_pid("/proc/sys/kernel/pid_max"), None);
        assert_eq!(proc_pid("/proc/"), None);
        assert_eq!(proc_pid("/tmp/proc/66/stat"), None);
        assert_eq!(proc_pid("/proc/99999999999999999999/stat"), None);
    }
}
