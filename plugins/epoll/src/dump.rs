//! Dumping one epoll description: its registrations, each target found by kcmp among the
//! tree's fds (see `locate`).

use criu_plugin_api::{DumpContext, FdDesc, PluginError};
use criu_proto::images::{EventpollFileEntry, EventpollTfdEntry, FdTypes, FileEntry};

use crate::fdinfo::{Registration, parse_registrations};
use crate::locate::{FdLists, Holder, holder};

fn refuse(fd: &FdDesc, r: &Registration, why: &str) -> PluginError {
    PluginError::Unsupported {
        resource: format!(
            "epoll fd {} of pid {} (target fd {}, inode {}, events {:#x}, data {:#x})",
            fd.fd,
            fd.pid,
            r.tfd,
            r.ino.map_or_else(|| "?".into(), |i| i.to_string()),
            r.events,
            r.data
        ),
        pid: fd.pid,
        hint: format!(
            "{why}; criu can only reach a registered file through an fd of the dumped tree \
             (the kernel offers no way to open a file an epoll registration points at): have \
             the program EPOLL_CTL_DEL a target before giving its last fd away"
        ),
    }
}

/// The file id of a registration's target, held at `h`.
fn target_id(ctx: &mut dyn DumpContext, h: Holder) -> Result<u32, PluginError> {
    if let Some(id) = ctx.file_id_of(h.pid, h.fd) {
        return Ok(id);
    }
    // A task the core has not reached yet: dump the description now; the core gives the
    // same id to that task's fd when it gets there.
    let dup = ctx.dup_task_fd(h.pid, h.fd)?;
    ctx.dump_file_in_flight(h.pid, std::os::fd::AsFd::as_fd(&dup))
}

/// The EVENTPOLL entry of the epoll behind `fd`. Each registration keeps its own fd number
/// (`tfd`, the kernel's key) and names its target's file id, which the task may hold under
/// another number, or another task may hold.
pub(crate) fn dump_epoll(
    ctx: &mut dyn DumpContext,
    fd: &FdDesc,
    id: u32,
) -> Result<FileEntry, PluginError> {
    let regs = parse_registrations(&fd.fdinfo.raw).map_err(|e| PluginError::Unsupported {
        resource: fd.describe(),
        pid: fd.pid,
        hint: e.to_string(),
    })?;
    let mut lists = FdLists::default();
    let mut tfd = Vec::with_capacity(regs.len());
    for r in &regs {
        let Some(h) = holder(ctx, fd, r, &mut lists)? else {
            return Err(refuse(
                fd,
                r,
                "no task of the dumped tree holds the target as an fd (it was closed and is \
                 only in flight in a socket's queue or held outside the tree)",
            ));
        };
        let target = target_id(ctx, h)?;
        tracing::debug!(
            pid = fd.pid,
            epfd = fd.fd,
            tfd = r.tfd,
            holder_pid = h.pid,
            holder_fd = h.fd,
            target,
            events = r.events,
            data = r.data,
            "epoll registration"
        );
        tfd.push(EventpollTfdEntry {
            id: target,
            tfd: r.tfd as u32,
            events: r.events,
            data: r.data,
            dev: r.sdev,
            inode: r.ino,
            pos: r.pos,
        });
    }
    Ok(FileEntry {
        r#type: FdTypes::Eventpoll as i32,
        id,
        epfd: Some(EventpollFileEntry {
            id,
            flags: fd.fdinfo.file_flags(),
            fown: fd.owner.to_entry(),
            tfd,
        }),
        ..Default::default()
    })
}
