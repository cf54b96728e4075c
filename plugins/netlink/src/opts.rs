//! The generic socket options of CRIU's `sk_opts_entry`, read from a socket at dump and set
//! again at restore (as CRIU's `dump_socket_opts` / `restore_socket_opts`). The classic BPF
//! filter (`so_filter`) is read by the caller, which knows whether there is one.

use std::os::fd::BorrowedFd;

use criu_proto::images::SkOptsEntry;
use nix::sys::socket::{getsockopt, setsockopt, sockopt};
use nix::sys::time::{TimeVal, TimeValLike};

use crate::sys;

/// `SO_BUF_LOCK` (asm-generic/socket.h, Linux 5.14): which buffer sizes the user locked.
const SO_BUF_LOCK: i32 = 72;

/// A failed option call: the call's name and the error.
pub type OptError = (&'static str, std::io::Error);

fn err(call: &'static str) -> impl Fn(nix::errno::Errno) -> OptError {
    move |e| (call, std::io::Error::from(e))
}

fn ioerr(call: &'static str) -> impl Fn(std::io::Error) -> OptError {
    move |e| (call, e)
}

fn get_bool(fd: BorrowedFd<'_>, name: i32, call: &'static str) -> Result<bool, OptError> {
    sys::get_int(fd, libc::SOL_SOCKET, name)
        .map(|v| v != 0)
        .map_err(ioerr(call))
}

/// Reads every option of `sk_opts_entry` that applies to a netlink socket.
pub fn dump(fd: BorrowedFd<'_>) -> Result<SkOptsEntry, OptError> {
    let snd = getsockopt(&fd, sockopt::SendTimeout).map_err(err("SO_SNDTIMEO"))?;
    let rcv = getsockopt(&fd, sockopt::ReceiveTimeout).map_err(err("SO_RCVTIMEO"))?;
    let mark = getsockopt(&fd, sockopt::Mark).map_err(err("SO_MARK"))?;
    let linger = getsockopt(&fd, sockopt::Linger).map_err(err("SO_LINGER"))?;
    Ok(SkOptsEntry {
        so_sndbuf: getsockopt(&fd, sockopt::SndBuf).map_err(err("SO_SNDBUF"))? as u32,
        so_rcvbuf: getsockopt(&fd, sockopt::RcvBuf).map_err(err("SO_RCVBUF"))? as u32,
        so_snd_tmo_sec: snd.tv_sec() as u64,
        so_snd_tmo_usec: snd.tv_usec() as u64,
        so_rcv_tmo_sec: rcv.tv_sec() as u64,
        so_rcv_tmo_usec: rcv.tv_usec() as u64,
        reuseaddr: Some(getsockopt(&fd, sockopt::ReuseAddr).map_err(err("SO_REUSEADDR"))?),
        so_priority: Some(
            sys::get_int(fd, libc::SOL_SOCKET, libc::SO_PRIORITY).map_err(ioerr("SO_PRIORITY"))?
                as u32,
        ),
        so_rcvlowat: Some(
            sys::get_int(fd, libc::SOL_SOCKET, libc::SO_RCVLOWAT).map_err(ioerr("SO_RCVLOWAT"))?
                as u32,
        ),
        // As CRIU: only a mark that was set (restoring one needs CAP_NET_ADMIN).
        so_mark: (mark != 0).then_some(mark),
        so_passcred: Some(getsockopt(&fd, sockopt::PassCred).map_err(err("SO_PASSCRED"))?),
        so_passsec: Some(get_bool(fd, libc::SO_PASSSEC, "SO_PASSSEC")?),
        so_dontroute: Some(getsockopt(&fd, sockopt::DontRoute).map_err(err("SO_DONTROUTE"))?),
        so_no_check: Some(get_bool(fd, libc::SO_NO_CHECK, "SO_NO_CHECK")?),
        so_reuseport: Some(getsockopt(&fd, sockopt::ReusePort).map_err(err("SO_REUSEPORT"))?),
        so_broadcast: Some(getsockopt(&fd, sockopt::Broadcast).map_err(err("SO_BROADCAST"))?),
        so_keepalive: Some(getsockopt(&fd, sockopt::KeepAlive).map_err(err("SO_KEEPALIVE"))?),
        so_oobinline: Some(
            getsockopt(&fd, sockopt::OobInline).map_err(err("SO_OOBINLINE"))? as u32,
        ),
        so_linger: (linger.l_onoff != 0).then_some(linger.l_linger as u32),
        // Older kernels lack it: then it is simply not recorded.
        so_buf_lock: sys::get_int(fd, libc::SOL_SOCKET, SO_BUF_LOCK)
            .ok()
            .map(|v| v as u32),
        ..Default::default()
    })
}

fn set_flag(
    fd: BorrowedFd<'_>,
    on: Option<bool>,
    name: i32,
    call: &'static str,
) -> Result<(), OptError> {
    if on == Some(true) {
        sys::set_int(fd, libc::SOL_SOCKET, name, 1).map_err(ioerr(call))?;
    }
    Ok(())
}

/// Sets the options of `o` on a new socket. Buffer sizes go through the `*FORCE` variants
/// (criu runs with CAP_NET_ADMIN; the plain ones cap at `net.core.*mem_max`), halved: the
/// kernel doubles what it is given.
pub fn restore(fd: BorrowedFd<'_>, o: &SkOptsEntry) -> Result<(), OptError> {
    let (snd, rcv) = ((o.so_sndbuf / 2) as usize, (o.so_rcvbuf / 2) as usize);
    setsockopt(&fd, sockopt::SndBufForce, &snd)
        .or_else(|_| setsockopt(&fd, sockopt::SndBuf, &snd))
        .map_err(err("SO_SNDBUF"))?;
    setsockopt(&fd, sockopt::RcvBufForce, &rcv)
        .or_else(|_| setsockopt(&fd, sockopt::RcvBuf, &rcv))
        .map_err(err("SO_RCVBUF"))?;
    // After the sizes: setting a size locks it, the recorded lock bits say what was locked.
    if let Some(lock) = o.so_buf_lock {
        sys::set_int(fd, libc::SOL_SOCKET, SO_BUF_LOCK, lock as i32)
            .map_err(ioerr("SO_BUF_LOCK"))?;
    }
    if let Some(p) = o.so_priority {
        sys::set_int(fd, libc::SOL_SOCKET, libc::SO_PRIORITY, p as i32)
            .map_err(ioerr("SO_PRIORITY"))?;
    }
    if let Some(l) = o.so_rcvlowat {
        sys::set_int(fd, libc::SOL_SOCKET, libc::SO_RCVLOWAT, l as i32)
            .map_err(ioerr("SO_RCVLOWAT"))?;
    }
    if let Some(m) = o.so_mark {
        setsockopt(&fd, sockopt::Mark, &m).map_err(err("SO_MARK"))?;
    }
    set_flag(fd, o.so_passcred, libc::SO_PASSCRED, "SO_PASSCRED")?;
    set_flag(fd, o.so_passsec, libc::SO_PASSSEC, "SO_PASSSEC")?;
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
        setsockopt(&fd, sockopt::Linger, &linger).map_err(err("SO_LINGER"))?;
    }
    if !o.so_filter.is_empty() {
        sys::attach_filter(fd, &o.so_filter).map_err(ioerr("SO_ATTACH_FILTER"))?;
    }
    let tv = |sec: u64, usec: u64| TimeVal::microseconds(sec as i64 * 1_000_000 + usec as i64);
    setsockopt(
        &fd,
        sockopt::SendTimeout,
        &tv(o.so_snd_tmo_sec, o.so_snd_tmo_usec),
    )
    .map_err(err("SO_SNDTIMEO"))?;
    setsockopt(
        &fd,
        sockopt::ReceiveTimeout,
        &tv(o.so_rcv_tmo_sec, o.so_rcv_tmo_usec),
    )
    .map_err(err("SO_RCVTIMEO"))
}
