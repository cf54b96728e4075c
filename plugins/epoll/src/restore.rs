//! Restoring epolls: an empty epoll per description in the restorer, then, in the
//! restorer's `finish` (every task complete and stopped), each registration added by a
//! remote `epoll_ctl` in a task holding the epoll, under the dumped target number `tfd` so
//! that the task's own later `EPOLL_CTL_MOD`/`DEL` on that number finds it.
//!
//! The kernel keys a registration by (file, fd number). When the task no longer holds the
//! target at that number (closed: another fd or task holds it; reused: the number names
//! another file now), the target is put at `tfd` for the `epoll_ctl` only and the task's fd
//! table is put back afterwards (see `remote`). An epoll no task holds (in flight in a
//! socket's queue) is installed in a task for as long as its registrations take.

use std::collections::{BTreeMap, HashMap};
use std::os::fd::{AsFd, OwnedFd};

use criu_plugin_api::{
    FileRestorer, ImageRef, InstalledFd, PluginError, RestoreContext, TaskFd, TaskIds,
    read_messages,
};
use criu_proto::images::{EventpollFileEntry, EventpollTfdEntry, FdTypes, FileEntry};
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::epoll::{Epoll, EpollCreateFlags};

use crate::LINK;
use crate::remote;

/// Creates each epoll empty and keeps a duplicate for [`FileRestorer::finish`], where the
/// registrations are added.
#[derive(Default)]
pub(crate) struct EpollRestorer {
    opened: HashMap<u32, OwnedFd>,
}

impl FileRestorer for EpollRestorer {
    fn open_file(
        &mut self,
        _ctx: &mut dyn RestoreContext,
        entry: &FileEntry,
    ) -> Result<OwnedFd, PluginError> {
        let ep = entry.epfd.as_ref().ok_or_else(|| {
            PluginError::bad_image(
                "files.img",
                format!("EVENTPOLL entry {} without epfd", entry.id),
            )
        })?;
        let fail = |op: &'static str, e: nix::errno::Errno| PluginError::Restore {
            id: entry.id,
            what: LINK.into(),
            op,
            source: e.into(),
        };
        let fd = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)
            .map_err(|e| fail("epoll_create1", e))?
            .0;
        if ep.flags & OFlag::O_NONBLOCK.bits() as u32 != 0 {
            fcntl(&fd, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(|e| fail("fcntl", e))?;
        }
        let keep = fd.try_clone().map_err(|e| PluginError::Restore {
            id: entry.id,
            what: LINK.into(),
            op: "dup",
            source: e,
        })?;
        self.opened.insert(entry.id, keep);
        Ok(fd)
    }

    fn finish(
        &mut self,
        ctx: &mut dyn RestoreContext,
        _installed: &[InstalledFd],
    ) -> Result<(), PluginError> {
        add_registrations(ctx, &self.opened)
    }
}

/// How the target of one registration reaches fd number `tfd` of the task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    /// The task holds the target at `tfd`.
    Direct,
    /// The task holds the target at this other number.
    Dup(i32),
    /// The task does not hold the target: criu opens it and lends it for the call.
    Lend,
}

/// One `EPOLL_CTL_ADD` to run in a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Add {
    /// The epoll's fd number in the task (`None`: the task does not hold it; criu lends it).
    pub epfd: Option<i32>,
    /// The epoll's file id.
    pub epoll_id: u32,
    /// The target's file id.
    pub target_id: u32,
    pub tfd: i32,
    pub events: u32,
    pub data: u64,
    pub via: Via,
}

/// How task `fds` would add registration `t` of `ep`, if it holds the epoll (at `epfd`).
fn add_in(
    fds: &[TaskFd],
    ep: &EventpollFileEntry,
    t: &EventpollTfdEntry,
    epfd: Option<i32>,
) -> Add {
    let at = fds.iter().find(|f| f.fd as u32 == t.tfd);
    // CRIU's images give every registration the epoll's own id: the number is all there is.
    let legacy = t.id == ep.id;
    let via = match at {
        Some(f) if f.id == t.id || legacy => Via::Direct,
        _ => match fds.iter().find(|f| f.id == t.id) {
            Some(f) => Via::Dup(f.fd),
            None => Via::Lend,
        },
    };
    Add {
        epfd,
        epoll_id: ep.id,
        target_id: t.id,
        tfd: t.tfd as i32,
        events: t.events,
        data: t.data,
        via,
    }
}

