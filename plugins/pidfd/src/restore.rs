//! Restore. A pidfd of a reaped process is made at the start from a helper child that ends
//! with the recorded wait status (one helper per dumped target: pidfds of one process keep
//! sharing one inode). A pidfd of a task of the tree cannot be opened when its description
//! is (the restorer opens files before it forks the task, and the target may be forked
//! later), so the task gets a stand-in (a pidfd of the restorer, same flags) which
//! [`install_live`] replaces once every task exists, before the epoll plugin re-registers
//! targets.

use std::collections::{BTreeMap, btree_map::Entry};
use std::os::fd::{AsFd, OwnedFd};

use criu_plugin_api::{FileRestorer, ImageRef, PluginError, RestoreContext, read_messages};
use criu_proto::images::{FdTypes, FileEntry, PidfdEntry};

use crate::{LINK, dump::in_tree, sys};

const IMAGE: &str = "files.img";

/// The pidfd entries of `entries`, each checked: a live target must be a process of the
/// restored tree (zombies included: `restored_pid` knows them, `tasks` does not) or, with
/// `PIDFD_THREAD`, one of its threads.
pub fn pidfd_entries<'e>(
    ctx: &dyn RestoreContext,
    entries: &'e [FileEntry],
) -> Result<Vec<&'e PidfdEntry>, PluginError> {
    let tree = ctx.tasks();
    let mut out = Vec::new();
    for e in entries.iter().filter(|e| e.r#type == FdTypes::Pidfd as i32) {
        let p = e.pidfd.as_ref().ok_or_else(|| {
            PluginError::bad_image(IMAGE, format!("PIDFD entry {} without pidfd", e.id))
        })?;
        let thread = p.flags & sys::PIDFD_THREAD != 0;
        let known = in_tree(&tree, p.nspid, thread) || ctx.restored_pid(p.nspid).is_some();
        if p.nspid != -1 && (p.nspid <= 0 || !known) {
            return Err(PluginError::bad_image(
                IMAGE,
                format!(
                    "PIDFD entry {}: pid {} is not a task of the restored tree",
                    e.id, p.nspid
                ),
            ));
        }
        out.push(p);
    }
    Ok(out)
}

fn fail(id: u32, op: &'static str, e: nix::errno::Errno) -> PluginError {
    PluginError::Restore {
        id,
        what: LINK.into(),
        op,
        source: e.into(),
    }
}

/// Makes the pidfds of reaped processes: one helper per inode, every pidfd of that inode
/// opened on it, then it ends with the recorded status. By file id.
fn make_reaped(entries: &[&PidfdEntry]) -> Result<BTreeMap<u32, OwnedFd>, PluginError> {
    let mut groups: BTreeMap<u32, (Option<i32>, Vec<&PidfdEntry>)> = BTreeMap::new();
    for p in entries.iter().filter(|p| p.nspid == -1) {
        match groups.entry(p.ino) {
            Entry::Vacant(v) => {
                v.insert((p.criu_rs_exit_status, vec![p]));
            }
            Entry::Occupied(mut o) => {
                let (status, list) = o.get_mut();
                if status.is_some() && p.criu_rs_exit_status.is_some_and(|s| Some(s) != *status) {
                    return Err(PluginError::bad_image(
                        IMAGE,
                        format!(
                            "PIDFD entry {}: exit status {:?} differs from entry {}'s for inode {}",
                            p.id, p.criu_rs_exit_status, list[0].id, p.ino
                        ),
                    ));
                }
                *status = status.or(p.criu_rs_exit_status);
                list.push(p);
            }
        }
    }
    let mut out = BTreeMap::new();
    for (status, list) in groups.into_values() {
        let first = list[0].id;
        let child = sys::fork_exiting(status).map_err(|e| fail(first, "fork", e))?;
        for p in &list {
            let fd = sys::pidfd_open(child.pid.as_raw(), p.flags & sys::OPEN_FLAGS)
                .map_err(|e| fail(p.id, "pidfd_open of the helper", e))?;
            out.insert(p.id, fd);
        }
        let got = child.finish().map_err(|e| fail(first, "waitpid", e))?;
        let want = status.unwrap_or(libc::SIGKILL);
        if got != want & !0x80 {
            tracing::warn!(
                id = first,
                got,
                want,
                "reaped pidfd target ended differently"
            );
        }
    }
    Ok(out)
}

/// One restore: the reaped targets' pidfds, by file id, until their descriptions are opened.
#[derive(Debug)]
pub struct Restorer {
    reaped: BTreeMap<u32, OwnedFd>,
}

impl Restorer {
    /// Checks every pidfd entry and makes the reaped targets' pidfds.
    pub fn start(
        ctx: &mut dyn RestoreContext,
        entries: &[FileEntry],
    ) -> Result<Restorer, PluginError> {
        let pidfds = pidfd_entries(ctx, entries)?;
        Ok(Restorer {
            reaped: make_reaped(&pidfds)?,
        })
    }
}

impl FileRestorer for Restorer {
    fn open_file(
        &mut self,
        _ctx: &mut dyn RestoreContext,
        entry: &FileEntry,
    ) -> Result<OwnedFd, PluginError> {
        let p = entry.pidfd.as_ref().ok_or_else(|| {
            PluginError::bad_image(IMAGE, format!("PIDFD entry {} without pidfd", entry.id))
        })?;
        if p.nspid == -1 {
            return self.reaped.remove(&entry.id).ok_or_else(|| {
                PluginError::bad_image(IMAGE, format!("PIDFD entry {} opened twice", entry.id))
            });
        }
        // The stand-in, replaced by install_live.
        sys::pidfd_open(std::process::id() as i32, p.flags & sys::OPEN_FLAGS)
            .map_err(|e| fail(entry.id, "pidfd_open of the restorer", e))
    }
}

/// Once every task exists: opens the pidfd of each live target and installs it at every fd
/// of the tree that had the stand-in.
pub fn install_live(ctx: &mut dyn RestoreContext) -> Result<(), PluginError> {
    let entries: Vec<FileEntry> = read_messages(ctx, ImageRef::FILES)?;
    let tree = ctx.tasks();
    let live: BTreeMap<u32, &PidfdEntry> = pidfd_entries(ctx, &entries)?
        .into_iter()
        .filter(|p| p.nspid != -1)
        .map(|p| (p.id, p))
        .collect();
    if live.is_empty() {
        return Ok(());
    }
    let mut opened: BTreeMap<u32, OwnedFd> = BTreeMap::new();
    for task in tree.iter().filter(|t| !t.tids.is_empty()) {
        for tfd in ctx.task_fds(task.pid)? {
            let Some(p) = live.get(&tfd.id) else { continue };
            let fd = match opened.entry(p.id) {
                Entry::Occupied(o) => o.into_mut(),
                Entry::Vacant(v) => {
                    let target = ctx.restored_pid(p.nspid).unwrap_or(p.nspid);
                    let fd = sys::pidfd_open(target, p.flags & sys::OPEN_FLAGS)
                        .map_err(|e| fail(p.id, "pidfd_open", e))?;
                    v.insert(fd)
                }
            };
            tracing::debug!(
                pid = task.pid,
                fd = tfd.fd,
                target = p.nspid,
                "installing pidfd"
            );
            ctx.install_fd(task.pid, fd.as_fd(), tfd.fd, tfd.cloexec)?;
        }
    }
    Ok(())
}
