//! `criu restore -D DIR`.
//!
//! With `-d` criu returns once the tree runs; without it criu waits for the restored root
//! and exits with the root's exit code (128 + signal when it was killed), so a shell job
//! restored in the foreground behaves like the original command.

use std::process::ExitCode;

use anyhow::{Context, Result};
use criu_core::restore::{RestoreOptions, RestoreOutcome, restore};

use crate::args::Options;

pub fn run(opts: &Options) -> Result<ExitCode> {
    let images_dir = super::images_dir(opts)?;
    crate::plugins::load(opts);
    let restore_opts = RestoreOptions {
        images_dir: images_dir.clone(),
        detach: opts.restore_detached,
        leave_stopped: opts.leave_stopped,
        pidfile: opts.pidfile.as_deref().map(|p| super::in_work_dir(opts, p)),
        shell_job: opts.shell_job,
        verify_pages: opts.verify_pages,
    };
    let outcome = restore(&restore_opts)
        .with_context(|| format!("restoring from {}", images_dir.display()))?;
    Ok(match outcome {
        RestoreOutcome::Detached { root } => {
            tracing::info!(pid = root, "restored, detached");
            ExitCode::SUCCESS
        }
        RestoreOutcome::Exited { root, code } => {
            tracing::info!(pid = root, code, "restored root exited");
            ExitCode::from(u8::try_from(code & 0xff).unwrap_or(1))
        }
        RestoreOutcome::Killed { root, signal } => {
            tracing::info!(pid = root, signal, "restored root was killed");
            ExitCode::from(u8::try_from(128 + (signal & 0x7f)).unwrap_or(1))
        }
    })
}
