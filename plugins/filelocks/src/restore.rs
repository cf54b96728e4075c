//! Restore: `filelocks.img` is read and checked before any task exists
//! ([`RestoreStage::BeforeRestore`](criu_plugin_api::RestoreStage)), and every lock is taken
//! again once every task exists with its final fds, before credentials are applied (a lease
//! needs the file's owner or CAP_LEASE) and before any task runs
//! ([`RestoreStage::AfterTasksExist`](criu_plugin_api::RestoreStage)): each by the task the
//! entry names, on its fd, with a remote system call, so the lock has the same owner (POSIX:
//! the task's fd table; flock, OFD lock, lease: the open file description, with the task's
//! pid recorded) as at dump.
//!
//! A lease being broken is taken as its description's access mode allows, then broken again
//! by an open from criu (`O_NONBLOCK`: it only starts the break) that conflicts with it as
//! the break at dump did: the holder's SIGIO owner is cleared first, so the restart sends no
//! second signal (the task had its signal before the dump); the core sets the owner of
//! every file from the images afterwards. Failing anywhere fails the restore: the tasks are
//! killed and their locks go with them.

use criu_plugin_api::{ImageCursor, PluginError, RestoreContext};
use criu_proto::images::FileLockEntry;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use crate::dump::IMAGE;
use crate::entry::{Action, action};
use crate::remote::Task;

/// The checked entries of `filelocks.img`, between the two stages.
#[derive(Debug, Default)]
pub struct Plan {
    locks: Vec<(FileLockEntry, Action)>,
}

fn bad(entry: usize, reason: impl std::fmt::Display) -> PluginError {
    PluginError::bad_image(IMAGE.to_string(), format!("entry {entry}: {reason}"))
}

/// Reads and checks the image: every entry a known lock on an fd its task gets. Refuses
/// images with locks when the restore was not asked for them (`--file-locks`), rather than
/// restoring the tree without its locks.
pub fn load(ctx: &mut dyn RestoreContext) -> Result<Plan, PluginError> {
    let Some(body) = ctx.read_image(IMAGE)? else {
        return Ok(Plan::default());
    };
    let mut cursor = ImageCursor::new(IMAGE, &body);
    let mut locks = Vec::new();
    while let Some(e) = cursor.next_entry::<FileLockEntry>()? {
        let n = locks.len();
        let a = action(&e).map_err(|why| bad(n, why))?;
        let fds = ctx
            .task_fds(e.pid)
            .map_err(|_| bad(n, format!("pid {} is not a task of the tree", e.pid)))?;
        if !fds.iter().any(|f| f.fd == e.fd) {
            return Err(bad(
                n,
                format!("pid {} has no fd {} in the images", e.pid, e.fd),
            ));
        }
        locks.push((e, a));
    }
    if !locks.is_empty() && !ctx.options().file_locks {
        let (e, a) = &locks[0];
        return Err(PluginError::Unsupported {
            resource: format!(
                "{IMAGE} ({} file locks or leases; the first: {a} on fd {})",
                locks.len(),
                e.fd
            ),
            pid: e.pid,
            hint: "restore with --file-locks (the dump was made with it), or the tree would \
                   run without its locks"
                .into(),
        });
    }
    // Locks first, leases being broken last (the break reaches every lease of the file).
    locks.sort_by_key(|(_, a)| a.order());
    Ok(Plan { locks })
}

/// Takes every lock of `plan` again, each in its task.
pub fn apply(ctx: &mut dyn RestoreContext, plan: &Plan) -> Result<(), PluginError> {
    let mut tasks: Vec<Task> = Vec::new();
    let mut result = Ok(());
    for (n, (e, a)) in plan.locks.iter().enumerate() {
        let Some(pid) = ctx.restored_pid(e.pid) else {
            result = Err(bad(n, format!("pid {} was not restored", e.pid)));
            break;
        };
        let i = match tasks.iter().position(|t| t.pid == pid) {
            Some(i) => i,
            None => {
                tasks.push(Task::new(pid));
                tasks.len() - 1
            }
        };
        result = take(ctx, &mut tasks[i], e.fd, *a);
        if result.is_err() {
            break;
        }
        tracing::debug!(pid, fd = e.fd, lock = %a, "file lock taken again");
    }
    // Scratch pages go even after a failure (the tasks are killed then anyway).
    for t in &mut tasks {
        let r = t.finish(ctx);
        if result.is_ok() {
            result = r;
        }
    }
    if result.is_ok() {
        tracing::info!(locks = plan.locks.len(), "file locks restored");
    }
    result
}

/// One lock, in `task`, on its `fd`.
fn take(
    ctx: &mut dyn RestoreContext,
    task: &mut Task,
    fd: i32,
    a: Action,
) -> Result<(), PluginError> {
    let what = |call: &'static str| {
        move || {
            format!(
                "remote {call} taking the {a} on fd {fd} again (a conflicting lock held \
                 outside the tree since the dump gives EAGAIN)"
            )
        }
    };
    match a {
        Action::Posix(r) => task.set_record_lock(ctx, fd, libc::F_SETLK, r, what("fcntl(F_SETLK)")),
        Action::Ofd(r) => {
            task.set_record_lock(ctx, fd, libc::F_OFD_SETLK, r, what("fcntl(F_OFD_SETLK)"))
        }
        Action::Flock { exclusive } => {
            let op = if exclusive {
                libc::LOCK_EX
            } else {
                libc::LOCK_SH
            } | libc::LOCK_NB;
            let args = [fd as u64, op as u64, 0, 0, 0, 0];
            task.call(ctx, libc::SYS_flock, args, what("flock"))
                .map(|_| ())
        }
        Action::Lease { ty } => task
            .fcntl(
                ctx,
                fd,
                libc::F_SETLEASE,
                ty as u64,
                what("fcntl(F_SETLEASE)"),
            )
            .map(|_| ()),
        Action::BreakingLease { target } => breaking_lease(ctx, task, fd, target, a),
    }
}

