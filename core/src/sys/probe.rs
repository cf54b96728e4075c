//! Raw kernel probes for `kerndat` (what nix lacks). Each function makes the real call and
//! returns what the kernel said; deciding what that means is kerndat's job.
//!
//! Probes that need a separate process live in `probe/child.rs`; they fork, and always kill
//! and reap the child by pid.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::errno::Errno;

use super::kabi;

mod child;
mod fsnotify;
mod mem;
#[cfg(target_arch = "x86_64")]
mod shstk;
pub use child::*;
pub use fsnotify::*;
pub use mem::*;
#[cfg(target_arch = "x86_64")]
pub use shstk::*;

/// A probe's syscall failed.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
#[error("{call} failed: {errno}")]
pub struct ProbeError {
    pub call: &'static str,
    pub errno: Errno,
}

pub type Result<T, E = ProbeError> = std::result::Result<T, E>;

fn err(call: &'static str) -> ProbeError {
    ProbeError {
        call,
        errno: Errno::last(),
    }
}

fn fd_or(call: &'static str, r: libc::c_long) -> Result<OwnedFd> {
    if r < 0 {
        return Err(err(call));
    }
    // SAFETY: the kernel just returned this descriptor to us.
    Ok(unsafe { OwnedFd::from_raw_fd(r as i32) })
}

fn ok_or(call: &'static str, r: libc::c_long) -> Result<libc::c_long> {
    if r < 0 { Err(err(call)) } else { Ok(r) }
}

/// `bpf(BPF_MAP_CREATE)` of a 1-entry array map.
pub fn bpf_map_create_array() -> Result<OwnedFd> {
    let attr = kabi::bpf_map_create_attr {
        map_type: kabi::BPF_MAP_TYPE_ARRAY,
        key_size: 4,
        value_size: 8,
        max_entries: 1,
        ..Default::default()
    };
    // SAFETY: attr is a valid, zero-padded prefix of union bpf_attr of the given size.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            kabi::BPF_MAP_CREATE,
            &attr,
            std::mem::size_of_val(&attr),
        )
    };
    fd_or("bpf(BPF_MAP_CREATE)", r)
}

/// `bpf(BPF_PROG_LOAD)` of the socket filter `r0 = 0; exit`.
pub fn bpf_prog_load_trivial() -> Result<OwnedFd> {
    // BPF_ALU64|BPF_MOV|BPF_K r0 = 0, then BPF_JMP|BPF_EXIT.
    let insns: [u64; 2] = [0x0000_0000_0000_00b7, 0x0000_0000_0000_0095];
    let license = c"GPL";
    let attr = kabi::bpf_prog_load_attr {
        prog_type: kabi::BPF_PROG_TYPE_SOCKET_FILTER,
        insn_cnt: 2,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        ..Default::default()
    };
    // SAFETY: attr points to live instruction and license buffers.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            kabi::BPF_PROG_LOAD,
            &attr,
            std::mem::size_of_val(&attr),
        )
    };
    fd_or("bpf(BPF_PROG_LOAD)", r)
}

/// What `clone3` knows: probed without creating any process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clone3Support {
    /// No clone3 at all (ENOSYS).
    Missing,
    /// clone3 exists but its args struct has no set_tid (E2BIG for the larger size).
    NoSetTid,
    /// clone3 with set_tid.
    SetTid,
}

/// Calls clone3 with an unreadable set_tid array: a kernel that knows set_tid fails with
/// EFAULT before creating anything; one that does not rejects the struct size (E2BIG).
pub fn clone3_probe() -> Result<Clone3Support> {
    // SAFETY: all-zero clone_args is valid.
    let mut args: libc::clone_args = unsafe { std::mem::zeroed() };
    args.exit_signal = libc::SIGCHLD as u64;
    args.set_tid = u64::MAX; // unmapped user address
    args.set_tid_size = 1;
    // SAFETY: the kernel reads args; the bogus set_tid pointer makes it fail before cloning.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const libc::clone_args,
            std::mem::size_of::<libc::clone_args>(),
        )
    };
    if r == 0 {
        // We are the child: cannot happen with a bad set_tid, but never run on as a copy.
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(0) };
    }
    if r > 0 {
        // A child was created after all: reap it.
        // SAFETY: r is our child's pid.
        unsafe {
            libc::kill(r as i32, libc::SIGKILL);
            libc::waitpid(r as i32, std::ptr::null_mut(), libc::__WALL);
        }
        return Ok(Clone3Support::SetTid);
    }
    match Errno::last() {
        Errno::EFAULT => Ok(Clone3Support::SetTid),
        Errno::E2BIG => Ok(Clone3Support::NoSetTid),
        Errno::ENOSYS => Ok(Clone3Support::Missing),
        errno => Err(ProbeError {
            call: "clone3",
            errno,
        }),
    }
}

