//! Data queued in a pty pair (CRIU's `tty-data.img`): what one end wrote and the other has
//! not read yet sits in the reader's input queue.
//!
//! Dump: criu holds the very descriptions of both ends. It reads each end's input without
//! waiting (what the slave wrote, from the master; what the master wrote, from the slave)
//! and at once writes it back through the peer, so the dumped tree finds it again if it runs
//! on (dump failure, `--leave-running`). Restore writes each end's data through the peer
//! again, before the tree resumes.
//!
//! Writing through the peer passes the slave's line discipline a second time, so for the
//! write the slave's output processing (`OPOST`: `\n` would become `\r\n` twice) and echo
//! and input translation (`ECHO`, `ICRNL`...: the data would be echoed or translated twice;
//! flow control `IXON` stays, its change would show in packet mode)
//! are switched off and put back right after. A partial line a canonical-mode slave has not
//! completed cannot be read without waiting and is not carried (as in CRIU).

use std::os::fd::{AsFd, BorrowedFd};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::termios::{
    InputFlags, LocalFlags, OutputFlags, SetArg, Termios, tcgetattr, tcsetattr,
};

/// At most this much is carried per end (well above what a pty queues).
const MAX_QUEUED: usize = 1 << 20;

/// Everything readable now on `fd` (an end of a pty), without blocking, the description's
/// flags put back afterwards. A write-only description yields nothing.
pub(crate) fn read_pending(fd: BorrowedFd<'_>) -> Result<Vec<u8>, Errno> {
    let flags = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL)?);
    if flags & OFlag::O_ACCMODE == OFlag::O_WRONLY {
        return Ok(Vec::new());
    }
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let r = loop {
        match nix::unistd::read(fd, &mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if out.len() >= MAX_QUEUED {
                    break Ok(());
                }
            }
            // Nothing (more) queued; EIO: the other end is closed and the queue empty.
            Err(Errno::EAGAIN | Errno::EIO) => break Ok(()),
            Err(Errno::EINTR) => {}
            Err(e) => break Err(e),
        }
    };
    fcntl(fd, FcntlArg::F_SETFL(flags))?;
    r.map(|()| out)
}

/// Which way data is written back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Toward {
    /// Written to the master: it lands in the slave's input.
    Slave,
    /// Written to the slave: it lands in the master's input.
    Master,
}

/// Writes `data` to `writer`, with the slave's termios (set through `master`, where the
/// kernel applies termios requests to the slave) made transparent for the direction, then
/// put back.
pub(crate) fn write_through(
    master: BorrowedFd<'_>,
    writer: BorrowedFd<'_>,
    toward: Toward,
    data: &[u8],
) -> Result<(), Errno> {
    if data.is_empty() {
        return Ok(());
    }
    let saved = tcgetattr(master)?;
    let mut t: Termios = saved.clone();
    match toward {
        Toward::Master => t.output_flags.remove(OutputFlags::OPOST),
        Toward::Slave => {
            t.local_flags.remove(
                LocalFlags::ECHO
                    | LocalFlags::ECHONL
                    | LocalFlags::ECHOE
                    | LocalFlags::ECHOK
                    | LocalFlags::ECHOCTL
                    | LocalFlags::ECHOKE
                    | LocalFlags::IEXTEN,
            );
            // Not IXON: toggling it posts a stop/start status to a packet-mode master's
            // reader.
            t.input_flags.remove(
                InputFlags::ICRNL | InputFlags::INLCR | InputFlags::IGNCR | InputFlags::ISTRIP,
            );
        }
    }
    tcsetattr(master, SetArg::TCSANOW, &t)?;
    let r = write_all(writer, data);
    let back = tcsetattr(master, SetArg::TCSANOW, &saved);
    r.and(back)
}

fn write_all(fd: BorrowedFd<'_>, mut data: &[u8]) -> Result<(), Errno> {
    let flags = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    let r = loop {
        if data.is_empty() {
            break Ok(());
        }
        match nix::unistd::write(fd.as_fd(), data) {
            Ok(n) => data = &data[n..],
            Err(Errno::EINTR) => {}
            // A full queue cannot take it back: the rest is lost, as a terminal may.
            Err(e) => break Err(e),
        }
    };
    fcntl(fd, FcntlArg::F_SETFL(flags))?;
    r
}
