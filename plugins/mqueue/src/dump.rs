//! Dumping a description on a queue, and the queue itself the first time it is met.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::MetadataExt;

use criu_plugin_api::{DumpContext, FdDesc, PluginError};
use criu_proto::images::{ExtFileEntry, FdTypes, FileEntry as FilesImgEntry};

use crate::image::{self, FileEntry, MqueueImage, NotifyEntry, QueueEntry, QueuedMessage};
use crate::notify;
use crate::queue;

/// What one dump learnt: the image so far, and the queues already read (by device and
/// inode), to their index in it.
#[derive(Debug, Default)]
pub struct DumpState {
    image: MqueueImage,
    seen: HashMap<(u64, u64), u32>,
    /// `st_dev` of the mqueue filesystem of criu's own IPC namespace (learnt once).
    own_dev: Option<u64>,
}

fn unsupported(fd: &FdDesc, hint: String) -> PluginError {
    PluginError::Unsupported {
        resource: format!("message queue {} (fd {})", fd.link, fd.fd),
        pid: fd.pid,
        hint,
    }
}

fn fd_error(fd: &FdDesc, op: &'static str, source: impl Into<std::io::Error>) -> PluginError {
    PluginError::Fd {
        pid: fd.pid,
        fd: fd.fd,
        link: fd.link.clone(),
        op,
        source: source.into(),
    }
}

/// `dump_file` of the plugin: the EXT entry, the queue read once.
pub fn dump_file(
    ctx: &mut dyn DumpContext,
    fd: &FdDesc,
    id: u32,
) -> Result<FilesImgEntry, PluginError> {
    let key = (fd.stat.dev, fd.stat.ino);
    let known = ctx.state::<DumpState>()?.seen.get(&key).copied();
    let queue = match known {
        Some(q) => q,
        None => dump_queue(ctx, fd)?,
    };
    let state = ctx.state::<DumpState>()?;
    state.image.files.push(FileEntry {
        id,
        queue,
        flags: fd.fdinfo.file_flags(),
    });
    let bytes = state.image.encode_file();
    ctx.write_plugin_file(image::FILE, &bytes)?;
    Ok(FilesImgEntry {
        r#type: FdTypes::Ext as i32,
        id,
        ext: Some(ExtFileEntry {
            id,
            fown: fd.owner.to_entry(),
            criu_rs_plugin: Some(crate::NAME.into()),
        }),
        ..Default::default()
    })
}

/// The registration the status line shows, checked: its owner in the tree, holding an fd
/// on the queue (to register again from inside it), its signal not already pending.
struct Registration {
    owner: i32,
    owner_fd: i32,
    entry: NotifyEntry,
}

fn registration(
    ctx: &mut dyn DumpContext,
    fd: &FdDesc,
    st: &queue::Status,
) -> Result<Option<Registration>, PluginError> {
    if st.notify_pid == 0 {
        return Ok(None);
    }
    let owner = st.notify_pid;
    if st.notify == libc::SIGEV_THREAD {
        return Err(unsupported(
            fd,
            format!(
                "pid {owner} asked for SIGEV_THREAD notification (a netlink socket and a helper \
                 thread of the C library), which criu-rs cannot restore; use SIGEV_SIGNAL"
            ),
        ));
    }
    if !ctx.tasks().iter().any(|t| t.pid == owner) {
        return Err(unsupported(
            fd,
            format!("its mq_notify registration belongs to pid {owner}, outside the dumped tree"),
        ));
    }
    let owner_fd = fd_on_queue(owner, fd.stat.dev, fd.stat.ino)?.ok_or_else(|| {
        unsupported(
            fd,
            format!("notification owner pid {owner} holds no fd on the queue"),
        )
    })?;
    if st.notify == libc::SIGEV_SIGNAL && notify::pending(owner, st.signo)? {
        return Err(unsupported(
            fd,
            format!(
                "signal {} of its mq_notify registration is already pending in pid {owner}; \
                 dump once it is delivered",
                st.signo
            ),
        ));
    }
    Ok(Some(Registration {
        owner,
        owner_fd,
        entry: NotifyEntry {
            pid: owner,
            sigev_notify: st.notify,
            signo: st.signo,
            value: 0,
        },
    }))
}

/// An fd of `pid` open on the inode (`dev`, `ino`).
fn fd_on_queue(pid: i32, dev: u64, ino: u64) -> Result<Option<i32>, PluginError> {
    let dir = format!("/proc/{pid}/fd");
    let entries = std::fs::read_dir(&dir).map_err(|source| PluginError::Path {
        path: dir.clone().into(),
        op: "readdir",
        source,
    })?;
    for e in entries.flatten() {
        let Ok(n) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if std::fs::metadata(e.path()).is_ok_and(|m| m.dev() == dev && m.ino() == ino) {
            return Ok(Some(n));
        }
    }
    Ok(None)
}

