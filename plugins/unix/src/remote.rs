//! System calls run inside a restored task on behalf of the unix restore, so that the
//! kernel records that task (and the effective ids it had) as a socket's peer: the task is
//! stopped under the restorer, still with criu's credentials, which are switched to the
//! recorded effective ids for the one call that records them and switched back.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use criu_plugin_api::{PluginError, RestoreContext};
use nix::errno::Errno;

use crate::peercred::Cred;

/// One page of scratch memory for addresses and results.
const PAGE: u64 = 4096;

/// A restored task and a scratch page mapped in it; [`Task::done`] unmaps the page.
pub(crate) struct Task<'a> {
    ctx: &'a mut dyn RestoreContext,
    pid: i32,
    page: u64,
}

impl<'a> Task<'a> {
    /// Maps a scratch page in restored task `pid`.
    pub(crate) fn open(ctx: &'a mut dyn RestoreContext, pid: i32) -> Result<Self, PluginError> {
        let mut t = Task { ctx, pid, page: 0 };
        let prot = (libc::PROT_READ | libc::PROT_WRITE) as u64;
        let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
        t.page = t.sys("mmap", libc::SYS_mmap, [0, PAGE, prot, flags, u64::MAX, 0])?;
        Ok(t)
    }

    /// Unmaps the scratch page.
    pub(crate) fn done(mut self) -> Result<(), PluginError> {
        let page = self.page;
        self.sys("munmap", libc::SYS_munmap, [page, PAGE, 0, 0, 0, 0])
            .map(|_| ())
    }

    /// Runs `nr(args)` in the task; `-errno` is an error naming the call and the task.
    fn sys(&mut self, name: &str, nr: i64, args: [u64; 6]) -> Result<u64, PluginError> {
        let r = self.ctx.remote_syscall(self.pid, nr, args)?;
        if (-4095..0).contains(&r) {
            return Err(PluginError::Task {
                pid: self.pid,
                op: format!("remote {name} (unix socket peer credentials)"),
                source: Box::new(Errno::from_raw(-r as i32)),
            });
        }
        Ok(r as u64)
    }

    fn close(&mut self, fd: u64) {
        let _ = self.sys("close", libc::SYS_close, [fd, 0, 0, 0, 0, 0]);
    }

    /// Runs `op` with the task's effective uid and gid switched to `cred`'s, then puts
    /// back the ones it had (criu's: the task's own come last in the restore). Root with
    /// a nonzero effective uid keeps its permitted capabilities, so the switch back works.
    fn as_cred<T>(
        &mut self,
        cred: Cred,
        op: impl FnOnce(&mut Self) -> Result<T, PluginError>,
    ) -> Result<T, PluginError> {
        let keep = u64::MAX; // -1: leave that id as it is
        let euid = self.sys("geteuid", libc::SYS_geteuid, [0; 6])?;
        let egid = self.sys("getegid", libc::SYS_getegid, [0; 6])?;
        self.sys(
            "setresgid",
            libc::SYS_setresgid,
            [keep, u64::from(cred.gid), keep, 0, 0, 0],
        )?;
        if let Err(e) = self.sys(
            "setresuid",
            libc::SYS_setresuid,
            [keep, u64::from(cred.uid), keep, 0, 0, 0],
        ) {
            let _ = self.sys(
                "setresgid",
                libc::SYS_setresgid,
                [keep, egid, keep, 0, 0, 0],
            );
            return Err(e);
        }
        let r = op(self);
        let back = self
            .sys(
                "setresuid",
                libc::SYS_setresuid,
                [keep, euid, keep, 0, 0, 0],
            )
            .and_then(|_| {
                self.sys(
                    "setresgid",
                    libc::SYS_setresgid,
                    [keep, egid, keep, 0, 0, 0],
                )
            });
        match (r, back) {
            (Ok(v), Ok(_)) => Ok(v),
            (Err(e), _) | (Ok(_), Err(e)) => Err(e),
        }
    }

    /// Takes the task's fd `fd` into criu and closes it in the task.
    fn take(&mut self, fd: u64) -> Result<OwnedFd, PluginError> {
        let got = self.ctx.dup_task_fd(self.pid, fd as i32);
        self.close(fd);
        got
    }

    /// Takes the task's fd `fd` into criu and closes it in the task.
    pub(crate) fn take_raw(&mut self, fd: u64) -> Result<OwnedFd, PluginError> {
        self.take(fd)
    }

