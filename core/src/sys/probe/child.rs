//! Probes that need another process: a forked child that sets something up and waits, or
//! one that tries a call whose effect must not touch us. Children are always killed (if
//! still running) and reaped by pid before the probe returns.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::unistd::Pid;

use super::{ProbeError, Result, err};
use crate::sys::kabi;
use crate::sys::ptrace::{self, Options};

/// What the waiting child sets up before it reports ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildSetup {
    /// Nothing: it just sleeps.
    Idle,
    /// Installs a one-instruction allow-all seccomp filter.
    SeccompAllowAll,
}

/// Kills and reaps a child by pid when dropped.
#[derive(Debug)]
struct Reaper(i32);

impl Reaper {
    /// Waits for the child to exit by itself; returns its exit code (or 128+signal).
    fn wait_exit(self) -> Result<i32> {
        let pid = self.0;
        std::mem::forget(self);
        let mut st = 0;
        loop {
            // SAFETY: waiting for our own child.
            let r = unsafe { libc::waitpid(pid, &mut st, libc::__WALL) };
            if r == pid {
                break;
            }
            if Errno::last() != Errno::EINTR {
                return Err(err("waitpid"));
            }
        }
        if libc::WIFEXITED(st) {
            Ok(libc::WEXITSTATUS(st))
        } else {
            Ok(128 + libc::WTERMSIG(st))
        }
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        // SAFETY: kill + reap of our own child by pid.
        unsafe {
            libc::kill(self.0, libc::SIGKILL);
            libc::waitpid(self.0, std::ptr::null_mut(), libc::__WALL);
        }
    }
}

/// Exits the forked child with `code` without running any destructor or atexit handler.
fn child_exit(code: i32) -> ! {
    // SAFETY: _exit is async-signal-safe and never returns.
    unsafe { libc::_exit(code) }
}

/// Exits with 0 if `r >= 0`, else with the errno (always 1..=255).
fn child_exit_result(r: libc::c_long) -> ! {
    if r >= 0 {
        child_exit(0)
    }
    child_exit(Errno::last() as i32 & 0xff)
}

/// The descriptor number a kept fd gets in a probe child.
const KEPT_FD: i32 = 3;

/// Forks; in the child closes every descriptor from 3 up (so the child pins none of the
/// caller's pipes or sockets), except `keep`, which becomes fd [`KEPT_FD`]; then runs `body`
/// (which must only make async-signal-safe calls; it normally ends with `child_exit`, else
/// the child exits with 127). Returns the child's reaper in the parent.
fn fork_child(keep: Option<i32>, body: impl FnOnce()) -> Result<Reaper> {
    // SAFETY: the child runs only raw syscalls, `body` (same rule) and _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(err("fork"));
    }
    if pid == 0 {
        // SAFETY: raw dup2/close_range in the child.
        unsafe {
            let first = match keep {
                Some(fd) => {
                    if fd != KEPT_FD && libc::dup2(fd, KEPT_FD) < 0 {
                        child_exit(126);
                    }
                    KEPT_FD + 1
                }
                None => KEPT_FD,
            };
            libc::syscall(libc::SYS_close_range, first as u32, u32::MAX, 0u32);
        }
        body();
        child_exit(127);
    }
    Ok(Reaper(pid))
}

/// Interprets a probe child's exit code: 0 = the call worked, else the errno it got.
fn code_to_result(call: &'static str, code: i32) -> Result<()> {
    if code == 0 {
        Ok(())
    } else {
        Err(ProbeError {
            call,
            errno: Errno::from_raw(code),
        })
    }
}

/// Forks a child with `setup`, freezes it with `PTRACE_SEIZE(options)` + `PTRACE_INTERRUPT`,
/// runs `f(pid)`, then kills and reaps it. A failing freeze is reported as "ptrace".
pub fn with_frozen_child<T>(
    setup: ChildSetup,
    options: Options,
    f: impl FnOnce(Pid) -> T,
) -> Result<T> {
    let mut fds = [0; 2];
    // SAFETY: fds has room for two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(err("pipe2"));
    }
    // SAFETY: both descriptors are fresh and ours.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let child = fork_child(Some(wr.as_raw_fd()), move || {
        if setup == ChildSetup::SeccompAllowAll {
            let filter = [libc::sock_filter {
                code: (libc::BPF_RET | libc::BPF_K) as u16,
                jt: 0,
                jf: 0,
                k: libc::SECCOMP_RET_ALLOW,
            }];
            let prog = libc::sock_fprog {
                len: 1,
                filter: filter.as_ptr() as *mut libc::sock_filter,
            };
            // SAFETY: raw prctl calls with a valid filter program.
            let r = unsafe {
                libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
                libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &prog as *const libc::sock_fprog,
                )
            };
            if r < 0 {
                child_exit_result(-1);
            }
        }
        // SAFETY: write one byte to the inherited pipe, then sleep until killed.
        unsafe {
            libc::write(KEPT_FD, b"r".as_ptr().cast(), 1);
            loop {
                libc::pause();
            }
        }
    })?;
    drop(wr);
    let mut b = [0u8; 1];
    // SAFETY: reading one byte into b.
    let n = unsafe { libc::read(rd.as_raw_fd(), b.as_mut_ptr().cast(), 1) };
    if n != 1 {
        let code = child.wait_exit()?;
        return Err(ProbeError {
            call: "probe child setup",
            errno: Errno::from_raw(code),
        });
    }
    let pid = Pid::from_raw(child.0);
    ptrace::freeze(pid, options).map_err(|e| ProbeError {
        call: "ptrace(PTRACE_SEIZE/PTRACE_INTERRUPT)",
        errno: e.errno().unwrap_or(Errno::ESRCH),
    })?;
    let out = f(pid);
    drop(child);
    Ok(out)
}

