//! Checks for features only some resources or options need.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};

use super::checks::why;
use super::checks_sockets::{scm_pidfd, so_passpidfd, so_passrights, so_peek_off};
use super::{Check, KernelFeatures, Need};
use crate::sys::probe::{self, ChildSetup};
use crate::sys::{kabi, ptrace};

type Outcome = Result<Option<String>, String>;

macro_rules! optional {
    ($name:literal, $criu:literal, $what:literal, $hint:literal, $probe:ident) => {
        Check {
            name: $name,
            criu_feature: $criu,
            what: $what,
            need: Need::Optional,
            hint: $hint,
            probe: $probe,
        }
    };
}

pub(super) static CHECKS: &[Check] = &[
    optional!(
        "seccomp_suspend",
        true,
        "PTRACE_O_SUSPEND_SECCOMP on a child",
        "needs Linux 4.3+ and CAP_SYS_ADMIN; tasks with seccomp filters may refuse injected \
         syscalls without it",
        seccomp_suspend
    ),
    optional!(
        "seccomp_filters",
        true,
        "PTRACE_SECCOMP_GET_FILTER of a child's filter",
        "needs Linux 4.4+ with CONFIG_CHECKPOINT_RESTORE; tasks with seccomp filters cannot \
         be dumped without it",
        seccomp_filters
    ),
    optional!(
        "timens",
        true,
        "unshare(CLONE_NEWTIME) in a child",
        "needs CONFIG_TIME_NS=y (Linux 5.6+)",
        timens
    ),
    optional!(
        "cgroupns",
        true,
        "/proc/self/ns/cgroup",
        "needs CONFIG_CGROUPS with cgroup \
         namespaces (Linux 4.6+)",
        cgroupns
    ),
    optional!(
        "userns",
        true,
        "/proc/self/ns/user and PR_SET_MM_MAP_SIZE",
        "needs CONFIG_USER_NS=y and CONFIG_CHECKPOINT_RESTORE=y",
        userns
    ),
    optional!(
        "ns_pid",
        true,
        "NSpid in /proc/self/status",
        "needs Linux 4.1 or newer",
        ns_pid
    ),
    optional!(
        "kcmp_epoll",
        true,
        "kcmp(KCMP_EPOLL_TFD) of a pipe in an epoll",
        "needs Linux 4.13+ with CONFIG_KCMP; epoll targets cannot be matched without it",
        kcmp_epoll
    ),
    optional!(
        "openat2",
        true,
        "openat2(RESOLVE_NO_MAGICLINKS)",
        "needs Linux 5.6 or newer",
        openat2
    ),
    optional!(
        "mnt_id",
        true,
        "mnt_id in /proc/self/fdinfo",
        "needs Linux 3.15 or newer",
        mnt_id
    ),
    optional!(
        "fdinfo_lock",
        true,
        "lock: lines in /proc/self/fdinfo of a flock()ed file",
        "needs Linux 4.1 or newer; file locks cannot be dumped without it",
        fdinfo_lock
    ),
    optional!(
        "timerfd",
        true,
        "it_value in the fdinfo of an armed timerfd and TFD_IOC_SET_TICKS",
        "needs Linux 3.17+ with CONFIG_CHECKPOINT_RESTORE; timerfds cannot be dumped without it",
        timerfd
    ),
    optional!(
        "pidfd_thread",
        false,
        "pidfd_open(PIDFD_THREAD) of a thread",
        "needs Linux 6.9 or newer; pidfds of threads cannot be restored without it",
        pidfd_thread
    ),
    optional!(
        "pidfd_get_info",
        false,
        "PIDFD_GET_INFO with PIDFD_INFO_EXIT on a pidfd of a reaped child",
        "needs Linux 6.15 or newer; pidfds of reaped processes come back with SIGKILL as \
         their exit status (as with CRIU) without it",
        pidfd_get_info
    ),
    optional!(
        "sk_ns",
        true,
        "ioctl(SIOCGSKNS) on a socket",
        "needs Linux 4.9 or newer",
        sk_ns
    ),
    optional!(
        "sk_unix_file",
        true,
        "ioctl(SIOCUNIXFILE) on a bound unix socket",
        "needs Linux 5.4 or newer; bound unix sockets whose file was moved cannot be matched \
         without it",
        sk_unix_file
    ),
    optional!(
        "move_mount_set_group",
        true,
        "move_mount(MOVE_MOUNT_SET_GROUP) between two tmpfs mounts in a child's mount namespace",
        "needs Linux 5.15 or newer and CAP_SYS_ADMIN; shared mount groups cannot be restored \
         without it",
        move_mount_set_group
    ),
    optional!(
        "tcp_half_closed",
        true,
        "TCP_REPAIR on a loopback connection after shutdown(SHUT_WR)",
        "needs Linux 4.11+ and CAP_NET_ADMIN, and a loopback interface that is up",
        tcp_half_closed
    ),
    optional!(
        "sockopt_buf_lock",
        true,
        "setsockopt(SO_BUF_LOCK)",
        "needs Linux 5.14 or newer",
        sockopt_buf_lock
    ),
    optional!(
        "so_peek_off",
        false,
        "SO_PEEK_OFF on unix sockets: -1 until set, MSG_PEEK from the offset",
        "needs Linux 4.3 or newer; unix socket queues cannot be read at dump without it",
        so_peek_off
    ),
    optional!(
        "so_passpidfd",
        false,
        "setsockopt/getsockopt(SO_PASSPIDFD) on a unix socket",
        "needs Linux 6.5 or newer (only programs that use it need it)",
        so_passpidfd
    ),
    optional!(
        "scm_pidfd",
        false,
        "an SCM_PIDFD received on a unix socket with SO_PASSPIDFD",
        "needs Linux 6.5 or newer (only programs that use it need it)",
        scm_pidfd
    ),
    optional!(
        "so_passrights",
        false,
        "SO_PASSRIGHTS off makes sendmsg(SCM_RIGHTS) fail with EPERM, on lets it through",
        "needs Linux 6.16 or newer (only programs that refuse fds need it)",
        so_passrights
    ),
    optional!(
        "tcp_repair",
        false,
        "TCP_REPAIR on a TCP socket, TCP_REPAIR_WINDOW",
        "needs Linux 4.8+ and CAP_NET_ADMIN; established TCP connections need it",
        tcp_repair
    ),
    optional!(
        "posix_timers",
        false,
        "/proc/self/timers readable",
        "needs CONFIG_CHECKPOINT_RESTORE=y and CONFIG_POSIX_TIMERS=y",
        posix_timers
    ),
    optional!(
        "bpf",
        false,
        "bpf(BPF_MAP_CREATE) and BPF_PROG_LOAD of a socket filter",
        "needs CONFIG_BPF_SYSCALL=y and CAP_BPF (or kernel.unprivileged_bpf_disabled=0)",
        bpf
    ),
    optional!(
        "rseq",
        false,
        "the rseq syscall",
        "needs Linux 4.18 or newer",
        rseq
    ),
];

