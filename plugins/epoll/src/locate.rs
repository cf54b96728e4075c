//! Finding the file behind a registration: the kernel keeps a registration on the target's
//! open file description after its fd number was closed (another fd, or another task, still
//! holds it) or reused for another file. The holder is found among the tree's fds, those
//! with the target's inode first, by `kcmp(KCMP_EPOLL_TFD)`.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;

use criu_plugin_api::{DumpContext, FdDesc, PluginError};

use crate::fdinfo::Registration;
use crate::sys as kcmp;

/// Where a registration's target lives: fd `fd` of task `pid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Holder {
    pub pid: i32,
    pub fd: i32,
}

/// Each task's fds with their inode numbers, listed once per epoll dump.
#[derive(Debug, Default)]
pub(crate) struct FdLists {
    by_pid: HashMap<i32, Vec<(i32, u64)>>,
}

impl FdLists {
    /// The fds of `pid` and the inode each names (`stat` through `/proc/PID/fd/N`).
    fn of(&mut self, pid: i32) -> &[(i32, u64)] {
        self.by_pid.entry(pid).or_insert_with(|| {
            let dir = format!("/proc/{pid}/fd");
            let mut v: Vec<(i32, u64)> = std::fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| {
                    let fd = e.file_name().to_str()?.parse().ok()?;
                    let ino = std::fs::metadata(e.path()).ok()?.ino();
                    Some((fd, ino))
                })
                .collect();
            v.sort_unstable();
            v
        })
    }
}

fn kcmp_err(
    fd: &FdDesc,
    r: &Registration,
    pid: i32,
    cand: i32,
    e: nix::errno::Errno,
) -> PluginError {
    PluginError::Task {
        pid,
        op: format!(
            "kcmp(KCMP_EPOLL_TFD) of fd {cand} against target fd {} of epoll fd {} of pid {}",
            r.tfd, fd.fd, fd.pid
        ),
        source: Box::new(std::io::Error::from(e)),
    }
}

/// The holder of registration `r` of the epoll `fd`: the epoll's own task at number
/// `r.tfd` when it is still the target, else any fd of the tree's tasks (the epoll's task
/// first) that is the target. `None`: no task of the tree holds it as an fd (it is in flight
/// inside a socket's queue, or held outside the tree).
pub(crate) fn holder(
    ctx: &mut dyn DumpContext,
    fd: &FdDesc,
    r: &Registration,
    lists: &mut FdLists,
) -> Result<Option<Holder>, PluginError> {
    use std::os::fd::AsRawFd;
    let own = fd.file().as_raw_fd();
    let test = |pid: i32, cand: i32| {
        kcmp::is_target(pid, cand, own, r.tfd, r.toff).map_err(|e| kcmp_err(fd, r, pid, cand, e))
    };
    if !fd.is_in_flight() && test(fd.pid, r.tfd)? {
        return Ok(Some(Holder {
            pid: fd.pid,
            fd: r.tfd,
        }));
    }
    let mut pids = vec![fd.pid];
    pids.extend(
        ctx.tasks()
            .into_iter()
            .map(|t| t.pid)
            .filter(|&p| p != fd.pid),
    );
    for pid in pids {
        let cands: Vec<i32> = lists
            .of(pid)
            .iter()
            .filter(|(_, ino)| r.ino.is_none_or(|want| want == *ino))
            .map(|&(n, _)| n)
            .collect();
        for cand in cands {
            if test(pid, cand)? {
                return Ok(Some(Holder { pid, fd: cand }));
            }
        }
    }
    Ok(None)
}