/// In a forked child: unmaps the vDSO area `[start, end)` (vvar..vdso), then calls
/// `arch_prctl(ARCH_MAP_VDSO_64, start)`. Ok if the kernel mapped a new vDSO.
pub fn map_vdso_in_child(start: u64, end: u64) -> Result<()> {
    let child = fork_child(None, move || {
        // SAFETY: raw syscalls only; after the munmap the vDSO must not be used, and is not.
        let r = unsafe {
            libc::syscall(libc::SYS_munmap, start, end - start);
            libc::syscall(libc::SYS_arch_prctl, kabi::ARCH_MAP_VDSO_64, start)
        };
        child_exit_result(r)
    })?;
    code_to_result("arch_prctl(ARCH_MAP_VDSO_64)", child.wait_exit()?)
}

/// In a forked child: `unshare(flags)` (e.g. CLONE_NEWTIME). Ok if it worked.
pub fn unshare_in_child(flags: libc::c_int) -> Result<()> {
    let child = fork_child(None, move || {
        // SAFETY: raw syscall.
        let r = unsafe { libc::syscall(libc::SYS_unshare, flags) };
        child_exit_result(r)
    })?;
    code_to_result("unshare", child.wait_exit()?)
}

/// In a forked child: block SIGUSR1 and queue it to itself with `rt_sigqueueinfo` and a
/// positive si_code (what restoring a pending kernel-sent signal needs). Ok if accepted.
pub fn sigqueueinfo_in_child() -> Result<()> {
    let child = fork_child(None, || {
        let mask: u64 = 1 << (libc::SIGUSR1 - 1);
        let mut info = [0u8; 128];
        info[0..4].copy_from_slice(&libc::SIGUSR1.to_ne_bytes());
        info[8..12].copy_from_slice(&1i32.to_ne_bytes());
        // SAFETY: raw syscalls with valid pointers to local buffers.
        let r = unsafe {
            libc::syscall(
                libc::SYS_rt_sigprocmask,
                libc::SIG_BLOCK,
                &mask as *const u64,
                std::ptr::null_mut::<u64>(),
                8,
            );
            let me = libc::syscall(libc::SYS_getpid);
            libc::syscall(libc::SYS_rt_sigqueueinfo, me, libc::SIGUSR1, info.as_ptr())
        };
        child_exit_result(r)
    })?;
    code_to_result("rt_sigqueueinfo", child.wait_exit()?)
}

/// In a forked child with its own mount namespace: mounts tmpfs on `shared`, bind-mounts it
/// on `other` (the kernel wants one superblock and a private target), makes `shared` shared,
/// then `move_mount(shared, other, MOVE_MOUNT_SET_GROUP)`. Both must be
/// existing empty directories; the mounts vanish with the child's namespace.
pub fn move_mount_set_group_in_child(
    shared: &std::ffi::CStr,
    other: &std::ffi::CStr,
) -> Result<()> {
    let (a, b) = (shared.as_ptr(), other.as_ptr());
    let child = fork_child(None, move || {
        let none = c"none".as_ptr();
        let tmpfs = c"tmpfs".as_ptr();
        let root = c"/".as_ptr();
        // SAFETY: raw syscalls on C strings that outlive the child's use of them.
        let r = unsafe {
            if libc::unshare(libc::CLONE_NEWNS) < 0
                || libc::mount(
                    none,
                    root,
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) < 0
                || libc::mount(none, a, tmpfs, 0, std::ptr::null()) < 0
                || libc::mount(a, b, std::ptr::null(), libc::MS_BIND, std::ptr::null()) < 0
                || libc::mount(none, a, std::ptr::null(), libc::MS_SHARED, std::ptr::null()) < 0
            {
                child_exit(125);
            }
            libc::syscall(
                libc::SYS_move_mount,
                libc::AT_FDCWD,
                a,
                libc::AT_FDCWD,
                b,
                kabi::MOVE_MOUNT_SET_GROUP,
            )
        };
        child_exit_result(r)
    })?;
    match child.wait_exit()? {
        125 => Err(ProbeError {
            call: "mount setup in a new mount namespace",
            errno: Errno::EPERM,
        }),
        code => code_to_result("move_mount(MOVE_MOUNT_SET_GROUP)", code),
    }
}
