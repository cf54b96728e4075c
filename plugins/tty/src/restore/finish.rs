//! The last step for pty pairs, once every description is open and every task exists:
//! queued data, exclusive mode, the slave lock, controlling terminals.

use std::os::fd::{AsFd, OwnedFd};

use criu_plugin_api::{InstalledFd, PluginError, RestoreContext};
use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;

use super::TtyRestorer;
use crate::ioctl;
use crate::pty;
use crate::queued::{Toward, write_through};

impl TtyRestorer {
    /// A new description of the slave of pty `index`, for criu's own use.
    pub(super) fn slave(index: u32) -> Result<OwnedFd, PluginError> {
        let path = format!("/dev/pts/{index}");
        open(
            path.as_str(),
            OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| PluginError::path(&path, "open", e))
    }

    /// Queued data written through each end's peer (see `queued`).
    pub(super) fn write_queued(&self) -> Result<(), PluginError> {
        for d in &self.data {
            let info = &self.infos[&d.tty_id];
            let index = Self::index_of(info)?;
            let Some(master) = self.masters.get(&index) else {
                continue;
            };
            let path = format!("/dev/pts/{index}");
            let r = if d.tty_id & 1 == 1 {
                let slave = Self::slave(index)?;
                write_through(master.as_fd(), slave.as_fd(), Toward::Master, &d.data)
            } else {
                write_through(master.as_fd(), master.as_fd(), Toward::Slave, &d.data)
            };
            r.map_err(|e| PluginError::path(&path, "write (queued data)", e))?;
            tracing::debug!(
                index,
                tty_id = d.tty_id,
                bytes = d.data.len(),
                "pty queued data written"
            );
        }
        Ok(())
    }

    /// Exclusive mode and the slave lock, once every end is open.
    pub(super) fn modes(&self) -> Result<(), PluginError> {
        for (&index, master) in &self.masters {
            let path = format!("/dev/pts/{index}");
            let m = self.infos.get(&(index << 1 | 1));
            let s = self.infos.get(&(index << 1));
            if s.is_some_and(|s| s.exclusive) {
                let slave = Self::slave(index)?;
                ioctl::set_exclusive(slave.as_fd())
                    .map_err(|e| PluginError::path(&path, "ioctl(TIOCEXCL)", e))?;
            }
            if m.is_some_and(|m| m.exclusive) {
                ioctl::set_exclusive(master.as_fd())
                    .map_err(|e| PluginError::path(&path, "ioctl(TIOCEXCL) (master)", e))?;
            }
            if m.is_some_and(|m| m.locked) {
                ioctl::set_locked(master.as_fd(), true)
                    .map_err(|e| PluginError::path(&path, "ioctl(TIOCSPTLCK)", e))?;
            }
        }
        Ok(())
    }

    /// The pty slaves that were a session's controlling terminal become it again, when the
    /// session's leader is restored.
    pub(super) fn controlling(
        &self,
        ctx: &mut dyn RestoreContext,
        installed: &[InstalledFd],
    ) -> Result<(), PluginError> {
        for &index in self.masters.keys() {
            // The slave's own entry knows it when a task held it; the master's always does.
            let Some(info) = [index << 1, index << 1 | 1]
                .iter()
                .filter_map(|id| self.infos.get(id))
                .find(|i| i.sid != 0)
            else {
                continue;
            };
            let slave_id = index << 1;
            let Some(leader) = ctx.restored_pid(info.sid as i32) else {
                tracing::debug!(
                    index,
                    sid = info.sid,
                    "session leader not restored: no controlling terminal"
                );
                continue;
            };
            let held = installed.iter().find(|f| {
                f.pid == leader
                    && self
                        .files
                        .get(&f.id)
                        .is_some_and(|t| t.tty_info_id == slave_id)
            });
            let slave = Self::slave(index)?;
            pty::set_controlling(
                ctx,
                leader,
                held.map(|f| f.fd),
                slave.as_fd(),
                index,
                info.pgrp as i32,
            )?;
        }
        Ok(())
    }
}
