//! Terminal ioctls nix has no safe call for, wrapped once here. This is the plugin's only
//! `unsafe` code: every call passes a valid fd (a `BorrowedFd`) and a pointer to a local
//! value of the exact type the kernel reads or writes for that request.

#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, BorrowedFd};

use libc::c_int;
use nix::errno::Errno;

nix::ioctl_read_bad!(tiocgwinsz, libc::TIOCGWINSZ, libc::winsize);
nix::ioctl_write_ptr_bad!(tiocswinsz, libc::TIOCSWINSZ, libc::winsize);
// The kernel writes its own `struct termios` (19 control chars, no speed fields), a prefix
// of libc's larger one, which is zeroed first.
nix::ioctl_read_bad!(tiocglcktrmios, libc::TIOCGLCKTRMIOS, libc::termios);
nix::ioctl_read_bad!(tiocgexcl, libc::TIOCGEXCL, c_int);
nix::ioctl_read_bad!(tiocgpkt, libc::TIOCGPKT, c_int);
nix::ioctl_read_bad!(tiocgptlck, libc::TIOCGPTLCK, c_int);
nix::ioctl_read_bad!(tiocgptn, libc::TIOCGPTN, libc::c_uint);
nix::ioctl_write_ptr_bad!(tiocsptlck, libc::TIOCSPTLCK, c_int);
nix::ioctl_write_ptr_bad!(tiocpkt, libc::TIOCPKT, c_int);
nix::ioctl_none_bad!(tiocexcl, libc::TIOCEXCL);
nix::ioctl_read_bad!(tiocgsid, libc::TIOCGSID, libc::pid_t);
nix::ioctl_read_bad!(tiocgpgrp, libc::TIOCGPGRP, libc::pid_t);

/// `TIOCGWINSZ`: the window size.
pub(crate) fn window_size(fd: BorrowedFd<'_>) -> Result<libc::winsize, Errno> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: valid fd; `ws` is a live winsize the kernel fills.
    unsafe { tiocgwinsz(fd.as_raw_fd(), &mut ws) }?;
    Ok(ws)
}

/// `TIOCSWINSZ`: sets the window size.
pub(crate) fn set_window_size(fd: BorrowedFd<'_>, ws: &libc::winsize) -> Result<(), Errno> {
    // SAFETY: valid fd; `ws` is a live winsize the kernel only reads.
    unsafe { tiocswinsz(fd.as_raw_fd(), ws) }.map(drop)
}

/// `TIOCGLCKTRMIOS`: the locked termios bits.
pub(crate) fn locked_termios(fd: BorrowedFd<'_>) -> Result<libc::termios, Errno> {
    let mut t = zeroed_termios();
    // SAFETY: valid fd; `t` is a live termios at least as large as the kernel's.
    unsafe { tiocglcktrmios(fd.as_raw_fd(), &mut t) }?;
    Ok(t)
}

/// The int-valued `TIOCG*` state of a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flag {
    /// `TIOCGEXCL`: exclusive mode.
    Exclusive,
    /// `TIOCGPKT`: packet mode (pty masters).
    Packet,
    /// `TIOCGPTLCK`: the slave is locked (pty masters).
    Locked,
}

/// Reads one [`Flag`]; `ENOTTY`/`EINVAL` (the driver has no such state, e.g. packet mode
/// asked of a slave) read as off, as CRIU does.
pub(crate) fn flag(fd: BorrowedFd<'_>, which: Flag) -> Result<bool, Errno> {
    let mut v: c_int = 0;
    let raw = fd.as_raw_fd();
    // SAFETY: valid fd; `v` is a live int the kernel fills for each of these requests.
    let r = unsafe {
        match which {
            Flag::Exclusive => tiocgexcl(raw, &mut v),
            Flag::Packet => tiocgpkt(raw, &mut v),
            Flag::Locked => tiocgptlck(raw, &mut v),
        }
    };
    match r {
        Ok(_) => Ok(v != 0),
        Err(Errno::ENOTTY | Errno::EINVAL) => Ok(false),
        Err(e) => Err(e),
    }
}

/// `TIOCGPTN`: the index of a pty master (its slave is `/dev/pts/<index>`).
pub(crate) fn pty_index(fd: BorrowedFd<'_>) -> Result<u32, Errno> {
    let mut n: libc::c_uint = 0;
    // SAFETY: valid fd; `n` is a live unsigned int the kernel fills.
    unsafe { tiocgptn(fd.as_raw_fd(), &mut n) }?;
    Ok(n)
}

/// `TIOCSPTLCK`: locks (`true`) or unlocks the slave of a pty master.
pub(crate) fn set_locked(fd: BorrowedFd<'_>, locked: bool) -> Result<(), Errno> {
    let v = c_int::from(locked);
    // SAFETY: valid fd; `v` is a live int the kernel only reads.
    unsafe { tiocsptlck(fd.as_raw_fd(), &v) }.map(drop)
}

/// `TIOCPKT`: packet mode on a pty master.
pub(crate) fn set_packet(fd: BorrowedFd<'_>, on: bool) -> Result<(), Errno> {
    let v = c_int::from(on);
    // SAFETY: valid fd; `v` is a live int the kernel only reads.
    unsafe { tiocpkt(fd.as_raw_fd(), &v) }.map(drop)
}

/// `TIOCEXCL`: exclusive mode (further opens fail with `EBUSY` for unprivileged callers).
pub(crate) fn set_exclusive(fd: BorrowedFd<'_>) -> Result<(), Errno> {
    // SAFETY: valid fd; the request takes no argument.
    unsafe { tiocexcl(fd.as_raw_fd()) }.map(drop)
}

/// The session and foreground group of the slave of pty master `fd` (`TIOCGSID`,
/// `TIOCGPGRP`: asked of a master, the kernel answers for its slave, whoever asks); `(0, 0)`
/// when the slave is no session's controlling terminal.
pub(crate) fn slave_session(fd: BorrowedFd<'_>) -> Result<(i32, i32), Errno> {
    let (mut sid, mut pgrp): (libc::pid_t, libc::pid_t) = (0, 0);
    // SAFETY: valid fd; `sid` is a live pid_t the kernel fills.
    match unsafe { tiocgsid(fd.as_raw_fd(), &mut sid) } {
        Ok(_) => {}
        Err(Errno::ENOTTY) => return Ok((0, 0)),
        Err(e) => return Err(e),
    }
    // SAFETY: as above, for `pgrp`.
    match unsafe { tiocgpgrp(fd.as_raw_fd(), &mut pgrp) } {
        Ok(_) => Ok((sid, pgrp)),
        Err(Errno::ENOTTY) => Ok((sid, 0)),
        Err(e) => Err(e),
    }
}

/// An all-zero termios (libc's struct has no `Default`).
pub(crate) fn zeroed_termios() -> libc::termios {
    libc::termios {
        c_iflag: 0,
        c_oflag: 0,
        c_cflag: 0,
        c_lflag: 0,
        c_line: 0,
        c_cc: [0; libc::NCCS],
        c_ispeed: 0,
        c_ospeed: 0,
    }
}