    /// Puts the task's fd `raw` also at number `fd` (`dup3`), close-on-exec as asked.
    pub(crate) fn place(&mut self, raw: u64, fd: i32, cloexec: bool) -> Result<(), PluginError> {
        let flags = if cloexec { libc::O_CLOEXEC as u64 } else { 0 };
        self.sys("dup3", libc::SYS_dup3, [raw, fd as u64, flags, 0, 0, 0])
            .map(|_| ())
    }

    /// `socketpair(AF_UNIX, ty)` for each of `types`, made by the task as `cred` (one
    /// switch of ids for all): both ends of each, as fd numbers of the task. On failure
    /// the pairs made so far are closed.
    pub(crate) fn socketpairs(
        &mut self,
        types: &[i32],
        cred: Cred,
    ) -> Result<Vec<(u64, u64)>, PluginError> {
        let page = self.page;
        let per_page = (PAGE / 8) as usize;
        let mut out = Vec::with_capacity(types.len());
        for chunk in types.chunks(per_page) {
            let mut made = 0usize;
            let r = self.as_cred(cred, |t| {
                for (i, &ty) in chunk.iter().enumerate() {
                    let ty = (ty | libc::SOCK_CLOEXEC) as u64;
                    let at = page + 8 * i as u64;
                    t.sys(
                        "socketpair",
                        libc::SYS_socketpair,
                        [libc::AF_UNIX as u64, ty, 0, at, 0, 0],
                    )?;
                    made += 1;
                }
                Ok(())
            });
            let mut sv = vec![0u8; 8 * made];
            let read = self.ctx.read_task_memory(self.pid, page, &mut sv);
            let pairs = sv.chunks_exact(8).map(|p| {
                let a = u32::from_ne_bytes([p[0], p[1], p[2], p[3]]);
                let b = u32::from_ne_bytes([p[4], p[5], p[6], p[7]]);
                (u64::from(a), u64::from(b))
            });
            out.extend(pairs);
            if let Err(e) = r.and(read) {
                for (a, b) in out {
                    self.close(a);
                    self.close(b);
                }
                return Err(e);
            }
        }
        Ok(out)
    }

    /// A new socket of type `ty` connected by the task, as `cred`, to `addr` (raw
    /// `sockaddr_un` bytes): now criu's.
    pub(crate) fn connect(
        &mut self,
        ty: i32,
        addr: &[u8],
        cred: Cred,
    ) -> Result<OwnedFd, PluginError> {
        let page = self.page;
        self.ctx.write_task_memory(self.pid, page, addr)?;
        let ty = (ty | libc::SOCK_CLOEXEC) as u64;
        let fd = self.sys(
            "socket",
            libc::SYS_socket,
            [libc::AF_UNIX as u64, ty, 0, 0, 0, 0],
        )?;
        let len = addr.len() as u64;
        let r = self.as_cred(cred, |t| {
            t.sys("connect", libc::SYS_connect, [fd, page, len, 0, 0, 0])
        });
        match r {
            Ok(_) => self.take(fd),
            Err(e) => {
                self.close(fd);
                Err(e)
            }
        }
    }

    /// `listen(sock, backlog)` called by the task as `cred` on criu's socket `sock`
    /// (brought into the task for the call: `pidfd_getfd` from criu).
    pub(crate) fn listen(
        &mut self,
        sock: BorrowedFd<'_>,
        backlog: i32,
        cred: Cred,
    ) -> Result<(), PluginError> {
        let me = u64::from(std::process::id());
        let pidfd = self.sys("pidfd_open", libc::SYS_pidfd_open, [me, 0, 0, 0, 0, 0])?;
        let fd = self.sys(
            "pidfd_getfd",
            libc::SYS_pidfd_getfd,
            [pidfd, sock.as_raw_fd() as u64, 0, 0, 0, 0],
        );
        self.close(pidfd);
        let fd = fd?;
        let r = self.as_cred(cred, |t| {
            t.sys("listen", libc::SYS_listen, [fd, backlog as u64, 0, 0, 0, 0])
        });
        self.close(fd);
        r.map(|_| ())
    }
}

/// The raw `sockaddr_un` for `name` (abstract when it starts with a NUL byte), `None` when
/// it does not fit `sun_path`.
pub(crate) fn sockaddr(name: &[u8]) -> Option<Vec<u8>> {
    const SUN_PATH: usize = 108;
    let abstract_name = name.first() == Some(&0);
    if name.is_empty() || name.len() + usize::from(!abstract_name) > SUN_PATH {
        return None;
    }
    let mut out = (libc::AF_UNIX as u16).to_ne_bytes().to_vec();
    out.extend_from_slice(name);
    if !abstract_name {
        out.push(0);
    }
    Some(out)
}
