//! `kcmp(KCMP_EPOLL_TFD)`, the plugin's only `unsafe` code: nix and libc have no wrapper.
//! It compares fd `fd` of task `pid` with the target registered in epoll `efd` of criu
//! itself (criu's duplicate of the epoll, the very same description) under number `tfd`,
//! `toff`-th of that number. Going through criu's own duplicate works for an epoll no task
//! holds any more (one in flight) and for candidates in any task of the tree.

#![allow(unsafe_code)]

use nix::errno::Errno;

/// `KCMP_EPOLL_TFD` of `include/uapi/linux/kcmp.h`.
const KCMP_EPOLL_TFD: libc::c_long = 7;

/// `struct kcmp_epoll_slot` of `include/uapi/linux/kcmp.h`.
#[repr(C)]
struct EpollSlot {
    efd: u32,
    tfd: u32,
    toff: u32,
}

/// Whether fd `fd` of `pid` is the file registered under (`tfd`, `toff`) in criu's own epoll
/// fd `own_epfd`. A task without fd `fd` (`EBADF`) or a registration that is gone (`ENOENT`)
/// answers `false`.
pub(crate) fn is_target(
    pid: i32,
    fd: i32,
    own_epfd: i32,
    tfd: i32,
    toff: u32,
) -> Result<bool, Errno> {
    let slot = EpollSlot {
        efd: own_epfd as u32,
        tfd: tfd as u32,
        toff,
    };
    let me = std::process::id() as libc::c_long;
    // SAFETY: kcmp only reads `slot`, a live `struct kcmp_epoll_slot` of the exact layout
    // the kernel expects; the other arguments are plain integers.
    let r = unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            libc::c_long::from(pid),
            me,
            KCMP_EPOLL_TFD,
            libc::c_long::from(fd),
            &slot as *const EpollSlot,
        )
    };
    match r {
        0 => Ok(true),
        1..=3 => Ok(false),
        _ => match Errno::last() {
            Errno::EBADF | Errno::ENOENT => Ok(false),
            e => Err(e),
        },
    }
}
