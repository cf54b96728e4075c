//! Restore. A pidfd of a reaped process is made at the start from a helper child that ends
//! with the recorded wait status (one helper per dumped target: pidfds of one process keep
//! sharing one inode). A pidfd of a task of the tree cannot be opened when its description
//! is (the restorer opens files before it forks the task, and the target may be forked
//! later), so the task gets a stand-in (a pidfd of the restorer, same flags) which
//! [`install_live`] replaces once every task exists, before the epoll plugin re-registers
//! targets: criu opens the target by its pid in criu's namespace
//! ([`RestoreContext::host_pid`]). In a tree restored into a pid namespace of its own the
//! reaped targets' helpers are made again in there once it exists (a pidfd of a process
//! outside the caller's namespace cannot be signalled from it), installed over the first
//! ones; a pidfd only in flight, opened once the tasks exist, is opened on its target (or
//! a helper in the tree's namespace) at once.

use std::collections::{BTreeMap, btree_map::Entry};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

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

/// The pid namespace of the restored tree (its root's) when it is not criu's own; `None`
/// too before the tasks exist.
fn tree_pidns(ctx: &dyn RestoreContext) -> Result<Option<std::fs::File>, PluginError> {
    let Some(root) = ctx.tasks().first().and_then(|t| ctx.host_pid(t.pid)) else {
        return Ok(None);
    };
    let theirs = format!("/proc/{root}/ns/pid");
    fn io(path: &str, op: &'static str) -> impl FnOnce(std::io::Error) -> PluginError {
        let path = std::path::PathBuf::from(path);
        move |source| PluginError::Path { path, op, source }
    }
    let ours =
        std::fs::read_link("/proc/self/ns/pid").map_err(io("/proc/self/ns/pid", "readlink"))?;
    if std::fs::read_link(&theirs).map_err(io(&theirs, "readlink"))? == ours {
        return Ok(None);
    }
    std::fs::File::open(&theirs)
        .map(Some)
        .map_err(io(&theirs, "open"))
}

/// A live target whose pid criu's context does not know once the tasks exist.
fn no_host(p: &PidfdEntry) -> PluginError {
    PluginError::Unavailable {
        service: "host_pid",
        why: format!(
            "PIDFD entry {}: no pid in criu's namespace for target pid {} once the tasks exist",
            p.id, p.nspid
        ),
    }
}

/// Makes the pidfds of reaped processes: one helper per inode (in pid namespace `pidns`
/// when given), every pidfd of that inode opened on it, then it ends with the recorded
/// status. By file id.
fn make_reaped(
    entries: &[&PidfdEntry],
    pidns: Option<BorrowedFd<'_>>,
) -> Result<BTreeMap<u32, OwnedFd>, PluginError> {
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
        let child = match pidns {
            None => sys::fork_exiting(status),
            Some(ns) => sys::fork_exiting_in(status, ns),
        }
        .map_err(|e| fail(first, "fork", e))?;
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
            reaped: make_reaped(&pidfds, None)?,
        })
    }
}

impl FileRestorer for Restorer {
    fn open_file(
        &mut self,
        ctx: &mut dyn RestoreContext,
        entry: &FileEntry,
    ) -> Result<OwnedFd, PluginError> {
        let p = entry.pidfd.as_ref().ok_or_else(|| {
            PluginError::bad_image(IMAGE, format!("PIDFD entry {} without pidfd", entry.id))
        })?;
        if p.nspid == -1 {
            let made = self.reaped.remove(&entry.id).ok_or_else(|| {
                PluginError::bad_image(IMAGE, format!("PIDFD entry {} opened twice", entry.id))
            })?;
            // Opened once the tasks exist (only in flight) for a tree in a pid namespace
            // of its own: made again in there, where its receiver can use it.
            if let Some(ns) = tree_pidns(ctx)? {
                return make_reaped(&[p], Some(ns.as_fd()))?
                    .remove(&entry.id)
                    .ok_or_else(|| PluginError::bad_image(IMAGE, "PIDFD entry lost"));
            }
            return Ok(made);
        }
        // Opened once the tasks exist (a pidfd only in flight, opened for the queue that
        // carries it): its target is there to be named.
        if let Some(target) = ctx.host_pid(p.nspid) {
            return sys::pidfd_open(target, p.flags & sys::OPEN_FLAGS)
                .map_err(|e| fail(entry.id, "pidfd_open", e));
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
    let reaped: Vec<&PidfdEntry> = pidfd_entries(ctx, &entries)?
        .into_iter()
        .filter(|p| p.nspid == -1)
        .collect();
    let pidns = tree_pidns(ctx)?;
    if live.is_empty() && (reaped.is_empty() || pidns.is_none()) {
        return Ok(());
    }
    // A tree in a pid namespace of its own: the reaped targets made from criu's
    // namespace are out of the tasks' reach (pidfd_send_signal says EINVAL): made again
    // in the tree's namespace.
    let mut opened: BTreeMap<u32, OwnedFd> = match &pidns {
        Some(ns) => make_reaped(&reaped, Some(ns.as_fd()))?,
        None => BTreeMap::new(),
    };
    let reaped_ids: Vec<u32> = opened.keys().copied().collect();
    for task in tree.iter().filter(|t| !t.tids.is_empty()) {
        for tfd in ctx.task_fds(task.pid)? {
            if reaped_ids.contains(&tfd.id) {
                let fd = &opened[&tfd.id];
                ctx.install_fd(task.pid, fd.as_fd(), tfd.fd, tfd.cloexec)?;
                continue;
            }
            let Some(p) = live.get(&tfd.id) else { continue };
            let fd = match opened.entry(p.id) {
                Entry::Occupied(o) => o.into_mut(),
                Entry::Vacant(v) => {
                    // Criu names the target in its own pid namespace.
                    let target = ctx.host_pid(p.nspid).ok_or_else(|| no_host(p))?;
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
