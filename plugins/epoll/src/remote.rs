//! Adding registrations inside a restored task with remote system calls, the task's fd
//! table left as it was: a target the task holds under another number, or not at all, is
//! put at the registration's number only for the `epoll_ctl` (what was at that number moved
//! aside and put back, close-on-exec included), and anything criu lent is closed again.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};

use criu_plugin_api::{PluginError, RestoreContext, TaskIds};

use crate::restore::{Add, Via, event_bytes};

const PAGE: u64 = 4096;

/// The raw result of a remote syscall as a `Result` naming what was done.
fn check(pid: i32, what: String, r: i64) -> Result<u64, PluginError> {
    if (-4095..0).contains(&r) {
        return Err(PluginError::Task {
            pid,
            op: what,
            source: Box::new(std::io::Error::from_raw_os_error(-r as i32)),
        });
    }
    Ok(r as u64)
}

/// One restored task under remote control.
struct Task<'c> {
    ctx: &'c mut dyn RestoreContext,
    pid: i32,
    tid: i32,
    /// The next fd number above everything the task holds, for fds criu lends it.
    next_free: i32,
}

impl Task<'_> {
    fn call(
        &mut self,
        nr: i64,
        args: [u64; 6],
        what: impl FnOnce() -> String,
    ) -> Result<u64, PluginError> {
        let r = self.ctx.remote_syscall(self.tid, nr, args)?;
        check(self.pid, what(), r)
    }

    /// Installs `fd` (criu's) in the task at a number of its own; returns that number.
    fn lend(&mut self, fd: &OwnedFd) -> Result<i32, PluginError> {
        let n = self.next_free;
        self.ctx.install_fd(self.pid, fd.as_fd(), n, true)?;
        self.next_free += 1;
        Ok(n)
    }

    fn close(&mut self, fd: i32) -> Result<(), PluginError> {
        self.call(libc::SYS_close, [fd as u64, 0, 0, 0, 0, 0], || {
            format!("remote close of fd {fd}")
        })
        .map(drop)
    }

    fn dup3(&mut self, from: i32, to: i32, flags: i32) -> Result<(), PluginError> {
        self.call(
            libc::SYS_dup3,
            [from as u64, to as u64, flags as u64, 0, 0, 0],
            || format!("remote dup3({from}, {to})"),
        )
        .map(drop)
    }

    /// `EPOLL_CTL_ADD` of fd `tfd` to `epfd` with the event at `page`.
    fn ctl_add(&mut self, a: &Add, epfd: i32, page: u64) -> Result<(), PluginError> {
        self.ctx
            .write_task_memory(self.pid, page, &event_bytes(a.events, a.data))?;
        let args = [
            epfd as u64,
            libc::EPOLL_CTL_ADD as u64,
            a.tfd as u64,
            page,
            0,
            0,
        ];
        self.call(libc::SYS_epoll_ctl, args, || {
            format!(
                "remote epoll_ctl(EPOLL_CTL_ADD) of target fd {} (file id {}, events {:#x}) to \
                 epoll fd {epfd} (file id {})",
                a.tfd, a.target_id, a.events, a.epoll_id
            )
        })
        .map(drop)
    }

    /// Puts fd `src` at number `a.tfd` for the `epoll_ctl`, then gives `a.tfd` back to what
    /// held it (or frees it).
    fn add_displaced(
        &mut self,
        a: &Add,
        epfd: i32,
        src: i32,
        page: u64,
    ) -> Result<(), PluginError> {
        let tfd = a.tfd;
        let flags = self.ctx.remote_syscall(
            self.tid,
            libc::SYS_fcntl,
            [tfd as u64, libc::F_GETFD as u64, 0, 0, 0, 0],
        )?;
        let saved = if flags >= 0 {
            let min = self.next_free as u64;
            let args = [tfd as u64, libc::F_DUPFD_CLOEXEC as u64, min, 0, 0, 0];
            let s = self.call(libc::SYS_fcntl, args, || {
                format!("remote fcntl(F_DUPFD) moving fd {tfd} aside")
            })? as i32;
            Some((s, flags as i32 & libc::FD_CLOEXEC != 0))
        } else {
            None
        };
        self.dup3(src, tfd, 0)?;
        self.ctl_add(a, epfd, page)?;
        match saved {
            Some((s, cloexec)) => {
                self.dup3(s, tfd, if cloexec { libc::O_CLOEXEC } else { 0 })?;
                self.close(s)
            }
            None => self.close(tfd),
        }
    }
}

