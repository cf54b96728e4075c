//! Socket options in CRIU's `sk_opts_entry`, plus ours (`criu_rs_peek_off`,
//! `criu_rs_passpidfd`, `criu_rs_passrights`).

use std::os::fd::BorrowedFd;

use criu_proto::images::SkOptsEntry;
use nix::errno::Errno;
use nix::sys::socket::{getsockopt, setsockopt, sockopt};
use nix::sys::time::{TimeVal, TimeValLike};

use crate::sys::{
    self, SO_BUF_LOCK, SO_MARK, SO_PASSPIDFD, SO_PASSRIGHTS, SO_PASSSEC, SO_PEEK_OFF,
};

/// `SO_BUF_LOCK` bits: the program set `SO_SNDBUF` / `SO_RCVBUF` itself.
const SNDBUF_LOCK: u32 = 1;
const RCVBUF_LOCK: u32 = 2;

/// A failed get or set of one option.
#[derive(Debug, thiserror::Error)]
#[error("{op} {opt} failed")]
pub(crate) struct OptError {
    /// `getsockopt` or `setsockopt`.
    pub op: &'static str,
    /// The option.
    pub opt: &'static str,
    /// Its errno.
    #[source]
    pub source: Errno,
}

fn get(fd: BorrowedFd<'_>, opt: i32, name: &'static str) -> Result<i32, OptError> {
    sys::get_int(fd, libc::SOL_SOCKET, opt).map_err(|source| OptError {
        op: "getsockopt",
        opt: name,
        source,
    })
}

fn set(fd: BorrowedFd<'_>, opt: i32, name: &'static str, val: i32) -> Result<(), OptError> {
    sys::set_int(fd, libc::SOL_SOCKET, opt, val).map_err(|source| OptError {
        op: "setsockopt",
        opt: name,
        source,
    })
}

fn optional(fd: BorrowedFd<'_>, opt: i32, name: &'static str) -> Result<Option<i32>, OptError> {
    sys::get_optional(fd, opt).map_err(|source| OptError {
        op: "getsockopt",
        opt: name,
        source,
    })
}

fn timeout(tv: TimeVal) -> (u64, u64) {
    (tv.tv_sec() as u64, tv.tv_usec() as u64)
}

/// The options of a unix socket, read on criu's duplicate.
pub(crate) fn dump(fd: BorrowedFd<'_>) -> Result<SkOptsEntry, OptError> {
    let nget = |name| {
        move |source| OptError {
            op: "getsockopt",
            opt: name,
            source,
        }
    };
    let (snd_sec, snd_usec) =
        timeout(getsockopt(&fd, sockopt::SendTimeout).map_err(nget("SO_SNDTIMEO"))?);
    let (rcv_sec, rcv_usec) =
        timeout(getsockopt(&fd, sockopt::ReceiveTimeout).map_err(nget("SO_RCVTIMEO"))?);
    Ok(SkOptsEntry {
        so_sndbuf: get(fd, libc::SO_SNDBUF, "SO_SNDBUF")? as u32,
        so_rcvbuf: get(fd, libc::SO_RCVBUF, "SO_RCVBUF")? as u32,
        so_snd_tmo_sec: snd_sec,
        so_snd_tmo_usec: snd_usec,
        so_rcv_tmo_sec: rcv_sec,
        so_rcv_tmo_usec: rcv_usec,
        so_priority: Some(get(fd, libc::SO_PRIORITY, "SO_PRIORITY")? as u32),
        so_rcvlowat: Some(get(fd, libc::SO_RCVLOWAT, "SO_RCVLOWAT")? as u32),
        so_mark: Some(get(fd, SO_MARK, "SO_MARK")? as u32),
        so_passcred: Some(get(fd, libc::SO_PASSCRED, "SO_PASSCRED")? != 0),
        so_passsec: Some(get(fd, SO_PASSSEC, "SO_PASSSEC")? != 0),
        so_buf_lock: optional(fd, SO_BUF_LOCK, "SO_BUF_LOCK")?.map(|v| v as u32),
        criu_rs_peek_off: Some(get(fd, SO_PEEK_OFF, "SO_PEEK_OFF")?),
        criu_rs_passpidfd: optional(fd, SO_PASSPIDFD, "SO_PASSPIDFD")?.map(|v| v != 0),
        criu_rs_passrights: optional(fd, SO_PASSRIGHTS, "SO_PASSRIGHTS")?.map(|v| v != 0),
        ..SkOptsEntry::default()
    })
}

