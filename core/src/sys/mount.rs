//! Mount calls nix lacks: `move_mount(2)` with `MOVE_MOUNT_SET_GROUP` (Linux 5.15+).

use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;

use super::kabi::MOVE_MOUNT_SET_GROUP;

/// `MOVE_MOUNT_F_EMPTY_PATH` and `MOVE_MOUNT_T_EMPTY_PATH`: the fds are the mounts.
const F_EMPTY_PATH: libc::c_uint = 0x4;
const T_EMPTY_PATH: libc::c_uint = 0x40;

/// Puts mount `to` into the peer group (and under the master) of mount `from`, both given
/// as fds of their roots (`move_mount(from, "", to, "", MOVE_MOUNT_SET_GROUP)`): the
/// kernel wants one superblock, `to`'s root below `from`'s, both in the caller's mount
/// namespace, `to` not yet shared.
pub fn move_mount_set_group(from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> Result<(), Errno> {
    let empty = c"".as_ptr();
    // SAFETY: two fds borrowed for the call and a static empty C string; the kernel reads
    // nothing else.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            from.as_raw_fd(),
            empty,
            to.as_raw_fd(),
            empty,
            MOVE_MOUNT_SET_GROUP | F_EMPTY_PATH | T_EMPTY_PATH,
        )
    };
    Errno::result(r).map(drop)
}
