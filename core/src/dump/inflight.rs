//! Files in flight (plugin API 0.6, [`DumpContext::dump_file_in_flight`]): open file
//! descriptions that no task holds as an fd but criu does (found in a socket's queued
//! `SCM_RIGHTS`). Each gets a file id at once, shared by `kcmp(KCMP_FILE)` with every
//! description seen so far (tasks' fds and earlier files in flight), and is dumped by its
//! claiming fd handler right after the plugin call that found it returns: handlers never
//! nest, each plugin keeps its state to itself, and a socket carrying itself meets its own
//! id instead of a cycle.

use std::collections::VecDeque;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use criu_plugin_api::{DumpContext, FdDesc, FileStat, MAX_IN_FLIGHT_DEPTH, PluginError};
use nix::unistd::Pid;

use crate::proc::{fdinfo, misc};
use crate::sys::kcmp::{KcmpType, kcmp};

use super::DumpError;
use super::ctx::CoreDumpContext;
use super::files::{self, SeenFd};

/// A file in flight given an id, waiting for its handler.
#[derive(Debug)]
struct Pending {
    desc: FdDesc,
    id: u32,
    /// Its index in the context's `seen_fds` (its entry type is filled in once dumped).
    at: usize,
    /// How many files in flight it sits in (1: carried by a task's resource).
    depth: u32,
}

/// Files in flight of one dump.
#[derive(Debug, Default)]
pub struct InFlight {
    /// criu's copies, kept open for the whole dump: `seen_fds` names them by fd number.
    held: Vec<OwnedFd>,
    pending: VecDeque<Pending>,
    /// Depth of the file in flight being dumped now (0: a task's fd).
    depth: u32,
    /// The pending queue is being worked through (dumps found meanwhile join it).
    draining: bool,
    /// `files.img` is complete: no more files in flight.
    closed: bool,
}

impl InFlight {
    /// `files.img` was written: later requests are refused.
    pub fn close(&mut self) {
        self.closed = true;
    }
}

fn in_flight_err(
    owner_pid: i32,
    op: impl Into<String>,
    e: impl std::error::Error + Send + Sync + 'static,
) -> PluginError {
    PluginError::Task {
        pid: owner_pid,
        op: op.into(),
        source: Box::new(e),
    }
}

/// The description of criu's fd `own`, carried by a resource of `owner_pid`, as a handler
/// sees it: link and fdinfo from criu's own `/proc/self`.
fn describe(owner_pid: i32, own: &OwnedFd, stat: FileStat) -> Result<FdDesc, PluginError> {
    let me = std::process::id() as i32;
    let raw = own.as_raw_fd();
    let link = misc::read_link(me, &format!("fd/{raw}"))
        .map(|l| l.to_string_lossy().into_owned())
        .map_err(|e| in_flight_err(owner_pid, "readlink of a file in flight", e))?;
    let (_, text) = crate::proc::read_text(crate::proc::pid_path(me, &format!("fdinfo/{raw}")))
        .map_err(|e| in_flight_err(owner_pid, "fdinfo of a file in flight", e))?;
    let fi = fdinfo::parse_fdinfo(&text)
        .map_err(|e| in_flight_err(owner_pid, "parsing the fdinfo of a file in flight", e))?;
    // fcntl on an O_PATH description fails with EBADF: such files have no owner.
    let owner = if fi.flags & libc::O_PATH as u32 != 0 {
        Default::default()
    } else {
        crate::sys::fown::get(own.as_fd()).map_err(|(call, e)| {
            in_flight_err(owner_pid, format!("{call} on a file in flight"), e)
        })?
    };
    Ok(FdDesc {
        pid: owner_pid,
        fd: FdDesc::IN_FLIGHT,
        link,
        fdinfo: files::to_api_fdinfo(&fi, text),
        stat,
        owner,
        file: own
            .try_clone()
            .map_err(|e| in_flight_err(owner_pid, "dup of a file in flight", e))?,
    })
}