fn seccomp_suspend(kf: &mut KernelFeatures) -> Outcome {
    probe::with_frozen_child(ChildSetup::Idle, ptrace::suspend_seccomp_option(), |_| ())
        .map_err(|e| e.to_string())?;
    kf.seccomp_suspend = true;
    Ok(None)
}

fn seccomp_filters(_: &mut KernelFeatures) -> Outcome {
    let f = probe::with_frozen_child(
        ChildSetup::SeccompAllowAll,
        ptrace::suspend_seccomp_option(),
        |pid| ptrace::seccomp_get_filter(pid, 0),
    )
    .map_err(|e| e.to_string())?
    .map_err(|e| why(&e))?;
    Ok(Some(format!("{} instruction(s)", f.len() / 8)))
}

fn timens(kf: &mut KernelFeatures) -> Outcome {
    probe::unshare_in_child(libc::CLONE_NEWTIME).map_err(|e| e.to_string())?;
    kf.timens = true;
    Ok(None)
}

fn ns_file(name: &str) -> Outcome {
    let p = format!("/proc/self/ns/{name}");
    std::fs::read_link(&p).map_err(|e| format!("{p}: {e}"))?;
    Ok(None)
}

fn cgroupns(_: &mut KernelFeatures) -> Outcome {
    ns_file("cgroup")
}

fn userns(_: &mut KernelFeatures) -> Outcome {
    ns_file("user")?;
    probe::prctl_mm_map_size().map_err(|e| e.to_string())?;
    Ok(None)
}

fn ns_pid(_: &mut KernelFeatures) -> Outcome {
    let s = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
    if s.lines().any(|l| l.starts_with("NSpid:")) {
        Ok(None)
    } else {
        Err("no NSpid line in /proc/self/status".into())
    }
}

