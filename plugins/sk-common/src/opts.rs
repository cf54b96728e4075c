//! CRIU's `sk_opts_entry`: the generic options of a socket, read on criu's duplicate of it
//! at dump ([`dump`]) and set on the new socket at restore. The restore comes in steps
//! because a socket needs some options before others: the device before `bind`
//! ([`restore_bound_dev`]), the buffer sizes before queued data is written back
//! ([`restore_buffers`]), the rest once it is connected ([`restore_rest`]; `SO_PASSCRED`
//! set earlier autobinds an unnamed unix socket on connect). [`restore`] does the last two.
//! The classic BPF filter (`so_filter`) is left to the caller, which knows whether one is
//! attached.

use std::os::fd::BorrowedFd;

use criu_proto::images::SkOptsEntry;
use nix::errno::Errno;
use nix::sys::socket::{getsockopt, setsockopt, sockopt};
use nix::sys::time::{TimeVal, TimeValLike};

use crate::sys::{self, SO_BUF_LOCK, SO_MARK, SO_PASSSEC};

/// `SO_BUF_LOCK` bit: the program set `SO_SNDBUF` itself.
pub const SNDBUF_LOCK: u32 = 1;
/// `SO_BUF_LOCK` bit: the program set `SO_RCVBUF` itself.
pub const RCVBUF_LOCK: u32 = 2;

/// The longest interface name (`IFNAMSIZ`), for `SO_BINDTODEVICE`.
const IFNAMSIZ: usize = 16;

/// A failed get or set of one option.
#[derive(Debug, thiserror::Error)]
#[error("{op}({opt}) failed")]
pub struct OptError {
    /// `getsockopt` or `setsockopt`.
    pub op: &'static str,
    /// The option.
    pub opt: &'static str,
    /// Its errno.
    #[source]
    pub source: Errno,
}

impl OptError {
    pub(crate) fn get(opt: &'static str) -> impl Fn(Errno) -> OptError {
        move |source| OptError {
            op: "getsockopt",
            opt,
            source,
        }
    }

    pub(crate) fn set(opt: &'static str) -> impl Fn(Errno) -> OptError {
        move |source| OptError {
            op: "setsockopt",
            opt,
            source,
        }
    }
}

fn get(fd: BorrowedFd<'_>, opt: i32, name: &'static str) -> Result<i32, OptError> {
    sys::get_int(fd, libc::SOL_SOCKET, opt).map_err(OptError::get(name))
}

fn get_flag(fd: BorrowedFd<'_>, opt: i32, name: &'static str) -> Result<Option<bool>, OptError> {
    get(fd, opt, name).map(|v| Some(v != 0))
}

/// A flag some socket families lack (`SO_PASSCRED` on an inet socket since Linux 6.16):
/// `None` there.
fn get_family_flag(
    fd: BorrowedFd<'_>,
    opt: i32,
    name: &'static str,
) -> Result<Option<bool>, OptError> {
    match sys::get_int(fd, libc::SOL_SOCKET, opt) {
        Ok(v) => Ok(Some(v != 0)),
        Err(Errno::EOPNOTSUPP | Errno::ENOPROTOOPT) => Ok(None),
        Err(e) => Err(OptError::get(name)(e)),
    }
}

fn set(fd: BorrowedFd<'_>, opt: i32, name: &'static str, val: i32) -> Result<(), OptError> {
    sys::set_int(fd, libc::SOL_SOCKET, opt, val).map_err(OptError::set(name))
}

fn timeout(tv: TimeVal) -> (u64, u64) {
    (tv.tv_sec() as u64, tv.tv_usec() as u64)
}