impl CoreDumpContext<'_> {
    /// The id of a description seen before that criu's fd `raw` (inode `stat`) shares.
    fn seen_id(
        &self,
        owner_pid: i32,
        raw: i32,
        stat: &FileStat,
    ) -> Result<Option<u32>, PluginError> {
        let me = Pid::from_raw(std::process::id() as i32);
        for o in &self.seen_fds {
            if o.dev != stat.dev || o.ino != stat.ino {
                continue;
            }
            let what = KcmpType::File {
                fd1: o.fd,
                fd2: raw,
            };
            let same = kcmp(Pid::from_raw(o.pid), me, what).map_err(|e| {
                in_flight_err(
                    owner_pid,
                    format!("kcmp of a file in flight with fd {} of pid {}", o.fd, o.pid),
                    e.errno,
                )
            })?;
            if same.is_equal() {
                return Ok(Some(o.id));
            }
        }
        Ok(None)
    }

    /// [`DumpContext::dump_file_in_flight`]: an id for `file`, carried by a resource of
    /// `owner_pid`; new descriptions are queued for their handler.
    pub(super) fn take_in_flight(
        &mut self,
        owner_pid: i32,
        file: BorrowedFd<'_>,
    ) -> Result<u32, PluginError> {
        const SERVICE: &str = "dump_file_in_flight";
        self.frozen_pid(owner_pid, SERVICE)?;
        if self.in_flight.closed {
            return Err(PluginError::Unavailable {
                service: SERVICE,
                why: "files.img is already written (after-dump hooks): take files in flight \
                      from fd, VMA or task handlers, or the after-freeze hook"
                    .into(),
            });
        }
        let own = file
            .try_clone_to_owned()
            .map_err(|e| in_flight_err(owner_pid, "dup of a file in flight", e))?;
        let stat = files::stat_of(&own)
            .map_err(|e| in_flight_err(owner_pid, "fstat of a file in flight", e))?;
        if let Some(id) = self.seen_id(owner_pid, own.as_raw_fd(), &stat)? {
            return Ok(id);
        }
        let desc = describe(owner_pid, &own, stat)?;
        let depth = self.in_flight.depth + 1;
        if depth > MAX_IN_FLIGHT_DEPTH {
            return Err(PluginError::Unsupported {
                resource: format!("a file in flight ({})", desc.link),
                pid: owner_pid,
                hint: format!(
                    "files in flight nest deeper than {MAX_IN_FLIGHT_DEPTH} levels (sockets \
                     carrying sockets); receive the queued messages before the dump"
                ),
            });
        }
        let id = self.new_file_id();
        self.seen_fds.push(SeenFd {
            pid: std::process::id() as i32,
            fd: own.as_raw_fd(),
            dev: stat.dev,
            ino: stat.ino,
            id,
            fd_type: 0,
        });
        let at = self.seen_fds.len() - 1;
        self.in_flight.held.push(own);
        tracing::debug!(owner_pid, id, link = %desc.link, depth, "file in flight");
        self.in_flight.pending.push_back(Pending {
            desc,
            id,
            at,
            depth,
        });
        Ok(id)
    }

    /// Dumps every queued file in flight through its claiming handler (which may queue
    /// more). A no-op inside the loop itself: the outer call works the queue through.
    pub(super) fn dump_pending_in_flight(&mut self) -> Result<(), DumpError> {
        if self.in_flight.draining {
            return Ok(());
        }
        self.in_flight.draining = true;
        let plugins = self.plugins.clone();
        let mut r = Ok(());
        while let Some(p) = self.in_flight.pending.pop_front() {
            self.in_flight.depth = p.depth;
            match files::dump_desc(&plugins, self, &p.desc, p.id) {
                Ok(e) => self.seen_fds[p.at].fd_type = e.r#type,
                Err(e) => {
                    r = Err(e);
                    break;
                }
            }
        }
        self.in_flight.depth = 0;
        self.in_flight.draining = false;
        r
    }
}

#[cfg(test)]
#[path = "inflight_tests.rs"]
mod tests;
