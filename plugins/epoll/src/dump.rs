//! Dumping one epoll description: its registrations, each checked against the task's fd.

use criu_plugin_api::{DumpContext, FdDesc, PluginError};
use criu_proto::images::{EventpollFileEntry, EventpollTfdEntry, FdTypes, FileEntry};

use crate::fdinfo::{Registration, parse_registrations};

fn refuse(fd: &FdDesc, r: &Registration, why: &str) -> PluginError {
    PluginError::Unsupported {
        resource: format!(
            "epoll fd {} of pid {} (target fd {}, events {:#x}, data {:#x})",
            fd.fd, fd.pid, r.tfd, r.events, r.data
        ),
        pid: fd.pid,
        hint: format!(
            "{why}; the registration could not be re-created (the kernel keys it by file and fd \
             number): have the program EPOLL_CTL_DEL a target before closing it (targets held \
             only by another task sharing the epoll are not supported either)"
        ),
    }
}

/// The target file id of registration `r` of the epoll `fd`, checked with kcmp to be what
/// the task holds at fd number `r.tfd`.
fn target_id(ctx: &mut dyn DumpContext, fd: &FdDesc, r: &Registration) -> Result<u32, PluginError> {
    if !ctx.epoll_target_is(fd.pid, fd.fd, r.tfd, r.toff, r.tfd)? {
        let why = match ctx.file_id_of(fd.pid, r.tfd) {
            Some(_) => "the target was closed and its fd number reused by another file",
            None => "the target was closed (its fd number is free now) but is still registered",
        };
        return Err(refuse(fd, r, why));
    }
    ctx.file_id_of(fd.pid, r.tfd).ok_or_else(|| {
        refuse(
            fd,
            r,
            "criu has no file id for the target fd (the core did not list it)",
        )
    })
}

/// The EVENTPOLL entry of the epoll behind `fd`.
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
    let mut tfd = Vec::with_capacity(regs.len());
    for r in &regs {
        let target = target_id(ctx, fd, r)?;
        tracing::debug!(
            pid = fd.pid,
            epfd = fd.fd,
            tfd = r.tfd,
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