/// Reads every `SOL_SOCKET` option of `sk_opts_entry` from `fd` (not `so_filter`, nor the
/// TCP keepalive parameters: see [`dump_tcp_keepalive`]).
pub fn dump(fd: BorrowedFd<'_>) -> Result<SkOptsEntry, OptError> {
    let (snd_sec, snd_usec) =
        timeout(getsockopt(&fd, sockopt::SendTimeout).map_err(OptError::get("SO_SNDTIMEO"))?);
    let (rcv_sec, rcv_usec) =
        timeout(getsockopt(&fd, sockopt::ReceiveTimeout).map_err(OptError::get("SO_RCVTIMEO"))?);
    let linger = getsockopt(&fd, sockopt::Linger).map_err(OptError::get("SO_LINGER"))?;
    let dev = sys::get_bytes(fd, libc::SOL_SOCKET, libc::SO_BINDTODEVICE, IFNAMSIZ)
        .map_err(OptError::get("SO_BINDTODEVICE"))?;
    let dev = String::from_utf8_lossy(dev.split(|&b| b == 0).next().unwrap_or(&[])).into_owned();
    Ok(SkOptsEntry {
        so_sndbuf: get(fd, libc::SO_SNDBUF, "SO_SNDBUF")? as u32,
        so_rcvbuf: get(fd, libc::SO_RCVBUF, "SO_RCVBUF")? as u32,
        so_snd_tmo_sec: snd_sec,
        so_snd_tmo_usec: snd_usec,
        so_rcv_tmo_sec: rcv_sec,
        so_rcv_tmo_usec: rcv_usec,
        reuseaddr: get_flag(fd, libc::SO_REUSEADDR, "SO_REUSEADDR")?,
        so_priority: Some(get(fd, libc::SO_PRIORITY, "SO_PRIORITY")? as u32),
        so_rcvlowat: Some(get(fd, libc::SO_RCVLOWAT, "SO_RCVLOWAT")? as u32),
        so_mark: Some(get(fd, SO_MARK, "SO_MARK")? as u32),
        so_passcred: get_family_flag(fd, libc::SO_PASSCRED, "SO_PASSCRED")?,
        so_passsec: get_family_flag(fd, SO_PASSSEC, "SO_PASSSEC")?,
        so_dontroute: get_flag(fd, libc::SO_DONTROUTE, "SO_DONTROUTE")?,
        so_no_check: get_flag(fd, libc::SO_NO_CHECK, "SO_NO_CHECK")?,
        so_bound_dev: (!dev.is_empty()).then_some(dev),
        so_reuseport: get_flag(fd, libc::SO_REUSEPORT, "SO_REUSEPORT")?,
        so_broadcast: get_flag(fd, libc::SO_BROADCAST, "SO_BROADCAST")?,
        so_keepalive: get_flag(fd, libc::SO_KEEPALIVE, "SO_KEEPALIVE")?,
        so_oobinline: Some(get(fd, libc::SO_OOBINLINE, "SO_OOBINLINE")? as u32),
        so_linger: (linger.l_onoff != 0).then_some(linger.l_linger as u32),
        so_buf_lock: sys::get_optional(fd, SO_BUF_LOCK)
            .map_err(OptError::get("SO_BUF_LOCK"))?
            .map(|v| v as u32),
        ..SkOptsEntry::default()
    })
}

/// Adds the keepalive parameters of a TCP socket (`TCP_KEEPCNT`, `TCP_KEEPIDLE`,
/// `TCP_KEEPINTVL`) to `o`, as CRIU does for a TCP socket with `SO_KEEPALIVE` on.
pub fn dump_tcp_keepalive(fd: BorrowedFd<'_>, o: &mut SkOptsEntry) -> Result<(), OptError> {
    if o.so_keepalive != Some(true) {
        return Ok(());
    }
    let tcp = |opt, name| {
        sys::get_int(fd, libc::SOL_TCP, opt)
            .map(|v| Some(v as u32))
            .map_err(OptError::get(name))
    };
    o.tcp_keepcnt = tcp(libc::TCP_KEEPCNT, "TCP_KEEPCNT")?;
    o.tcp_keepidle = tcp(libc::TCP_KEEPIDLE, "TCP_KEEPIDLE")?;
    o.tcp_keepintvl = tcp(libc::TCP_KEEPINTVL, "TCP_KEEPINTVL")?;
    Ok(())
}

/// `SO_BINDTODEVICE`, which has to come before `bind`.
pub fn restore_bound_dev(fd: BorrowedFd<'_>, o: &SkOptsEntry) -> Result<(), OptError> {
    match o.so_bound_dev.as_deref() {
        Some(dev) if !dev.is_empty() => {
            sys::set_bytes(fd, libc::SOL_SOCKET, libc::SO_BINDTODEVICE, dev.as_bytes())
                .map_err(OptError::set("SO_BINDTODEVICE"))
        }
        _ => Ok(()),
    }
}