/// An fd number to lend the task criu names `pid` files at: above every fd it holds now, and above the two
/// numbers the core's `install_fd` itself takes for a moment (its pidfd and the fetched fd
/// land on the lowest free numbers; a target equal to one of them would be closed again).
fn first_free(pid: i32) -> Result<i32, PluginError> {
    let dir = format!("/proc/{pid}/fd");
    let rd = std::fs::read_dir(&dir).map_err(|e| PluginError::Path {
        path: dir.clone().into(),
        op: "read_dir",
        source: e,
    })?;
    let max = rd
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .max()
        .unwrap_or(-1);
    Ok(max + 3)
}

/// `adds` in `task`: a scratch page for the `epoll_event`, the calls, the page unmapped
/// again (also on failure). `lend` gives criu's duplicate of a file id (a target or an
/// epoll the task does not hold).
pub(crate) fn run_in_task(
    ctx: &mut dyn RestoreContext,
    task: &TaskIds,
    adds: &[Add],
    lend: &mut dyn FnMut(&mut dyn RestoreContext, u32) -> Result<OwnedFd, PluginError>,
) -> Result<(), PluginError> {
    let pid = task.pid;
    let tid = task.tids.first().copied().unwrap_or(pid);
    // Criu reads the task's fd table by the pid it has in criu's namespace.
    let host = ctx.host_pid(pid).ok_or_else(|| PluginError::Unavailable {
        service: "host_pid",
        why: format!("no pid in criu's namespace for restored task {pid}"),
    })?;
    let next_free = first_free(host)?;
    let mut t = Task {
        ctx,
        pid,
        tid,
        next_free,
    };
    let prot = (libc::PROT_READ | libc::PROT_WRITE) as u64;
    let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
    let page = t.call(libc::SYS_mmap, [0, PAGE, prot, flags, u64::MAX, 0], || {
        "remote mmap of a scratch page for epoll_ctl".into()
    })?;
    let mut lent_epolls: HashMap<u32, i32> = HashMap::new();
    let mut result = Ok(());
    for a in adds {
        result = add_one(&mut t, a, page, &mut lent_epolls, lend);
        if result.is_err() {
            break;
        }
        tracing::debug!(pid, tfd = a.tfd, via = ?a.via, events = a.events, "epoll target added");
    }
    for (_, n) in lent_epolls {
        if result.is_ok() {
            result = t.close(n);
        }
    }
    let r = t
        .ctx
        .remote_syscall(tid, libc::SYS_munmap, [page, PAGE, 0, 0, 0, 0]);
    result?;
    check(pid, "remote munmap of the scratch page".into(), r?).map(drop)
}

fn add_one(
    t: &mut Task<'_>,
    a: &Add,
    page: u64,
    lent_epolls: &mut HashMap<u32, i32>,
    lend: &mut dyn FnMut(&mut dyn RestoreContext, u32) -> Result<OwnedFd, PluginError>,
) -> Result<(), PluginError> {
    let epfd = match (a.epfd, lent_epolls.get(&a.epoll_id)) {
        (Some(n), _) | (None, Some(&n)) => n,
        (None, None) => {
            let fd = lend(&mut *t.ctx, a.epoll_id)?;
            let n = t.lend(&fd)?;
            lent_epolls.insert(a.epoll_id, n);
            n
        }
    };
    match a.via {
        Via::Direct => t.ctl_add(a, epfd, page),
        Via::Dup(src) => t.add_displaced(a, epfd, src, page),
        Via::Lend => {
            let fd = lend(&mut *t.ctx, a.target_id)?;
            let n = t.lend(&fd)?;
            let r = t.add_displaced(a, epfd, n, page);
            let c = t.close(n);
            r.and(c)
        }
    }
}