/// Buffer sizes, before the queue is written back. Only sizes the program set are set
/// (with `*FORCE`, as root, so a size over the sysctl maximum comes back too); the kernel
/// doubles what it is given and reports the doubled size, hence the halving.
pub(crate) fn restore_buffers(fd: BorrowedFd<'_>, o: &SkOptsEntry) -> Result<(), OptError> {
    // Images without SO_BUF_LOCK (CRIU's before 5.14 kernels): set both, as CRIU.
    let lock = o.so_buf_lock.unwrap_or(SNDBUF_LOCK | RCVBUF_LOCK);
    if lock & SNDBUF_LOCK != 0 {
        set(
            fd,
            libc::SO_SNDBUFFORCE,
            "SO_SNDBUFFORCE",
            (o.so_sndbuf / 2) as i32,
        )?;
    }
    if lock & RCVBUF_LOCK != 0 {
        set(
            fd,
            libc::SO_RCVBUFFORCE,
            "SO_RCVBUFFORCE",
            (o.so_rcvbuf / 2) as i32,
        )?;
    }
    if let Some(lock) = o.so_buf_lock {
        set(fd, SO_BUF_LOCK, "SO_BUF_LOCK", lock as i32)?;
    }
    Ok(())
}

/// Every other option, once the socket is connected and its queue written (`SO_PASSCRED`
/// set earlier would autobind an unnamed socket on connect).
pub(crate) fn restore_rest(fd: BorrowedFd<'_>, o: &SkOptsEntry) -> Result<(), OptError> {
    let nset = |name| {
        move |source| OptError {
            op: "setsockopt",
            opt: name,
            source,
        }
    };
    let tv =
        |sec: u64, usec: u64| TimeVal::seconds(sec as i64) + TimeVal::microseconds(usec as i64);
    setsockopt(
        &fd,
        sockopt::SendTimeout,
        &tv(o.so_snd_tmo_sec, o.so_snd_tmo_usec),
    )
    .map_err(nset("SO_SNDTIMEO"))?;
    setsockopt(
        &fd,
        sockopt::ReceiveTimeout,
        &tv(o.so_rcv_tmo_sec, o.so_rcv_tmo_usec),
    )
    .map_err(nset("SO_RCVTIMEO"))?;
    if let Some(v) = o.so_priority.filter(|&v| v != 0) {
        set(fd, libc::SO_PRIORITY, "SO_PRIORITY", v as i32)?;
    }
    if let Some(v) = o.so_rcvlowat.filter(|&v| v > 1) {
        set(fd, libc::SO_RCVLOWAT, "SO_RCVLOWAT", v as i32)?;
    }
    if let Some(v) = o.so_mark.filter(|&v| v != 0) {
        set(fd, SO_MARK, "SO_MARK", v as i32)?;
    }
    if o.so_passcred == Some(true) {
        set(fd, libc::SO_PASSCRED, "SO_PASSCRED", 1)?;
    }
    if o.so_passsec == Some(true) {
        set(fd, SO_PASSSEC, "SO_PASSSEC", 1)?;
    }
    if o.criu_rs_passpidfd == Some(true) {
        set(fd, SO_PASSPIDFD, "SO_PASSPIDFD", 1)?;
    }
    if let Some(v) = o.criu_rs_passrights {
        // A kernel before 6.16 always passes rights: only a refusal needs the option.
        if !v {
            set(fd, SO_PASSRIGHTS, "SO_PASSRIGHTS", 0)?;
        }
    }
    if let Some(v) = o.criu_rs_peek_off.filter(|&v| v >= 0) {
        set(fd, SO_PEEK_OFF, "SO_PEEK_OFF", v)?;
    }
    Ok(())
}