/// Buffer sizes, before queued data is written back. Only sizes the program set are set
/// (with `*FORCE`, as root, so a size over the sysctl maximum comes back too); the kernel
/// doubles what it is given and reports the doubled size, hence the halving.
pub fn restore_buffers(fd: BorrowedFd<'_>, o: &SkOptsEntry) -> Result<(), OptError> {
    // Images without SO_BUF_LOCK (CRIU's before 5.14 kernels): set both, as CRIU.
    let lock = o.so_buf_lock.unwrap_or(SNDBUF_LOCK | RCVBUF_LOCK);
    if lock & SNDBUF_LOCK != 0 {
        let v = (o.so_sndbuf / 2) as i32;
        set(fd, libc::SO_SNDBUFFORCE, "SO_SNDBUFFORCE", v)?;
    }
    if lock & RCVBUF_LOCK != 0 {
        let v = (o.so_rcvbuf / 2) as i32;
        set(fd, libc::SO_RCVBUFFORCE, "SO_RCVBUFFORCE", v)?;
    }
    if let Some(lock) = o.so_buf_lock {
        set(fd, SO_BUF_LOCK, "SO_BUF_LOCK", lock as i32)?;
    }
    Ok(())
}

fn set_flag(
    fd: BorrowedFd<'_>,
    on: Option<bool>,
    opt: i32,
    name: &'static str,
) -> Result<(), OptError> {
    if on == Some(true) {
        set(fd, opt, name, 1)?;
    }
    Ok(())
}

/// Every option but the device and the buffer sizes: timeouts, priority, low-water mark,
/// mark (only one that was set: setting it needs `CAP_NET_ADMIN`), the flags that were on,
/// linger and the TCP keepalive parameters.
pub fn restore_rest(fd: BorrowedFd<'_>, o: &SkOptsEntry) -> Result<(), OptError> {
    let tv =
        |sec: u64, usec: u64| TimeVal::seconds(sec as i64) + TimeVal::microseconds(usec as i64);
    setsockopt(
        &fd,
        sockopt::SendTimeout,
        &tv(o.so_snd_tmo_sec, o.so_snd_tmo_usec),
    )
    .map_err(OptError::set("SO_SNDTIMEO"))?;
    setsockopt(
        &fd,
        sockopt::ReceiveTimeout,
        &tv(o.so_rcv_tmo_sec, o.so_rcv_tmo_usec),
    )
    .map_err(OptError::set("SO_RCVTIMEO"))?;
    if let Some(v) = o.so_priority.filter(|&v| v != 0) {
        set(fd, libc::SO_PRIORITY, "SO_PRIORITY", v as i32)?;
    }
    if let Some(v) = o.so_rcvlowat.filter(|&v| v > 1) {
        set(fd, libc::SO_RCVLOWAT, "SO_RCVLOWAT", v as i32)?;
    }
    if let Some(v) = o.so_mark.filter(|&v| v != 0) {
        set(fd, SO_MARK, "SO_MARK", v as i32)?;
    }
    set_flag(fd, o.so_passcred, libc::SO_PASSCRED, "SO_PASSCRED")?;
    set_flag(fd, o.so_passsec, SO_PASSSEC, "SO_PASSSEC")?;
    set_flag(fd, o.so_dontroute, libc::SO_DONTROUTE, "SO_DONTROUTE")?;
    set_flag(fd, o.so_no_check, libc::SO_NO_CHECK, "SO_NO_CHECK")?;
    set_flag(fd, o.reuseaddr, libc::SO_REUSEADDR, "SO_REUSEADDR")?;
    set_flag(fd, o.so_reuseport, libc::SO_REUSEPORT, "SO_REUSEPORT")?;
    set_flag(fd, o.so_broadcast, libc::SO_BROADCAST, "SO_BROADCAST")?;
    set_flag(fd, o.so_keepalive, libc::SO_KEEPALIVE, "SO_KEEPALIVE")?;
    set_flag(
        fd,
        o.so_oobinline.map(|v| v != 0),
        libc::SO_OOBINLINE,
        "SO_OOBINLINE",
    )?;
    if let Some(l) = o.so_linger {
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: l as i32,
        };
        setsockopt(&fd, sockopt::Linger, &linger).map_err(OptError::set("SO_LINGER"))?;
    }
    let tcp = [
        (o.tcp_keepcnt, libc::TCP_KEEPCNT, "TCP_KEEPCNT"),
        (o.tcp_keepidle, libc::TCP_KEEPIDLE, "TCP_KEEPIDLE"),
        (o.tcp_keepintvl, libc::TCP_KEEPINTVL, "TCP_KEEPINTVL"),
    ];
    for (v, opt, name) in tcp {
        if let Some(v) = v {
            sys::set_int(fd, libc::SOL_TCP, opt, v as i32).map_err(OptError::set(name))?;
        }
    }
    Ok(())
}

/// [`restore_buffers`] then [`restore_rest`].
pub fn restore(fd: BorrowedFd<'_>, o: &SkOptsEntry) -> Result<(), OptError> {
    restore_buffers(fd, o)?;
    restore_rest(fd, o)
}