/// The lease the description had before its break, then the break again.
fn breaking_lease(
    ctx: &mut dyn RestoreContext,
    task: &mut Task,
    fd: i32,
    target: i32,
    a: Action,
) -> Result<(), PluginError> {
    let flags = task.fcntl(ctx, fd, libc::F_GETFL, 0, || {
        format!("remote fcntl(F_GETFL) on fd {fd}")
    })?;
    // A read lease is only possible on a description opened read-only, a write lease on
    // any other (CRIU restores the state before the break the same way).
    let before = if flags as i32 & libc::O_ACCMODE == libc::O_RDONLY {
        libc::F_RDLCK
    } else {
        libc::F_WRLCK
    };
    task.fcntl(ctx, fd, libc::F_SETLEASE, before as u64, || {
        format!("remote fcntl(F_SETLEASE) taking the lease before its break ({a}) on fd {fd}")
    })?;
    task.fcntl(ctx, fd, libc::F_SETOWN, 0, || {
        format!("remote fcntl(F_SETOWN, 0) on fd {fd} before breaking its lease")
    })?;
    // Breaking to nothing takes a writer, to a read lease a reader.
    let access = if target == libc::F_UNLCK {
        OFlag::O_WRONLY
    } else {
        OFlag::O_RDONLY
    };
    let path = format!("/proc/{}/fd/{fd}", task.pid);
    let flags = access | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC | OFlag::O_NOCTTY;
    match nix::fcntl::open(path.as_str(), flags, Mode::empty()) {
        Err(Errno::EWOULDBLOCK) => Ok(()),
        Ok(_file) => Err(PluginError::Unsupported {
            resource: format!("fd {fd}: {a}"),
            pid: task.pid,
            hint: format!(
                "opening {path} ({access:?}) did not conflict with the lease taken again, so \
                 its break cannot be restarted; the image does not match the file"
            ),
        }),
        Err(e) => Err(PluginError::Path {
            path: path.into(),
            op: "open (restarting a lease break)",
            source: e.into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use criu_plugin_api::TaskFd;
    use criu_plugin_api::testing::MemoryImages;
    use prost::Message;

    fn images(entries: &[FileLockEntry], file_locks: bool) -> MemoryImages {
        let mut m = MemoryImages::new(0);
        let framed: Vec<Vec<u8>> = entries.iter().map(|e| e.encode_to_vec()).collect();
        let body = criu_plugin_api::frame_entries(framed.iter().map(|e| (e.as_slice(), &[][..])));
        m.images.insert(IMAGE.to_string(), body);
        m.tasks = vec![criu_plugin_api::TaskIds {
            pid: 10,
            tids: vec![10],
        }];
        m.task_fds.insert(
            10,
            vec![TaskFd {
                fd: 3,
                ..Default::default()
            }],
        );
        m.restore_options.file_locks = file_locks;
        m
    }

    fn entry(flag: u32, ty: u32, fd: i32) -> FileLockEntry {
        FileLockEntry {
            flag,
            r#type: ty,
            pid: 10,
            fd,
            start: 0,
            len: 0,
        }
    }

    #[test]
    fn no_image_no_locks() {
        let mut m = MemoryImages::new(0);
        assert!(load(&mut m).unwrap().locks.is_empty());
    }

    #[test]
    fn leases_being_broken_come_last() {
        let mut m = images(&[entry(8, 2 | 4, 3), entry(8, 0, 3), entry(1, 1, 3)], true);
        let plan = load(&mut m).unwrap();
        let order: Vec<u8> = plan.locks.iter().map(|(_, a)| a.order()).collect();
        assert_eq!(order, [0, 1, 2]);
    }

    #[test]
    fn locks_without_the_option_are_refused_naming_it() {
        let mut m = images(&[entry(2, 1, 3)], false);
        let e = load(&mut m).unwrap_err().to_string();
        assert!(
            e.contains("--file-locks") && e.contains("exclusive flock on fd 3"),
            "{e}"
        );
    }

    #[test]
    fn bad_entries_name_the_image_and_entry() {
        for (e, why) in [
            (entry(1, 1, 9), "no fd 9"),
            (
                FileLockEntry {
                    pid: 77,
                    ..entry(1, 1, 3)
                },
                "pid 77",
            ),
            (entry(64, 1, 3), "unknown lock flag"),
        ] {
            let mut m = images(&[entry(2, 0, 3), e], true);
            let err = load(&mut m).unwrap_err().to_string();
            assert!(
                err.contains("filelocks.img") && err.contains("entry 1") && err.contains(why),
                "{err}"
            );
        }
        let mut m = images(&[], true);
        m.images.insert(IMAGE.to_string(), vec![9, 0, 0, 0, 1]);
        assert!(load(&mut m).is_err());
    }
}
