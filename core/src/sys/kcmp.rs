//! `kcmp(2)`: do two tasks share a kernel object (open file description, mm, fd table...)?
//! The dump uses it to group fds by open file description and tasks by shared resources.

use nix::errno::Errno;
use nix::unistd::Pid;

use super::kabi;

/// What kcmp compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KcmpType {
    /// Open file descriptions of `fd1` in pid1 and `fd2` in pid2.
    File { fd1: i32, fd2: i32 },
    /// Address spaces.
    Vm,
    /// File descriptor tables.
    Files,
    /// Filesystem info (root, cwd, umask).
    Fs,
    /// Signal handler tables.
    Sighand,
    /// I/O contexts.
    Io,
    /// System V semaphore undo lists.
    SysvSem,
    /// Fd `fd` of pid1 against a target registered in epoll `efd` of pid2 ([`epoll_target`]).
    EpollTfd {
        fd: i32,
        efd: i32,
        tfd: i32,
        toff: u32,
    },
}

/// kcmp's answer. The kernel orders objects by an obfuscated pointer, so `Less`/`Greater`
/// are stable within one boot and usable for sorting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum KcmpOrder {
    Less,
    Equal,
    Greater,
    /// Different, and the kernel gives no order.
    Unordered,
}

impl KcmpOrder {
    pub fn is_equal(self) -> bool {
        self == KcmpOrder::Equal
    }
}

/// `kcmp` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("kcmp({what:?}) of pids {pid1} and {pid2} failed")]
pub struct KcmpError {
    pub what: KcmpType,
    pub pid1: i32,
    pub pid2: i32,
    #[source]
    pub errno: Errno,
}

/// `kcmp(pid1, pid2, type, idx1, idx2)`. Errors: EBADF (no such fd), ESRCH, EPERM (needs
/// ptrace read access to both tasks), ENOSYS (no CONFIG_KCMP).
pub fn kcmp(pid1: Pid, pid2: Pid, what: KcmpType) -> Result<KcmpOrder, KcmpError> {
    let (kind, i1, i2) = match what {
        KcmpType::File { fd1, fd2 } => (kabi::KCMP_FILE, fd1 as u64, fd2 as u64),
        KcmpType::Vm => (kabi::KCMP_VM, 0, 0),
        KcmpType::Files => (kabi::KCMP_FILES, 0, 0),
        KcmpType::Fs => (kabi::KCMP_FS, 0, 0),
        KcmpType::Sighand => (kabi::KCMP_SIGHAND, 0, 0),
        KcmpType::Io => (kabi::KCMP_IO, 0, 0),
        KcmpType::SysvSem => (kabi::KCMP_SYSVSEM, 0, 0),
        KcmpType::EpollTfd { fd, efd, tfd, toff } => {
            return epoll_target(pid1, fd, pid2, efd, tfd, toff);
        }
    };
    // SAFETY: integer-only arguments for these types.
    let r = unsafe { libc::syscall(libc::SYS_kcmp, pid1.as_raw(), pid2.as_raw(), kind, i1, i2) };
    match r {
        0 => Ok(KcmpOrder::Equal),
        1 => Ok(KcmpOrder::Less),
        2 => Ok(KcmpOrder::Greater),
        3 => Ok(KcmpOrder::Unordered),
        _ => Err(KcmpError {
            what,
            pid1: pid1.as_raw(),
            pid2: pid2.as_raw(),
            errno: Errno::last(),
        }),
    }
}