fn kcmp_epoll(_: &mut KernelFeatures) -> Outcome {
    use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
    let ep = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(|e| e.to_string())?;
    let (rd, _wr) = nix::unistd::pipe().map_err(|e| e.to_string())?;
    ep.add(&rd, EpollEvent::new(EpollFlags::EPOLLIN, 7))
        .map_err(|e| e.to_string())?;
    let me = std::process::id() as i32;
    let fd = rd.as_raw_fd();
    match probe::kcmp_epoll_tfd(me, fd, ep.0.as_raw_fd(), fd) {
        Ok(0) => Ok(None),
        Ok(v) => Err(format!("kcmp says the registered pipe differs ({v})")),
        Err(e) => Err(e.to_string()),
    }
}

fn openat2(_: &mut KernelFeatures) -> Outcome {
    probe::openat2_path(c"/").map_err(|e| e.to_string())?;
    Ok(None)
}

fn fdinfo_has(fd: BorrowedFd<'_>, key: &str) -> Outcome {
    let p = format!("/proc/self/fdinfo/{}", fd.as_raw_fd());
    let s = std::fs::read_to_string(&p).map_err(|e| format!("{p}: {e}"))?;
    if s.lines().any(|l| l.starts_with(key)) {
        Ok(None)
    } else {
        Err(format!("no {key} line in {p}"))
    }
}

fn mnt_id(_: &mut KernelFeatures) -> Outcome {
    let f = File::open("/proc/self/status").map_err(|e| e.to_string())?;
    fdinfo_has(f.as_fd(), "mnt_id:")
}

fn fdinfo_lock(_: &mut KernelFeatures) -> Outcome {
    use nix::fcntl::{Flock, FlockArg};
    let fd = probe::memfd_create(c"criu-probe-lock", 0).map_err(|e| e.to_string())?;
    let locked =
        Flock::lock(fd, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| e.to_string())?;
    fdinfo_has(locked.as_fd(), "lock:")
}

fn timerfd(_: &mut KernelFeatures) -> Outcome {
    use nix::sys::time::TimeSpec;
    use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
    let t = TimerFd::new(ClockId::CLOCK_MONOTONIC, TimerFlags::TFD_CLOEXEC)
        .map_err(|e| e.to_string())?;
    t.set(
        Expiration::OneShot(TimeSpec::new(1000, 0)),
        TimerSetTimeFlags::empty(),
    )
    .map_err(|e| e.to_string())?;
    fdinfo_has(t.as_fd(), "it_value:")?;
    probe::timerfd_set_ticks(t.as_fd(), 3).map_err(|e| e.to_string())?;
    fdinfo_has(t.as_fd(), "ticks: 3")
}

fn pidfd_thread(_: &mut KernelFeatures) -> Outcome {
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let th = std::thread::spawn(move || {
        let _ = tx.send(nix::unistd::gettid());
        let _ = stop_rx.recv();
    });
    let tid = rx.recv().map_err(|e| e.to_string())?;
    let r = crate::sys::pidfd::pidfd_open(tid, crate::sys::pidfd::PIDFD_THREAD);
    drop(stop_tx);
    let _ = th.join();
    r.map(drop).map_err(|e| why(&e))?;
    Ok(None)
}

fn pidfd_get_info(_: &mut KernelFeatures) -> Outcome {
    let mut child = std::process::Command::new("true")
        .spawn()
        .map_err(|e| format!("spawning true: {e}"))?;
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let pidfd = crate::sys::pidfd::pidfd_open(pid, 0);
    let _ = child.wait(); // reaped: only the pidfd knows its status now
    let pidfd = pidfd.map_err(|e| why(&e))?;
    match probe::pidfd_exit_status(pidfd.as_fd()).map_err(|e| e.to_string())? {
        Some(0) => Ok(None),
        other => Err(format!(
            "PIDFD_INFO_EXIT answered {other:?} for a child that exited 0"
        )),
    }
}

fn unix_socket() -> Result<std::os::fd::OwnedFd, String> {
    socket(
        AddressFamily::Unix,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| format!("socket: {e}"))
}

fn sk_ns(_: &mut KernelFeatures) -> Outcome {
    let s = unix_socket()?;
    probe::socket_netns(s.as_fd()).map_err(|e| e.to_string())?;
    Ok(None)
}

