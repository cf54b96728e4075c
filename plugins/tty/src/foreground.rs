//! The terminal's foreground process group after a `--shell-job` restore.
//!
//! The dumped job's terminal becomes criu's own, in criu's session, where the job's process
//! groups are recreated. A job that was the terminal's foreground group at dump time
//! (`tty_info_entry.pgrp`, the task's `tpgid`) gets the terminal's foreground back
//! (`TIOCSPGRP`) before any task runs, as CRIU's `pty_open_unpaired_slave` does for a shell
//! job (CRIU gives it criu's group, which the job joined when it did not lead its own; a job
//! leading its own group keeps its id, which is the one we give it). A job that was in the
//! background, or whose foreground group came back as criu's own, leaves the terminal as it
//! is. If the restore fails afterwards, the foreground goes back to criu's group.

use std::os::fd::AsFd;

use criu_plugin_api::{PluginError, RestoreContext, RestoreStage, read_messages};
use criu_proto::images::TtyInfoEntry;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};
use nix::unistd::{Pid, getpgrp, isatty, tcgetpgrp, tcsetpgrp};

use crate::TTY_INFO;
use crate::kind::Driver;
use crate::session;

/// The restore stages at which [`run`] acts.
pub(crate) const STAGES: [RestoreStage; 2] = [RestoreStage::BeforeResume, RestoreStage::Failed];

/// Sets (`BeforeResume`) or gives back (`Failed`) the foreground group of criu's terminal.
pub(crate) fn run(stage: RestoreStage, ctx: &mut dyn RestoreContext) -> Result<(), PluginError> {
    if !ctx.options().shell_job {
        return Ok(());
    }
    let stdin = std::io::stdin();
    if !isatty(stdin.as_fd()).unwrap_or(false) {
        return Ok(());
    }
    let groups = tree_groups(ctx);
    match stage {
        RestoreStage::BeforeResume => {
            let Some(pgrp) = dumped_foreground(ctx)? else {
                return Ok(());
            };
            if !groups.contains(&pgrp) || pgrp == getpgrp().as_raw() {
                return Ok(());
            }
            tracing::debug!(pgrp, "giving the terminal's foreground back to the job");
            set_foreground(Pid::from_raw(pgrp)).map_err(|e| PluginError::Unsupported {
                resource: format!("the foreground group {pgrp} of criu's terminal (stdin)"),
                pid: ctx.current_pid(),
                hint: format!(
                    "tcsetpgrp failed ({e}); the job was in the foreground at dump: run criu restore --shell-job from the terminal that is its controlling terminal"
                ),
            })
        }
        RestoreStage::Failed => {
            if let Ok(fg) = tcgetpgrp(stdin.as_fd())
                && groups.contains(&fg.as_raw())
            {
                let _ = set_foreground(getpgrp());
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The foreground group recorded for the terminal that became criu's own, if the dumped
/// tasks had it as their controlling terminal.
fn dumped_foreground(ctx: &mut dyn RestoreContext) -> Result<Option<i32>, PluginError> {
    let infos = read_messages::<TtyInfoEntry>(ctx, TTY_INFO)?;
    Ok(infos
        .iter()
        .filter(|i| {
            matches!(
                Driver::of(u64::from(i.rdev)),
                Some(Driver::PtySlave | Driver::Vt | Driver::Serial)
            )
        })
        // A slave whose master is in the images is a pair of the tree, not criu's terminal.
        .filter(|i| i.pty.is_none() || !infos.iter().any(|m| m.id == i.id | 1))
        .find_map(|i| i32::try_from(i.pgrp).ok().filter(|p| *p > 0)))
}

/// The process groups of the restored tree, as the kernel shows them now.
fn tree_groups(ctx: &dyn RestoreContext) -> Vec<i32> {
    let mut groups: Vec<i32> = ctx
        .tasks()
        .iter()
        .filter_map(|t| session::task_tty(t.pid).ok().map(|s| s.pgrp))
        .collect();
    groups.sort_unstable();
    groups.dedup();
    groups
}

/// `tcsetpgrp` on stdin with SIGTTOU blocked: criu may already be in the background there.
fn set_foreground(pgrp: Pid) -> nix::Result<()> {
    let mut ttou = SigSet::empty();
    ttou.add(Signal::SIGTTOU);
    let mut old = SigSet::empty();
    pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&ttou), Some(&mut old))?;
    let r = tcsetpgrp(std::io::stdin().as_fd(), pgrp);
    let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
    r
}
