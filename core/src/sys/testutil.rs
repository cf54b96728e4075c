//! Test children for the real-kernel tests of the sys layer. Each child is killed and reaped
//! by pid when its guard drops, pass or fail.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::unistd::Pid;

static USR1_SEEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Handler the looping child installs for SIGUSR1 (its address is what remote rt_sigaction
/// must report back). Not inlinable and not empty: an optimised build may otherwise give
/// each codegen unit its own copy, and the addresses taken in two places would differ.
#[inline(never)]
extern "C" fn usr1_handler(_: libc::c_int) {
    USR1_SEEN.store(true, std::sync::atomic::Ordering::Relaxed);
}

pub fn usr1_handler_addr() -> u64 {
    usr1_handler as *const () as usize as u64
}

/// In a forked child: moves `fds` to 3, 4, ... and closes every other descriptor from 3 up.
/// Returns the new numbers. Raw syscalls only.
fn keep_fds<const N: usize>(fds: &[i32; N]) -> [i32; N] {
    let mut high = [0; N];
    let mut out = [0; N];
    // SAFETY: raw fcntl/dup2/close_range on descriptors of this (forked) process.
    unsafe {
        for (i, fd) in fds.iter().enumerate() {
            high[i] = libc::fcntl(*fd, libc::F_DUPFD, 100);
        }
        for (i, fd) in high.iter().enumerate() {
            out[i] = 3 + i as i32;
            libc::dup2(*fd, out[i]);
        }
        libc::syscall(libc::SYS_close_range, 3 + N as u32, u32::MAX, 0u32);
    }
    out
}

/// Second thread of a threaded looper: writes 't' to the pipe every millisecond.
extern "C" fn thread_loop(arg: *mut libc::c_void) -> *mut libc::c_void {
    let fd = arg as usize as i32;
    let ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 1_000_000,
    };
    loop {
        // SAFETY: raw write/nanosleep on an inherited fd.
        unsafe {
            libc::write(fd, b"t".as_ptr().cast(), 1);
            libc::nanosleep(&ts, std::ptr::null_mut());
        }
    }
}

/// A forked child that installs a SIGUSR1 handler (SA_RESTART, mask {SIGUSR2}), then loops
/// writing one byte to a pipe and sleeping 1 ms.
#[derive(Debug)]
pub struct Looper {
    pub pid: Pid,
    pub rd: OwnedFd,
    /// Set when a test reaped the child itself (so Drop must not signal a reused pid).
    pub reaped: bool,
}

impl Looper {
    pub fn spawn() -> Looper {
        Self::spawn_with(false)
    }

    /// Like [`Looper::spawn`], plus a second thread that loops the same way.
    pub fn spawn_threaded() -> Looper {
        Self::spawn_with(true)
    }

    /// The child's thread ids (leader first).
    pub fn tids(&self) -> Vec<Pid> {
        let mut v: Vec<i32> = std::fs::read_dir(format!("/proc/{}/task", self.pid))
            .expect("task dir")
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        v.sort_by_key(|t| (*t != self.pid.as_raw(), *t));
        v.into_iter().map(Pid::from_raw).collect()
    }