fn sk_unix_file(_: &mut KernelFeatures) -> Outcome {
    use nix::sys::socket::{UnixAddr, bind};
    use std::os::unix::fs::MetadataExt;
    let dir = std::env::temp_dir().join(format!("criu-probe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join("sk");
    let _ = std::fs::remove_file(&path);
    let s = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| format!("socket: {e}"))?;
    let res = UnixAddr::new(&path)
        .and_then(|a| bind(s.as_raw_fd(), &a))
        .map_err(|e| format!("bind {}: {e}", path.display()))
        .and_then(|()| probe::unix_socket_file(s.as_fd()).map_err(|e| e.to_string()))
        .and_then(|f| {
            // The fd must be the socket file we bound.
            let via_fd = std::fs::metadata(format!("/proc/self/fd/{}", f.as_raw_fd()))
                .map_err(|e| e.to_string())?;
            let on_disk = std::fs::metadata(&path).map_err(|e| e.to_string())?;
            if (via_fd.dev(), via_fd.ino()) == (on_disk.dev(), on_disk.ino()) {
                Ok(None)
            } else {
                Err("SIOCUNIXFILE returned another file".into())
            }
        });
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_dir(&dir);
    res
}

fn move_mount_set_group(_: &mut KernelFeatures) -> Outcome {
    use std::os::unix::ffi::OsStrExt;
    let dir = std::env::temp_dir().join(format!("criu-probe-mnt-{}", std::process::id()));
    let (a, b) = (dir.join("a"), dir.join("b"));
    let mk = |p: &std::path::Path| {
        std::fs::create_dir_all(p).map_err(|e| format!("{}: {e}", p.display()))
    };
    let cs = |p: &std::path::Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(|e| e.to_string())
    };
    let res = mk(&a)
        .and_then(|()| mk(&b))
        .and_then(|()| Ok((cs(&a)?, cs(&b)?)))
        .and_then(|(ca, cb)| {
            probe::move_mount_set_group_in_child(&ca, &cb).map_err(|e| e.to_string())
        });
    let _ = std::fs::remove_dir(&a);
    let _ = std::fs::remove_dir(&b);
    let _ = std::fs::remove_dir(&dir);
    res.map(|()| None)
}

fn tcp_half_closed(_: &mut KernelFeatures) -> Outcome {
    use std::net::{Shutdown, TcpListener, TcpStream};
    let srv = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind 127.0.0.1: {e}"))?;
    let addr = srv.local_addr().map_err(|e| e.to_string())?;
    let cli = TcpStream::connect(addr).map_err(|e| format!("connect to {addr}: {e}"))?;
    // Keep the accepted end open so the connection is half-closed, not reset.
    let _acc = srv.accept().map_err(|e| format!("accept: {e}"))?;
    cli.shutdown(Shutdown::Write)
        .map_err(|e| format!("shutdown: {e}"))?;
    probe::setsockopt_int(cli.as_fd(), libc::SOL_TCP, libc::TCP_REPAIR, 1)
        .map_err(|e| e.to_string())?;
    Ok(None)
}

fn sockopt_buf_lock(_: &mut KernelFeatures) -> Outcome {
    let s = unix_socket()?;
    probe::setsockopt_int(s.as_fd(), libc::SOL_SOCKET, kabi::SO_BUF_LOCK, 0)
        .map_err(|e| e.to_string())?;
    Ok(None)
}

fn tcp_repair(_: &mut KernelFeatures) -> Outcome {
    let s = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| format!("socket: {e}"))?;
    probe::setsockopt_int(s.as_fd(), libc::SOL_TCP, libc::TCP_REPAIR, 1)
        .map_err(|e| e.to_string())?;
    let mut w = [0u8; 20];
    probe::getsockopt_buf(s.as_fd(), libc::SOL_TCP, libc::TCP_REPAIR_WINDOW, &mut w)
        .map_err(|e| e.to_string())?;
    Ok(None)
}

fn posix_timers(_: &mut KernelFeatures) -> Outcome {
    std::fs::read("/proc/self/timers").map_err(|e| format!("/proc/self/timers: {e}"))?;
    Ok(None)
}

fn bpf(kf: &mut KernelFeatures) -> Outcome {
    probe::bpf_map_create_array().map_err(|e| e.to_string())?;
    probe::bpf_prog_load_trivial().map_err(|e| e.to_string())?;
    kf.bpf = true;
    Ok(None)
}

fn rseq(_: &mut KernelFeatures) -> Outcome {
    if probe::rseq_exists().map_err(|e| e.to_string())? {
        Ok(None)
    } else {
        Err("rseq returned ENOSYS".into())
    }
}
