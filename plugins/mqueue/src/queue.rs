//! One queue seen from criu's own process: its attributes and status line, and reading
//! every message out and putting them back in the same order (the kernel has no peek).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

use nix::errno::Errno;
use nix::mqueue::{mq_getattr, mq_receive, mq_send};

use crate::image::QueuedMessage;
use crate::sys::with_mqd;

/// `MQUEUE_MAGIC`, the `f_type` of the mqueue filesystem.
pub const MQUEUE_MAGIC: i64 = 0x1980_0202;

/// A queue's attributes (`mq_getattr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    /// `mq_maxmsg`.
    pub maxmsg: u64,
    /// `mq_msgsize`.
    pub msgsize: u64,
    /// `mq_curmsgs`.
    pub curmsgs: u64,
}

/// What reading a queue file says (`QSIZE:.. NOTIFY:.. SIGNO:.. NOTIFY_PID:..`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Status {
    /// Bytes of message data queued.
    pub qsize: u64,
    /// `sigev_notify` of the registration (0 also when there is none).
    pub notify: i32,
    /// Its signal (`SIGEV_SIGNAL`).
    pub signo: i32,
    /// The registering process, 0 when there is no registration.
    pub notify_pid: i32,
}

/// Parses a queue file's status line; the error names the field.
pub fn parse_status(text: &str) -> Result<Status, String> {
    let mut st = Status::default();
    let mut seen = 0;
    for item in text.split_whitespace() {
        let (k, v) = item
            .split_once(':')
            .ok_or_else(|| format!("{item:?} is not KEY:VALUE"))?;
        let bad = || format!("{k} {v:?} is not a number");
        match k {
            "QSIZE" => st.qsize = v.parse().map_err(|_| bad())?,
            "NOTIFY" => st.notify = v.parse().map_err(|_| bad())?,
            "SIGNO" => st.signo = v.parse().map_err(|_| bad())?,
            "NOTIFY_PID" => st.notify_pid = v.parse().map_err(|_| bad())?,
            _ => continue,
        }
        seen += 1;
    }
    if seen != 4 {
        return Err(format!("{text:?} lacks QSIZE, NOTIFY, SIGNO or NOTIFY_PID"));
    }
    Ok(st)
}

/// A description of its own on the queue behind `fd` (`/proc/self/fd/N` reopened):
/// read-write and nonblocking whatever the task's description is, with its own offset for
/// the status line. Works for queues unlinked while held open.
pub fn reopen(fd: BorrowedFd<'_>, nonblock: bool, access: i32) -> std::io::Result<OwnedFd> {
    use std::os::fd::AsRawFd;
    let mut custom = libc::O_CLOEXEC;
    if nonblock {
        custom |= libc::O_NONBLOCK;
    }
    let file = std::fs::OpenOptions::new()
        .read(access != libc::O_WRONLY)
        .write(access != libc::O_RDONLY)
        .custom_flags(custom)
        .open(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
    Ok(file.into())
}

/// `st_dev` of the mqueue filesystem of criu's own IPC namespace, from a queue of its own
/// created and removed at once.
pub fn own_namespace_dev() -> Result<u64, Errno> {
    use nix::mqueue::{MQ_OFlag, MqAttr, mq_close, mq_open, mq_unlink};
    use nix::sys::stat::Mode;
    let name = format!("/criu-rs-probe-{}", std::process::id());
    let _ = mq_unlink(name.as_str());
    let flags = MQ_OFlag::O_CREAT | MQ_OFlag::O_EXCL | MQ_OFlag::O_RDONLY | MQ_OFlag::O_CLOEXEC;
    let attr = MqAttr::new(0, 1, 1, 0);
    let q = mq_open(name.as_str(), flags, Mode::S_IRUSR, Some(&attr))?;
    let _ = mq_unlink(name.as_str());
    let st = nix::sys::stat::fstat(q.as_fd());
    let _ = mq_close(q);
    Ok(st?.st_dev)
}

/// Whether `fd` is on the mqueue filesystem.
pub fn is_mqueue(fd: BorrowedFd<'_>) -> bool {
    nix::sys::statfs::fstatfs(fd).is_ok_and(|s| s.filesystem_type().0 == MQUEUE_MAGIC)
}

/// The queue's attributes.
pub fn attr(fd: BorrowedFd<'_>) -> Result<Attr, Errno> {
    let a = with_mqd(fd, mq_getattr)?;
    Ok(Attr {
        maxmsg: a.maxmsg() as u64,
        msgsize: a.msgsize() as u64,
        curmsgs: a.curmsgs() as u64,
    })
}

/// The status line, read through `own` (a description of criu's own: reading moves its
/// offset, which must not be the task's).
pub fn status(own: BorrowedFd<'_>) -> Result<Status, String> {
    let mut buf = [0u8; 256];
    let n = nix::sys::uio::pread(own, &mut buf, 0).map_err(|e| format!("pread: {e}"))?;
    parse_status(&String::from_utf8_lossy(&buf[..n]))
}

/// Takes every message out of the queue behind `own` (nonblocking), in receive order.
/// What was taken before a failure is returned with it, so that it can be put back.
pub fn drain(own: BorrowedFd<'_>, msgsize: u64) -> (Vec<QueuedMessage>, Result<(), Errno>) {
    let mut out = Vec::new();
    let mut buf = vec![0u8; msgsize as usize];
    loop {
        let mut prio = 0u32;
        match with_mqd(own, |q| mq_receive(q, &mut buf, &mut prio)) {
            Ok(n) => out.push(QueuedMessage {
                prio,
                data: buf[..n].to_vec(),
            }),
            Err(Errno::EAGAIN) => return (out, Ok(())),
            Err(Errno::EINTR) => continue,
            Err(e) => return (out, Err(e)),
        }
    }
}

/// Sends `msgs` in order through `own` (nonblocking). The error says how many went in.
pub fn fill(own: BorrowedFd<'_>, msgs: &[QueuedMessage]) -> Result<(), (usize, Errno)> {
    for (i, m) in msgs.iter().enumerate() {
        loop {
            match with_mqd(own, |q| mq_send(q, &m.data, m.prio)) {
                Ok(()) => break,
                Err(Errno::EINTR) => continue,
                Err(e) => return Err((i, e)),
            }
        }
    }
    Ok(())
}

/// Reads every message out of the queue, runs `between` on them (recording them), then puts
/// them all back in the same order, whatever `between` returned: a dump that fails there
/// leaves the queue as it was. Sending them back to an empty queue may fire its
/// `mq_notify` registration: the caller handles that. `Err` of the outer result: the queue
/// could not be read or refilled (messages that could not go back are named there).
pub fn snapshot<T, E>(
    own: BorrowedFd<'_>,
    msgsize: u64,
    between: impl FnOnce(&[QueuedMessage]) -> Result<T, E>,
) -> Result<(Vec<QueuedMessage>, Result<T, E>), String> {
    let (msgs, read) = drain(own, msgsize);
    let outcome = read.map(|()| between(&msgs));
    fill(own, &msgs).map_err(|(sent, e)| {
        format!(
            "mq_send of message {sent} of {} back into the queue: {e} ({} messages lost)",
            msgs.len(),
            msgs.len() - sent
        )
    })?;
    let outcome =
        outcome.map_err(|e| format!("mq_receive: {e} (every message read was put back)"))?;
    Ok((msgs, outcome))
}