/// Reads the queue behind `fd` (attributes, messages put back, registration) into the
/// image; returns its index.
fn dump_queue(ctx: &mut dyn DumpContext, fd: &FdDesc) -> Result<u32, PluginError> {
    let state = ctx.state::<DumpState>()?;
    let own_dev = match state.own_dev {
        Some(dev) => dev,
        None => {
            let dev = queue::own_namespace_dev().map_err(|e| fd_error(fd, "mq_open", e))?;
            *state.own_dev.insert(dev)
        }
    };
    if fd.stat.dev != own_dev {
        // Restore would recreate it in criu's namespace: another queue.
        return Err(unsupported(
            fd,
            "it belongs to another IPC namespace than criu's (passed over a socket, or opened \
             before setns); IPC namespaces are not dumped yet"
                .into(),
        ));
    }
    let own = queue::reopen(fd.file(), true, libc::O_RDWR).map_err(|e| fd_error(fd, "open", e))?;
    let attr = queue::attr(own.as_fd()).map_err(|e| fd_error(fd, "mq_getattr", e))?;
    let st = queue::status(own.as_fd())
        .map_err(|why| unsupported(fd, format!("unexpected status line: {why}")))?;
    let reg = registration(ctx, fd, &st)?;
    let (name, unlinked) = fd.path_and_deleted();
    let index = ctx.state::<DumpState>()?.image.queues.len() as u32;
    let entry = QueueEntry {
        id: index,
        name: name.to_string(),
        unlinked,
        mode: fd.stat.mode & 0o7777,
        uid: fd.stat.uid,
        gid: fd.stat.gid,
        maxmsg: attr.maxmsg,
        msgsize: attr.msgsize,
        messages: Vec::new(),
        notify: None,
    };
    // Between taking the messages out and putting them back: record them in the image
    // file. Whatever happens there, `snapshot` puts every message back before returning.
    let (msgs, recorded) = queue::snapshot(own.as_fd(), attr.msgsize, |msgs| {
        let state = ctx.state::<DumpState>()?;
        state.image.queues.push(QueueEntry {
            messages: msgs.to_vec(),
            ..entry.clone()
        });
        let bytes = state.image.encode_file();
        ctx.write_plugin_file(image::FILE, &bytes)
    })
    .map_err(|why| unsupported(fd, format!("reading its messages: {why}")))?;
    recorded?;
    tracing::debug!(
        pid = fd.pid,
        fd = fd.fd,
        queue = name,
        messages = msgs.len(),
        "dumped message queue"
    );
    if let Some(reg) = reg {
        let notify = keep_registration(ctx, fd, own.as_fd(), &msgs, attr.msgsize, reg)?;
        let state = ctx.state::<DumpState>()?;
        state.image.queues[index as usize].notify = Some(notify);
    }
    ctx.state::<DumpState>()?
        .seen
        .insert((fd.stat.dev, fd.stat.ino), index);
    Ok(index)
}

/// After the messages went back: a registration fired (or is fired now, with a message of
/// criu's sent and taken back) so that its `sigev_value` is learnt, then made again from
/// inside its owner. A `SIGEV_NONE` one only fired if messages went back.
fn keep_registration(
    ctx: &mut dyn DumpContext,
    fd: &FdDesc,
    own: BorrowedFd<'_>,
    msgs: &[QueuedMessage],
    msgsize: u64,
    mut reg: Registration,
) -> Result<NotifyEntry, PluginError> {
    if reg.entry.sigev_notify == libc::SIGEV_SIGNAL {
        if msgs.is_empty() {
            let probe = [QueuedMessage {
                prio: 0,
                data: Vec::new(),
            }];
            queue::fill(own, &probe).map_err(|(_, e)| fd_error(fd, "mq_send", e))?;
            let (back, read) = queue::drain(own, msgsize);
            read.map_err(|e| fd_error(fd, "mq_receive", e))?;
            if back != probe {
                return Err(unsupported(
                    fd,
                    "another process used the queue during the dump".into(),
                ));
            }
        }
        reg.entry.value = notify::take_notification(ctx, reg.owner, reg.entry.signo)?;
    } else if msgs.is_empty() {
        return Ok(reg.entry);
    }
    notify::register(ctx, reg.owner, reg.owner_fd, &reg.entry)?;
    Ok(reg.entry)
}