    fn spawn_with(threaded: bool) -> Looper {
        let mut fds = [0; 2];
        // SAFETY: fds has room for two descriptors.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: the child only makes async-signal-safe libc calls and never returns.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            // SAFETY: child side of fork: raw syscalls only, then _exit on any failure.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = usr1_handler as *const () as usize;
                sa.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut sa.sa_mask);
                libc::sigaddset(&mut sa.sa_mask, libc::SIGUSR2);
                if libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()) != 0 {
                    libc::_exit(2);
                }
                // Keep only the pipe (as fd 3): other tests' pipes must not stay open here.
                let wr = keep_fds(&[fds[1]]);
                let fds = [-1, wr[0]];
                if threaded {
                    let mut th: libc::pthread_t = 0;
                    let arg = fds[1] as usize as *mut libc::c_void;
                    if libc::pthread_create(&mut th, std::ptr::null(), thread_loop, arg) != 0 {
                        libc::_exit(4);
                    }
                }
                let ts = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 1_000_000,
                };
                loop {
                    if libc::write(fds[1], b"x".as_ptr().cast(), 1) != 1 {
                        libc::_exit(3);
                    }
                    libc::nanosleep(&ts, std::ptr::null_mut());
                }
            }
        }
        // SAFETY: both fds are ours; the write end is closed in the parent.
        unsafe { libc::close(fds[1]) };
        // SAFETY: fds[0] is an open descriptor nobody else owns.
        let rd = unsafe { OwnedFd::from_raw_fd(fds[0]) };
        let me = Looper {
            pid: Pid::from_raw(pid),
            rd,
            reaped: false,
        };
        // Wait for the first byte: the handler is installed by then.
        assert!(me.wait_output(Duration::from_secs(5)), "child never wrote");
        me
    }

    /// Drains the pipe, then waits up to `timeout` for a fresh byte: true if the child is
    /// running its loop.
    pub fn wait_output(&self, timeout: Duration) -> bool {
        self.drain();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let mut pfd = libc::pollfd {
                fd: self.rd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let n = unsafe { libc::poll(&mut pfd, 1, 50) };
            if n > 0 && self.drain() > 0 {
                return true;
            }
        }
        false
    }

    fn drain(&self) -> usize {
        let mut total = 0;
        let mut buf = [0u8; 4096];
        loop {
            // SAFETY: buf is writable; MSG_DONTWAIT-like behaviour via O_NONBLOCK check below.
            let n = unsafe {
                let fl = libc::fcntl(self.rd.as_raw_fd(), libc::F_GETFL);
                libc::fcntl(self.rd.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK);
                libc::read(self.rd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len())
            };
            if n <= 0 {
                return total;
            }
            total += n as usize;
        }
    }
}

impl Drop for Looper {
    fn drop(&mut self) {
        if self.reaped {
            return;
        }
        // SAFETY: plain kill/waitpid on our own child's pid.
        unsafe {
            libc::kill(self.pid.as_raw(), libc::SIGKILL);
            let mut st = 0;
            libc::waitpid(self.pid.as_raw(), &mut st, libc::__WALL);
        }
    }
}

/// A forked child that blocks in read(2) on a pipe and echoes each byte to another pipe:
/// frozen, it sits in an interrupted read (rax = -ERESTARTSYS).
#[derive(Debug)]
pub struct Echo {
    pub pid: Pid,
    pub to_child: OwnedFd,
    pub from_child: OwnedFd,
}

impl Echo {
    pub fn spawn() -> Echo {
        let (mut a, mut b) = ([0; 2], [0; 2]);
        // SAFETY: a and b have room for two descriptors each.
        unsafe {
            assert_eq!(libc::pipe2(a.as_mut_ptr(), libc::O_CLOEXEC), 0);
            assert_eq!(libc::pipe2(b.as_mut_ptr(), libc::O_CLOEXEC), 0);
        }
        // SAFETY: the child only makes raw read/write calls and _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let kept = keep_fds(&[a[0], b[1]]);
            let (a, b) = ([kept[0], -1], [-1, kept[1]]);
            let mut c = [0u8; 1];
            // SAFETY: raw syscalls on inherited descriptors.
            unsafe {
                loop {
                    if libc::read(a[0], c.as_mut_ptr().cast(), 1) != 1 {
                        libc::_exit(5);
                    }
                    if libc::write(b[1], c.as_ptr().cast(), 1) != 1 {
                        libc::_exit(6);
                    }
                }
            }
        }
        // SAFETY: closing the child's ends in the parent and owning ours.
        unsafe {
            libc::close(a[0]);
            libc::close(b[1]);
            Echo {
                pid: Pid::from_raw(pid),
                to_child: OwnedFd::from_raw_fd(a[1]),
                from_child: OwnedFd::from_raw_fd(b[0]),
            }
        }
    }

    /// Sends one byte and waits (up to 5 s) for it to come back.
    pub fn round_trip(&self, byte: u8) -> bool {
        // SAFETY: one-byte write from a valid buffer.
        if unsafe { libc::write(self.to_child.as_raw_fd(), [byte].as_ptr().cast(), 1) } != 1 {
            return false;
        }
        let mut pfd = libc::pollfd {
            fd: self.from_child.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut pfd, 1, 5000) } != 1 {
            return false;
        }
        let mut c = [0u8; 1];
        // SAFETY: one-byte read into c.
        let n = unsafe { libc::read(self.from_child.as_raw_fd(), c.as_mut_ptr().cast(), 1) };
        n == 1 && c[0] == byte
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        // SAFETY: plain kill/waitpid on our own child's pid.
        unsafe {
            libc::kill(self.pid.as_raw(), libc::SIGKILL);
            let mut st = 0;
            libc::waitpid(self.pid.as_raw(), &mut st, libc::__WALL);
        }
    }
}