/// `kcmp(pid1, pid2, KCMP_EPOLL_TFD, fd, &{efd, tfd, toff})`: is fd `fd` of `pid1` the file
/// registered in epoll fd `efd` of `pid2` as the `toff`-th registration under target number
/// `tfd`? Errors: EBADF (`fd` or `efd` is no fd, or `efd` no epoll), ENOENT (no such
/// registration), as for [`kcmp`] otherwise.
pub fn epoll_target(
    pid1: Pid,
    fd: i32,
    pid2: Pid,
    efd: i32,
    tfd: i32,
    toff: u32,
) -> Result<KcmpOrder, KcmpError> {
    let slot = kabi::kcmp_epoll_slot {
        efd: efd as u32,
        tfd: tfd as u32,
        toff,
    };
    // SAFETY: the last argument points to a valid kcmp_epoll_slot that outlives the call;
    // the kernel only reads it.
    let r = unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            pid1.as_raw(),
            pid2.as_raw(),
            kabi::KCMP_EPOLL_TFD,
            fd as u64,
            &slot as *const kabi::kcmp_epoll_slot,
        )
    };
    match r {
        0 => Ok(KcmpOrder::Equal),
        1 => Ok(KcmpOrder::Less),
        2 => Ok(KcmpOrder::Greater),
        3 => Ok(KcmpOrder::Unordered),
        _ => Err(KcmpError {
            what: KcmpType::EpollTfd { fd, efd, tfd, toff },
            pid1: pid1.as_raw(),
            pid2: pid2.as_raw(),
            errno: Errno::last(),
        }),
    }
}

/// Whether fd `fd1` of `pid1` and fd `fd2` of `pid2` share one open file description.
pub fn same_file(pid1: Pid, fd1: i32, pid2: Pid, fd2: i32) -> Result<bool, KcmpError> {
    kcmp(pid1, pid2, KcmpType::File { fd1, fd2 }).map(KcmpOrder::is_equal)
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use super::*;

    #[test]
    fn files_and_tables() {
        let me = nix::unistd::getpid();
        let (rd, wr) = nix::unistd::pipe().expect("pipe");
        let dup = rd.try_clone().expect("dup");
        assert!(same_file(me, rd.as_raw_fd(), me, dup.as_raw_fd()).expect("kcmp"));
        assert!(!same_file(me, rd.as_raw_fd(), me, wr.as_raw_fd()).expect("kcmp"));
        // The order of two different descriptions is consistent both ways.
        let a = kcmp(
            me,
            me,
            KcmpType::File {
                fd1: rd.as_raw_fd(),
                fd2: wr.as_raw_fd(),
            },
        )
        .expect("kcmp");
        let b = kcmp(
            me,
            me,
            KcmpType::File {
                fd1: wr.as_raw_fd(),
                fd2: rd.as_raw_fd(),
            },
        )
        .expect("kcmp");
        assert!(matches!(
            (a, b),
            (KcmpOrder::Less, KcmpOrder::Greater) | (KcmpOrder::Greater, KcmpOrder::Less)
        ));
        assert!(kcmp(me, me, KcmpType::Vm).expect("vm").is_equal());
        assert!(kcmp(me, me, KcmpType::Files).expect("files").is_equal());
        let e = same_file(me, 9999, me, rd.as_raw_fd()).expect_err("EBADF");
        assert_eq!(e.errno, Errno::EBADF);
    }

    #[test]
    fn epoll_targets() {
        use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
        let me = nix::unistd::getpid();
        let (rd, wr) = nix::unistd::pipe().expect("pipe");
        let ep = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).expect("epoll");
        ep.add(&rd, EpollEvent::new(EpollFlags::EPOLLIN, 7))
            .expect("add");
        let efd = ep.0.as_raw_fd();
        let (r, w) = (rd.as_raw_fd(), wr.as_raw_fd());
        let yes = epoll_target(me, r, me, efd, r, 0).expect("kcmp");
        assert!(yes.is_equal());
        let no = epoll_target(me, w, me, efd, r, 0).expect("kcmp");
        assert!(!no.is_equal());
        let e = epoll_target(me, r, me, efd, w, 0).expect_err("not registered");
        assert_eq!(e.errno, Errno::ENOENT);
        let e = epoll_target(me, r, me, efd, r, 1).expect_err("one registration only");
        assert_eq!(e.errno, Errno::ENOENT);
    }
}
