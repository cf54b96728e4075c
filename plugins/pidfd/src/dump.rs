//! Dump: what a pidfd points at (fdinfo `Pid:`/`NSpid:`), checked against the dumped tree.

use criu_plugin_api::{DumpContext, FdDesc, FdInfo, PluginError, TaskIds};
use criu_proto::images::PidfdEntry;

use crate::sys;

/// What the fdinfo of a pidfd says about its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A task that exists (running, stopped or a zombie): `pid` in criu's pid namespace,
    /// `nspid` in the target's own (the last `NSpid:` value, what CRIU stores).
    Live {
        /// `Pid:`.
        pid: i32,
        /// The last `NSpid:` value.
        nspid: i32,
    },
    /// The process was reaped (`Pid: -1`).
    Reaped,
    /// The target lives in a pid namespace criu cannot see (`Pid: 0`).
    Hidden,
}

/// Reads `Pid:` and `NSpid:` of a pidfd's fdinfo.
pub fn parse_target(info: &FdInfo) -> Result<Target, PluginError> {
    let pid: i32 = info.parse("Pid")?;
    Ok(match pid {
        -1 => Target::Reaped,
        0 => Target::Hidden,
        p if p > 0 => {
            let ns: Vec<i32> = info.list("NSpid")?;
            Target::Live {
                pid: p,
                nspid: ns.last().copied().unwrap_or(p),
            }
        }
        _ => {
            return Err(PluginError::BadFdInfo {
                field: "Pid".into(),
                reason: format!("{pid} is not a pid"),
            });
        }
    })
}

/// Whether `pid` (a thread id when `thread`) is a task of `tree`; zombies are not in it
/// (`zombie_parent` answers for those).
pub fn in_tree(tree: &[TaskIds], pid: i32, thread: bool) -> bool {
    tree.iter()
        .any(|t| t.pid == pid || (thread && t.tids.contains(&pid)))
}

/// The parent of `pid` when `pid` is a zombie (state `Z` in `/proc/PID/stat`).
fn zombie_parent(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut rest = stat.rsplit_once(')')?.1.split_whitespace();
    let state = rest.next()?;
    let ppid = rest.next()?.parse().ok()?;
    (state == "Z").then_some(ppid)
}

/// The `pidfd_entry` of `fd`, or why it cannot be dumped.
pub fn dump_pidfd(
    ctx: &mut dyn DumpContext,
    fd: &FdDesc,
    id: u32,
) -> Result<PidfdEntry, PluginError> {
    criu_plugin_api::require_no_owner(&fd.owner.to_entry(), &fd.describe(), fd.pid)?;
    let flags = fd.fdinfo.file_flags() & !(libc::O_RDWR as u32);
    let thread = flags & sys::PIDFD_THREAD != 0;
    let refuse = |what: String, hint: &str| PluginError::Unsupported {
        resource: format!("{} ({what})", fd.describe()),
        pid: fd.pid,
        hint: hint.into(),
    };
    let (nspid, exit_status) = match parse_target(&fd.fdinfo)? {
        Target::Reaped => {
            let status = sys::exit_status(fd.file()).map_err(|e| PluginError::Fd {
                pid: fd.pid,
                fd: fd.fd,
                link: fd.link.clone(),
                op: "ioctl(PIDFD_GET_INFO)",
                source: e.into(),
            })?;
            (-1, status)
        }
        Target::Hidden => {
            return Err(refuse(
                "its process is in a pid namespace criu does not see".into(),
                "dump from the namespace the target lives in",
            ));
        }
        Target::Live { pid, nspid } => {
            let tree = ctx.tasks();
            let zombie_of_tree = || zombie_parent(pid).is_some_and(|pp| in_tree(&tree, pp, false));
            if !in_tree(&tree, pid, thread) && !zombie_of_tree() {
                let kind = if thread { "thread" } else { "process" };
                return Err(refuse(
                    format!("a pidfd of {kind} {pid}, which is not in the dumped tree"),
                    &format!(
                        "dump a tree that contains {pid} (criu dump -t of a common ancestor), \
                         or close the pidfd before the dump"
                    ),
                ));
            }
            (nspid, None)
        }
    };
    tracing::debug!(
        pid = fd.pid,
        fd = fd.fd,
        id,
        nspid,
        ?exit_status,
        flags,
        "dumping pidfd"
    );
    Ok(PidfdEntry {
        id,
        // CRIU's field is 32 bits wide; only used to group the pidfds of one reaped process.
        ino: fd.fdinfo.ino as u32,
        flags,
        nspid,
        fown: fd.owner.to_entry(),
        criu_rs_exit_status: exit_status,
    })
}
