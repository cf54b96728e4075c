//! The options of a unix socket: CRIU's `sk_opts_entry` ([`crate::opts`]) plus what only
//! unix sockets have, in our fields of that entry: `criu_rs_peek_off` (`SO_PEEK_OFF`),
//! `criu_rs_passpidfd` (`SO_PASSPIDFD`) and `criu_rs_passrights` (`SO_PASSRIGHTS`).

use std::os::fd::BorrowedFd;

use criu_proto::images::SkOptsEntry;

use crate::opts::{self, OptError};
use crate::sys::{self, SO_PASSPIDFD, SO_PASSRIGHTS, SO_PEEK_OFF};

/// Every option of the unix socket `fd` (read on criu's duplicate at dump).
pub fn dump(fd: BorrowedFd<'_>) -> Result<SkOptsEntry, OptError> {
    let mut o = opts::dump(fd)?;
    let optional = |opt, name| sys::get_optional(fd, opt).map_err(OptError::get(name));
    o.criu_rs_peek_off = Some(
        sys::get_int(fd, libc::SOL_SOCKET, SO_PEEK_OFF).map_err(OptError::get("SO_PEEK_OFF"))?,
    );
    o.criu_rs_passpidfd = optional(SO_PASSPIDFD, "SO_PASSPIDFD")?.map(|v| v != 0);
    o.criu_rs_passrights = optional(SO_PASSRIGHTS, "SO_PASSRIGHTS")?.map(|v| v != 0);
    Ok(o)
}

/// Every option but the buffer sizes ([`opts::restore_buffers`], before the queue is written
/// back), once the socket is connected and its queue written: `SO_PASSCRED` set earlier
/// would autobind an unnamed socket on connect.
pub fn restore_rest(fd: BorrowedFd<'_>, o: &SkOptsEntry) -> Result<(), OptError> {
    opts::restore_rest(fd, o)?;
    let set =
        |opt, name, v| sys::set_int(fd, libc::SOL_SOCKET, opt, v).map_err(OptError::set(name));
    if o.criu_rs_passpidfd == Some(true) {
        set(SO_PASSPIDFD, "SO_PASSPIDFD", 1)?;
    }
    // A kernel before 6.16 always passes rights: only a refusal needs the option.
    if o.criu_rs_passrights == Some(false) {
        set(SO_PASSRIGHTS, "SO_PASSRIGHTS", 0)?;
    }
    if let Some(v) = o.criu_rs_peek_off.filter(|&v| v >= 0) {
        set(SO_PEEK_OFF, "SO_PEEK_OFF", v)?;
    }
    Ok(())
}