fn rank(v: Via) -> u8 {
    match v {
        Via::Direct => 0,
        Via::Dup(_) => 1,
        Via::Lend => 2,
    }
}

/// The task (index into `tasks`) where registration `t` of epoll `ep` is added: among the
/// tasks holding the epoll, one holding the target at `t.tfd`, else one holding it at all,
/// else the first. An epoll no task holds goes to a task holding the target, else the first
/// task, with the epoll lent. A CRIU image (`t.id` is the epoll's id) whose number no task
/// holding the epoll has is a corrupt image.
pub(crate) fn place(
    tasks: &[(TaskIds, Vec<TaskFd>)],
    ep: &EventpollFileEntry,
    t: &EventpollTfdEntry,
) -> Result<(usize, Add), PluginError> {
    let holders = tasks.iter().enumerate().filter_map(|(i, (_, fds))| {
        let epfd = fds.iter().find(|f| f.id == ep.id)?.fd;
        Some((i, add_in(fds, ep, t, Some(epfd))))
    });
    let best = holders.min_by_key(|(_, a)| rank(a.via));
    let chosen = match best {
        Some(b) => b,
        None => {
            let i = tasks
                .iter()
                .position(|(_, fds)| fds.iter().any(|f| f.id == t.id))
                .unwrap_or(0);
            let fds = tasks.get(i).map(|(_, f)| f.as_slice()).unwrap_or(&[]);
            (i, add_in(fds, ep, t, None))
        }
    };
    if t.id == ep.id && chosen.1.via != Via::Direct || tasks.is_empty() {
        return Err(PluginError::bad_image(
            "files.img",
            format!(
                "epoll file id {} registers target fd {} (file id {}), but no restored task \
                 holds both the epoll and an fd {}",
                ep.id, t.tfd, t.id, t.tfd
            ),
        ));
    }
    Ok(chosen)
}

/// Every registration of every epoll of `files.img`, added in the tasks. `opened` holds
/// criu's duplicate of each epoll this restore opened.
pub(crate) fn add_registrations(
    ctx: &mut dyn RestoreContext,
    opened: &HashMap<u32, OwnedFd>,
) -> Result<(), PluginError> {
    let entries: Vec<FileEntry> = read_messages(ctx, ImageRef::FILES)?;
    let epolls: Vec<&EventpollFileEntry> = entries
        .iter()
        .filter(|e| e.r#type == FdTypes::Eventpoll as i32)
        .filter_map(|e| e.epfd.as_ref())
        .filter(|e| !e.tfd.is_empty() && opened.contains_key(&e.id))
        .collect();
    if epolls.is_empty() {
        return Ok(());
    }
    let mut tasks = Vec::new();
    for t in ctx.tasks() {
        let fds = ctx.task_fds(t.pid)?;
        tasks.push((t, fds));
    }
    let mut plan: BTreeMap<usize, Vec<Add>> = BTreeMap::new();
    for ep in &epolls {
        for t in &ep.tfd {
            let (task, add) = place(&tasks, ep, t)?;
            plan.entry(task).or_default().push(add);
        }
    }
    for (i, adds) in plan {
        let mut lend = |ctx: &mut dyn RestoreContext, id: u32| match opened.get(&id) {
            Some(fd) => fd
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| PluginError::Restore {
                    id,
                    what: LINK.into(),
                    op: "dup",
                    source: e,
                }),
            None => ctx.open_file_by_id(id),
        };
        remote::run_in_task(ctx, &tasks[i].0, &adds, &mut lend)?;
    }
    Ok(())
}

/// `struct epoll_event` as the kernel reads it: packed on x86_64, padded elsewhere.
pub(crate) fn event_bytes(events: u32, data: u64) -> Vec<u8> {
    let mut b = events.to_ne_bytes().to_vec();
    if cfg!(not(target_arch = "x86_64")) {
        b.extend_from_slice(&[0; 4]);
    }
    b.extend_from_slice(&data.to_ne_bytes());
    b
}
