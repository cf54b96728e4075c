//! Checks for the IPC file kinds the `mqueue` and `signalfd` plugins dump: what each
//! plugin does with the kernel, done once on a probe object of criu's own.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};

use nix::mqueue::{MQ_OFlag, MqAttr, mq_close, mq_open, mq_send, mq_unlink};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::stat::Mode;

use super::{Check, KernelFeatures, Need};

type Outcome = Result<Option<String>, String>;

/// `MQUEUE_MAGIC`, the mqueue filesystem's `f_type`.
const MQUEUE_MAGIC: i64 = 0x1980_0202;

pub(super) static CHECKS: &[Check] = &[
    Check {
        name: "mqueue",
        criu_feature: false,
        what: "a POSIX message queue reopened through /proc/self/fd with its status line",
        need: Need::Optional,
        hint: "needs CONFIG_POSIX_MQUEUE=y; tasks holding message queues need it (queues \
               larger than /proc/sys/fs/mqueue/msg_max or msgsize_max also need \
               CAP_SYS_RESOURCE at restore)",
        probe: mqueue,
    },
    Check {
        name: "signalfd",
        criu_feature: false,
        what: "signalfd() and its sigmask in /proc/self/fdinfo",
        need: Need::Optional,
        hint: "needs CONFIG_SIGNALFD=y; tasks holding signalfds need it",
        probe: signalfd,
    },
];

fn mqueue(_: &mut KernelFeatures) -> Outcome {
    let name = format!("/criu-rs-probe-{}", std::process::id());
    let _ = mq_unlink(name.as_str());
    let flags = MQ_OFlag::O_CREAT | MQ_OFlag::O_EXCL | MQ_OFlag::O_RDWR | MQ_OFlag::O_NONBLOCK;
    let attr = MqAttr::new(0, 1, 8, 0);
    let q = mq_open(
        name.as_str(),
        flags,
        Mode::S_IRUSR | Mode::S_IWUSR,
        Some(&attr),
    )
    .map_err(|e| format!("mq_open: {e}"))?;
    // Held by the fd alone from here on, as an unlinked queue of a dumped task.
    let _ = mq_unlink(name.as_str());
    let outcome = probe_queue(&q);
    let _ = mq_close(q);
    outcome?;
    let limit = |f: &str| {
        std::fs::read_to_string(format!("/proc/sys/fs/mqueue/{f}"))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "?".into())
    };
    Ok(Some(format!(
        "msg_max {}, msgsize_max {}",
        limit("msg_max"),
        limit("msgsize_max")
    )))
}

fn probe_queue(q: &nix::mqueue::MqdT) -> Result<(), String> {
    mq_send(q, b"probe", 1).map_err(|e| format!("mq_send: {e}"))?;
    let own = File::options()
        .read(true)
        .write(true)
        .open(format!("/proc/self/fd/{}", q.as_raw_fd()))
        .map_err(|e| format!("reopening the queue through /proc/self/fd: {e}"))?;
    let fs = nix::sys::statfs::fstatfs(own.as_fd()).map_err(|e| format!("fstatfs: {e}"))?;
    if fs.filesystem_type().0 != MQUEUE_MAGIC {
        return Err(format!(
            "f_type {:#x}, not MQUEUE_MAGIC",
            fs.filesystem_type().0
        ));
    }
    let mut buf = [0u8; 128];
    let n = nix::sys::uio::pread(own.as_fd(), &mut buf, 0).map_err(|e| format!("pread: {e}"))?;
    let status = String::from_utf8_lossy(&buf[..n]);
    if !status.split_whitespace().any(|f| f == "QSIZE:5") || !status.contains("NOTIFY_PID:") {
        return Err(format!("unexpected status line {status:?}"));
    }
    Ok(())
}

fn signalfd(_: &mut KernelFeatures) -> Outcome {
    let mask = SigSet::from(Signal::SIGUSR1);
    let fd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(|e| format!("signalfd: {e}"))?;
    let path = format!("/proc/self/fdinfo/{}", fd.as_raw_fd());
    let info = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let shown = info
        .lines()
        .find_map(|l| l.strip_prefix("sigmask:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok());
    match shown {
        Some(0x200) => Ok(None),
        other => Err(format!(
            "fdinfo sigmask {other:?}, expected 0x200 (SIGUSR1)"
        )),
    }
}