/// `prctl(PR_SET_MM, PR_SET_MM_MAP_SIZE, &size)`: the size of `struct prctl_mm_map`.
pub fn prctl_mm_map_size() -> Result<u32> {
    let mut size: u32 = 0;
    // SAFETY: the kernel writes one u32 at the pointer.
    let r = unsafe {
        libc::prctl(
            libc::PR_SET_MM,
            libc::PR_SET_MM_MAP_SIZE,
            &mut size as *mut u32,
            0,
            0,
        )
    };
    ok_or("prctl(PR_SET_MM_MAP_SIZE)", r as libc::c_long)?;
    Ok(size)
}

/// `prctl(PR_GET_TID_ADDRESS)` of the calling thread.
pub fn prctl_get_tid_address() -> Result<u64> {
    let mut addr: u64 = 0;
    // SAFETY: the kernel writes one pointer at the address.
    let r = unsafe { libc::prctl(kabi::PR_GET_TID_ADDRESS, &mut addr as *mut u64, 0, 0, 0) };
    ok_or("prctl(PR_GET_TID_ADDRESS)", r as libc::c_long)?;
    Ok(addr)
}

/// `prctl(PR_TIMER_CREATE_RESTORE_IDS, PR_TIMER_CREATE_RESTORE_IDS_GET)` (Linux 6.15+):
/// whether timer_create() takes the wanted id for the calling process; EINVAL before 6.15.
pub fn prctl_timer_restore_ids_get() -> Result<bool> {
    const PR_TIMER_CREATE_RESTORE_IDS: libc::c_int = 77;
    const PR_TIMER_CREATE_RESTORE_IDS_GET: libc::c_ulong = 2;
    // SAFETY: the GET form takes no pointer; it only returns 0 or 1.
    let r = unsafe {
        libc::prctl(
            PR_TIMER_CREATE_RESTORE_IDS,
            PR_TIMER_CREATE_RESTORE_IDS_GET,
            0,
            0,
            0,
        )
    };
    ok_or("prctl(PR_TIMER_CREATE_RESTORE_IDS)", r as libc::c_long).map(|r| r == 1)
}

/// `rseq(NULL, 0, 0, 0)`: EINVAL when the syscall exists, ENOSYS when not.
pub fn rseq_exists() -> Result<bool> {
    // SAFETY: with a null area the kernel only validates arguments.
    let r = unsafe { libc::syscall(libc::SYS_rseq, 0usize, 0u32, 0, 0u32) };
    match (r, Errno::last()) {
        (0.., _) => Ok(true),
        (_, Errno::EINVAL) | (_, Errno::EBUSY) | (_, Errno::EPERM) => Ok(true),
        (_, Errno::ENOSYS) => Ok(false),
        (_, errno) => Err(ProbeError {
            call: "rseq",
            errno,
        }),
    }
}

/// `kcmp(pid, pid, KCMP_EPOLL_TFD, fd, &slot)`: is target `tfd` registered in epoll `efd`?
pub fn kcmp_epoll_tfd(pid: i32, fd: i32, efd: i32, tfd: i32) -> Result<i32> {
    let slot = kabi::kcmp_epoll_slot {
        efd: efd as u32,
        tfd: tfd as u32,
        toff: 0,
    };
    // SAFETY: slot is a valid kcmp_epoll_slot the kernel reads.
    let r = unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            pid,
            pid,
            kabi::KCMP_EPOLL_TFD,
            fd,
            &slot as *const kabi::kcmp_epoll_slot,
        )
    };
    ok_or("kcmp(KCMP_EPOLL_TFD)", r).map(|v| v as i32)
}

