//! Restoring epolls: an empty epoll per description in the restorer, then, once every task
//! exists, each registration added by a remote `epoll_ctl` in a task holding the epoll and
//! the target at the dumped fd number.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;

use criu_plugin_api::{
    FileRestorer, ImageRef, PluginError, RestoreContext, TaskFd, TaskIds, read_messages,
};
use criu_proto::images::{EventpollFileEntry, EventpollTfdEntry, FdTypes, FileEntry};
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::epoll::{Epoll, EpollCreateFlags};

use crate::LINK;

/// Creates each epoll empty; the registrations come in [`add_registrations`].
pub(crate) struct EpollRestorer;

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
        Ok(fd)
    }
}

/// One `EPOLL_CTL_ADD` to run in a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Add {
    /// The epoll's fd number in the task.
    pub epfd: i32,
    /// The epoll's file id.
    pub epoll_id: u32,
    pub tfd: i32,
    pub events: u32,
    pub data: u64,
}

/// The task (index into `tasks`) and epoll fd number where registration `t` of epoll `ep`
/// is added: a task holding the epoll and, at fd number `t.tfd`, the target (by file id; a
/// task merely having that fd number when the image names no matching id, as upstream CRIU's
/// images may not).
pub(crate) fn place(
    tasks: &[(TaskIds, Vec<TaskFd>)],
    ep: &EventpollFileEntry,
    t: &EventpollTfdEntry,
) -> Result<(usize, Add), PluginError> {
    let holders = tasks.iter().enumerate().filter_map(|(i, (_, fds))| {
        let epfd = fds.iter().find(|f| f.id == ep.id)?.fd;
        let target = fds.iter().find(|f| f.fd as u32 == t.tfd)?;
        Some((i, epfd, target.id == t.id))
    });
    let mut fallback = None;
    for (i, epfd, exact) in holders {
        if exact {
            return Ok((i, add(ep, t, epfd)));
        }
        fallback.get_or_insert((i, epfd));
    }
    match fallback {
        Some((i, epfd)) => Ok((i, add(ep, t, epfd))),
        None => Err(PluginError::bad_image(
            "files.img",
            format!(
                "epoll file id {} registers target fd {} (file id {}), but no restored task \
                 holds both the epoll and an fd {}",
                ep.id, t.tfd, t.id, t.tfd
            ),
        )),
    }
}

fn add(ep: &EventpollFileEntry, t: &EventpollTfdEntry, epfd: i32) -> Add {
    Add {
        epfd,
        epoll_id: ep.id,
        tfd: t.tfd as i32,
        events: t.events,
        data: t.data,
    }
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

/// Every registration of every epoll of `files.img`, added in the tasks.
pub(crate) fn add_registrations(ctx: &mut dyn RestoreContext) -> Result<(), PluginError> {
    let entries: Vec<FileEntry> = read_messages(ctx, ImageRef::FILES)?;
    let epolls: Vec<&EventpollFileEntry> = entries
        .iter()
        .filter(|e| e.r#type == FdTypes::Eventpoll as i32)
        .filter_map(|e| e.epfd.as_ref())
        .filter(|e| !e.tfd.is_empty())
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
        run_in_task(ctx, &tasks[i].0, &adds)?;
    }
    Ok(())
}

/// The raw result of a remote syscall as a `Result` naming what was done.
fn check(pid: i32, what: String, r: i64) -> Result<u64, PluginError> {
    if (-4095..0).contains(&r) {
        return Err(PluginError::Task {
            pid,
            op: what,
            source: Box::new(std::io::Error::from_raw_os_error(-r as i32)),
        });
    }
    Ok(r as u64)
}

/// `adds` in `task`: a scratch page for the `epoll_event`, one `epoll_ctl` each, unmapped
/// again (also on failure).
fn run_in_task(
    ctx: &mut dyn RestoreContext,
    task: &TaskIds,
    adds: &[Add],
) -> Result<(), PluginError> {
    let pid = task.pid;
    let tid = task.tids.first().copied().unwrap_or(pid);
    const PAGE: u64 = 4096;
    let prot = (libc::PROT_READ | libc::PROT_WRITE) as u64;
    let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
    let r = ctx.remote_syscall(tid, libc::SYS_mmap, [0, PAGE, prot, flags, u64::MAX, 0])?;
    let page = check(pid, "remote mmap of a scratch page for epoll_ctl".into(), r)?;
    let mut result = Ok(());
    for a in adds {
        result = ctx
            .write_task_memory(pid, page, &event_bytes(a.events, a.data))
            .and_then(|()| {
                let args = [
                    a.epfd as u64,
                    libc::EPOLL_CTL_ADD as u64,
                    a.tfd as u64,
                    page,
                    0,
                    0,
                ];
                ctx.remote_syscall(tid, libc::SYS_epoll_ctl, args)
            })
            .and_then(|r| {
                let what = format!(
                    "remote epoll_ctl(EPOLL_CTL_ADD) of target fd {} (events {:#x}) to epoll fd \
                     {} (file id {})",
                    a.tfd, a.events, a.epfd, a.epoll_id
                );
                check(pid, what, r).map(|_| ())
            });
        if result.is_err() {
            break;
        }
        tracing::debug!(
            pid,
            epfd = a.epfd,
            tfd = a.tfd,
            events = a.events,
            "epoll target added"
        );
    }
    let r = ctx.remote_syscall(tid, libc::SYS_munmap, [page, PAGE, 0, 0, 0, 0]);
    result?;
    check(pid, "remote munmap of the scratch page".into(), r?).map(|_| ())
}
