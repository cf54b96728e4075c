//! Restoring queues and the descriptions on them.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::os::fd::{AsFd, OwnedFd};

use criu_plugin_api::{FileRestorer, InstalledFd, PluginError, RestoreContext};
use criu_proto::images::FileEntry as FilesImgEntry;
use nix::errno::Errno;
use nix::mqueue::{MQ_OFlag, MqAttr, mq_attr_member_t, mq_close, mq_open, mq_unlink};
use nix::sys::stat::Mode;

use crate::image::{self, MqueueImage, QueueEntry};
use crate::{is_ours, notify, queue};

/// Reads the image when `files.img` has entries of ours.
pub fn start(
    ctx: &mut dyn RestoreContext,
    entries: &[FilesImgEntry],
) -> Result<Box<dyn FileRestorer>, PluginError> {
    let image = if entries.iter().any(is_ours) {
        let bytes = ctx.read_plugin_file(image::FILE)?.ok_or_else(|| {
            PluginError::bad_image(
                image::FILE,
                "missing, but files.img has message queue entries",
            )
        })?;
        MqueueImage::decode_file(&bytes)?
    } else {
        MqueueImage::default()
    };
    Ok(Box::new(Restorer {
        image,
        created: HashMap::new(),
    }))
}

/// One restore: the image, and a read-write description of each queue created so far.
struct Restorer {
    image: MqueueImage,
    created: HashMap<u32, OwnedFd>,
}

fn restore_error(
    q: &QueueEntry,
    id: u32,
    op: &'static str,
    e: impl Into<std::io::Error>,
) -> PluginError {
    PluginError::Restore {
        id,
        what: format!("message queue {}", q.name),
        op,
        source: e.into(),
    }
}

/// The restore's state: the names of the queues it created, removed again if the restore
/// fails (a failed restore leaves nothing it built behind).
#[derive(Debug, Default)]
pub struct RestoreState {
    created_names: Vec<String>,
}

/// [`criu_plugin_api::RestoreStage::Failed`]: unlinks every named queue this restore
/// created. A queue it replaced is not brought back: its contents were lost when it was
/// replaced, as a restore over an existing name always does (logged then).
pub fn remove_created(ctx: &mut dyn RestoreContext) -> Result<(), PluginError> {
    let state = ctx.state::<RestoreState>()?;
    for name in state.created_names.drain(..) {
        match mq_unlink(name.as_str()) {
            Ok(()) | Err(Errno::ENOENT) => {
                tracing::info!(queue = name, "restore failed: message queue removed")
            }
            Err(e) => tracing::warn!(queue = name, error = %e, "restore failed: cannot remove"),
        }
    }
    Ok(())
}

/// Creates the queue (replacing one of the same name), sets its mode and owner and sends
/// its messages; returns a read-write nonblocking description of it. A named queue is
/// recorded in `created` as soon as it exists, before anything else can fail.
fn create(q: &QueueEntry, id: u32, created: &mut Vec<String>) -> Result<OwnedFd, PluginError> {
    let name = if q.unlinked {
        format!("/criu-rs-mqueue-{}-{}", std::process::id(), q.id)
    } else {
        q.name.clone()
    };
    let attr = MqAttr::new(
        0,
        q.maxmsg as mq_attr_member_t,
        q.msgsize as mq_attr_member_t,
        0,
    );
    let flags = MQ_OFlag::O_CREAT
        | MQ_OFlag::O_EXCL
        | MQ_OFlag::O_RDWR
        | MQ_OFlag::O_NONBLOCK
        | MQ_OFlag::O_CLOEXEC;
    let mode = Mode::from_bits_truncate(0o600);
    let mqd = match mq_open(name.as_str(), flags, mode, Some(&attr)) {
        Err(Errno::EEXIST) => {
            tracing::info!(
                queue = name,
                "replacing the message queue of that name with the dumped one"
            );
            mq_unlink(name.as_str()).map_err(|e| restore_error(q, id, "mq_unlink", e))?;
            mq_open(name.as_str(), flags, mode, Some(&attr))
        }
        other => other,
    }
    .map_err(|e| {
        let why = std::io::Error::other(format!(
            "{e} (maxmsg {}, msgsize {}: above /proc/sys/fs/mqueue/msg_max or msgsize_max \
             needs CAP_SYS_RESOURCE)",
            q.maxmsg, q.msgsize
        ));
        restore_error(q, id, "mq_open", why)
    })?;
    if !q.unlinked {
        created.push(name.clone());
    }
    let fd = mqd.as_fd().try_clone_to_owned();
    let _ = mq_close(mqd);
    let fd = fd.map_err(|e| restore_error(q, id, "dup", e))?;
    if q.unlinked {
        mq_unlink(name.as_str()).map_err(|e| restore_error(q, id, "mq_unlink", e))?;
    }
    nix::sys::stat::fchmod(fd.as_fd(), Mode::from_bits_truncate(q.mode))
        .map_err(|e| restore_error(q, id, "fchmod", e))?;
    nix::unistd::fchown(fd.as_fd(), Some(q.uid.into()), Some(q.gid.into()))
        .map_err(|e| restore_error(q, id, "fchown", e))?;
    queue::fill(fd.as_fd(), &q.messages).map_err(|(i, e)| {
        restore_error(
            q,
            id,
            "mq_send",
            std::io::Error::other(format!("message {i}: {e}")),
        )
    })?;
    Ok(fd)
}

impl FileRestorer for Restorer {
    fn open_file(
        &mut self,
        ctx: &mut dyn RestoreContext,
        entry: &FilesImgEntry,
    ) -> Result<OwnedFd, PluginError> {
        let (file, q) = self.image.file(entry.id).ok_or_else(|| {
            PluginError::bad_image(
                image::FILE,
                format!("no description with file id {}", entry.id),
            )
        })?;
        let queue_fd = match self.created.entry(q.id) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(v) => {
                let created = &mut ctx.state::<RestoreState>()?.created_names;
                v.insert(create(q, entry.id, created)?)
            }
        };
        let nonblock = file.flags & libc::O_NONBLOCK as u32 != 0;
        let access = file.flags as i32 & libc::O_ACCMODE;
        queue::reopen(queue_fd.as_fd(), nonblock, access)
            .map_err(|e| restore_error(q, entry.id, "open", e))
    }

    fn finish(
        &mut self,
        ctx: &mut dyn RestoreContext,
        installed: &[InstalledFd],
    ) -> Result<(), PluginError> {
        for q in &self.image.queues {
            let Some(n) = &q.notify else { continue };
            let pid = ctx.restored_pid(n.pid).unwrap_or(n.pid);
            let ids: Vec<u32> = self
                .image
                .files
                .iter()
                .filter(|f| f.queue == q.id)
                .map(|f| f.id)
                .collect();
            let fd = installed
                .iter()
                .find(|i| i.pid == pid && ids.contains(&i.id))
                .ok_or_else(|| {
                    PluginError::bad_image(
                        image::FILE,
                        format!(
                            "queue entry {} ({}): notification owner pid {} has no fd on the queue",
                            q.id, q.name, n.pid
                        ),
                    )
                })?;
            notify::register(ctx, pid, fd.fd, n)?;
            tracing::debug!(
                pid,
                fd = fd.fd,
                queue = q.name,
                signo = n.signo,
                "mq_notify registered again"
            );
        }
        Ok(())
    }
}