/// `openat2(AT_FDCWD, path, {O_PATH|O_CLOEXEC, RESOLVE_NO_MAGICLINKS})`.
pub fn openat2_path(path: &std::ffi::CStr) -> Result<OwnedFd> {
    // SAFETY: all-zero open_how is valid.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_PATH | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: path is a C string, how a valid open_how of the given size.
    let r = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            path.as_ptr(),
            &how,
            std::mem::size_of_val(&how),
        )
    };
    fd_or("openat2", r)
}

/// `ioctl(sock, SIOCGSKNS)`: an fd of the socket's network namespace.
pub fn socket_netns(sock: BorrowedFd<'_>) -> Result<OwnedFd> {
    // SAFETY: SIOCGSKNS takes no argument and returns a new fd.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGSKNS) };
    fd_or("ioctl(SIOCGSKNS)", r as libc::c_long)
}

/// `ioctl(sock, SIOCUNIXFILE)`: an O_PATH fd of the file a unix socket is bound to.
pub fn unix_socket_file(sock: BorrowedFd<'_>) -> Result<OwnedFd> {
    // SAFETY: SIOCUNIXFILE takes no argument and returns a new fd.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), kabi::SIOCUNIXFILE) };
    fd_or("ioctl(SIOCUNIXFILE)", r as libc::c_long)
}

/// `setsockopt(sock, level, name, &int)`.
pub fn setsockopt_int(
    sock: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> Result<()> {
    // SAFETY: value is a valid int of the size passed.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            4,
        )
    };
    ok_or("setsockopt", r as libc::c_long).map(drop)
}

/// `getsockopt(sock, level, name)` into a buffer; returns the length the kernel reported.
pub fn getsockopt_buf(
    sock: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    buf: &mut [u8],
) -> Result<usize> {
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: buf/len describe a writable buffer.
    let r = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            level,
            name,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    ok_or("getsockopt", r as libc::c_long)?;
    Ok(len as usize)
}

#[cfg(test)]
mod tests;

/// `ioctl(timerfd, TFD_IOC_SET_TICKS, &ticks)` (Linux 3.17+ with CONFIG_CHECKPOINT_RESTORE):
/// sets the expiries a read returns, how the timerfd plugin restores unread ticks.
pub fn timerfd_set_ticks(fd: BorrowedFd<'_>, ticks: u64) -> Result<()> {
    // `_IOW('T', 0, __u64)`.
    const TFD_IOC_SET_TICKS: libc::c_ulong = 0x4008_5400;
    // SAFETY: valid fd; the kernel reads one u64 from a live local.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), TFD_IOC_SET_TICKS, &ticks) };
    ok_or("ioctl(TFD_IOC_SET_TICKS)", r as libc::c_long).map(drop)
}

/// `ioctl(pidfd, PIDFD_GET_INFO)` asking for `PIDFD_INFO_EXIT` (Linux 6.15+): the wait status
/// of a reaped process, `None` when the kernel answers without it.
pub fn pidfd_exit_status(pidfd: BorrowedFd<'_>) -> Result<Option<i32>> {
    /// `struct pidfd_info`, its first version (64 bytes); not in libc yet.
    #[repr(C)]
    #[derive(Default)]
    struct PidfdInfo {
        mask: u64,
        cgroupid: u64,
        ids: [u32; 11],
        exit_code: i32,
    }
    const PIDFD_INFO_EXIT: u64 = 1 << 3;
    // `_IOWR(0xFF, 11, struct pidfd_info)` with the 64-byte struct.
    const PIDFD_GET_INFO: libc::c_ulong = 0xC040_FF0B;
    let mut info = PidfdInfo {
        mask: PIDFD_INFO_EXIT,
        ..PidfdInfo::default()
    };
    // SAFETY: valid fd; `info` is a live struct of the size encoded in the request.
    let r = unsafe { libc::ioctl(pidfd.as_raw_fd(), PIDFD_GET_INFO, &mut info) };
    ok_or("ioctl(PIDFD_GET_INFO)", r as libc::c_long)?;
    Ok((info.mask & PIDFD_INFO_EXIT != 0).then_some(info.exit_code))
}
