//! Dump: every lock the frozen tree holds, from the `lock:` lines of each task's fdinfo,
//! into `filelocks.img`, one entry per lock (not per fd that shows it).
//!
//! Which task takes a lock again at restore, through which fd:
//! - a POSIX lock belongs to the fd table of the task that took it, whose pid the kernel
//!   records: that task, through the first of its fds that shows it;
//! - a flock, OFD lock or lease belongs to the open file description and shows in every
//!   task holding it (after fork, dup, SCM_RIGHTS): one entry per description, taken by
//!   the task whose pid the kernel records if it still holds the description (the lock
//!   then shows the same pid after restore), else by the first holder (parents first).

use std::collections::HashMap;

use criu_plugin_api::{DumpContext, ImageRef, PluginError, PluginImageKind, write_message};
use criu_proto::images::FileLockEntry;

use crate::entry::to_entry;
use crate::lockline::{Kind, LockLine, LockLineError, Mode, parse_fdinfo};

/// `filelocks.img`.
pub const IMAGE: ImageRef = ImageRef::single(PluginImageKind::FileLocks);

/// One lock as one fd of one task shows it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The task.
    pub pid: i32,
    /// Its fd.
    pub fd: i32,
    /// The `files.img` id of the fd's open file description.
    pub file_id: u32,
    /// The lock.
    pub lock: LockLine,
}

/// What makes two sightings the same lock.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    /// A POSIX lock: its owner (the fd table of that pid) and the description.
    Posix {
        owner: i32,
        file_id: u32,
        mode: Mode,
        start: u64,
        end: Option<u64>,
    },
    /// Any other: the description.
    Description {
        kind: Kind,
        file_id: u32,
        mode: Mode,
        breaking: bool,
        start: u64,
        end: Option<u64>,
    },
}

/// The entries for every sighting (in tree order: parents first, fds ascending), or the
/// first lock that cannot be kept. `tree` lists the dumped pids.
pub fn entries(seen: &[Seen], tree: &[i32]) -> Result<Vec<FileLockEntry>, PluginError> {
    let mut chosen: Vec<&Seen> = Vec::new();
    let mut index: HashMap<Key, usize> = HashMap::new();
    for s in seen {
        let l = &s.lock;
        let key = if l.kind == Kind::Posix {
            if l.pid != s.pid {
                if tree.contains(&l.pid) {
                    // An fd table shared (CLONE_FILES) with the task that took it: that
                    // task's own fdinfo shows it too, and it takes it again.
                    continue;
                }
                return Err(PluginError::Unsupported {
                    resource: format!(
                        "fd {} (file id {}): POSIX {} lock {} taken by pid {}",
                        s.fd,
                        s.file_id,
                        mode_word(l.mode),
                        range(l),
                        l.pid
                    ),
                    pid: s.pid,
                    hint: format!(
                        "the lock belongs to the fd table pid {} shares with pid {}, which is \
                         not in the dumped tree (or has exited): no task of the tree can \
                         take it again as its own; release it before the dump",
                        s.pid, l.pid
                    ),
                });
            }
            Key::Posix {
                owner: s.pid,
                file_id: s.file_id,
                mode: l.mode,
                start: l.start,
                end: l.end,
            }
        } else {
            Key::Description {
                kind: l.kind,
                file_id: s.file_id,
                mode: l.mode,
                breaking: l.breaking,
                start: l.start,
                end: l.end,
            }
        };
        match index.get(&key) {
            None => {
                index.insert(key, chosen.len());
                chosen.push(s);
            }
            // The task that took it holds the description too: it takes it again.
            Some(&i) if chosen[i].pid != l.pid && s.pid == l.pid => chosen[i] = s,
            Some(_) => {}
        }
    }
    Ok(chosen
        .into_iter()
        .map(|s| to_entry(&s.lock, s.pid, s.fd))
        .collect())
}

fn mode_word(m: Mode) -> &'static str {
    match m {
        Mode::Read => "read",
        Mode::Write => "write",
        Mode::Unlock => "unlock",
    }
}

fn range(l: &LockLine) -> String {
    match l.end {
        Some(e) => format!("{}-{e}", l.start),
        None => format!("{}-EOF", l.start),
    }
}

/// The fds of `pid`, ascending.
fn task_fds(pid: i32) -> Result<Vec<i32>, PluginError> {
    let dir = format!("/proc/{pid}/fd");
    let io = |source| PluginError::Path {
        path: dir.clone().into(),
        op: "readdir",
        source,
    };
    let mut fds = Vec::new();
    for e in std::fs::read_dir(&dir).map_err(io)? {
        let e = e.map_err(io)?;
        if let Some(fd) = e.file_name().to_str().and_then(|n| n.parse().ok()) {
            fds.push(fd);
        }
    }
    fds.sort_unstable();
    Ok(fds)
}

/// Every lock every frozen task of the tree shows through its fds.
fn sightings(ctx: &mut dyn DumpContext) -> Result<Vec<Seen>, PluginError> {
    let mut seen = Vec::new();
    for task in ctx.tasks() {
        let pid = task.pid;
        for fd in task_fds(pid)? {
            let path = format!("/proc/{pid}/fdinfo/{fd}");
            let text = std::fs::read_to_string(&path).map_err(|source| PluginError::Path {
                path: path.clone().into(),
                op: "read",
                source,
            })?;
            let locks = parse_fdinfo(&text).map_err(|e| match e {
                LockLineError::Unkeepable { .. } => PluginError::Unsupported {
                    resource: format!("fd {fd}: {e}"),
                    pid,
                    hint: "criu can take POSIX, OFD and flock locks and leases again; \
                           release this one before the dump"
                        .into(),
                },
                LockLineError::Malformed { .. } => PluginError::BadFdInfo {
                    field: format!("lock (in {path})"),
                    reason: e.to_string(),
                },
            })?;
            if locks.is_empty() {
                continue;
            }
            let file_id = ctx
                .file_id_of(pid, fd)
                .ok_or_else(|| PluginError::Unsupported {
                    resource: format!("fd {fd} holding a file lock"),
                    pid,
                    hint: "the fd was not dumped (opened while the tree was frozen?)".into(),
                })?;
            seen.extend(locks.into_iter().map(|lock| Seen {
                pid,
                fd,
                file_id,
                lock,
            }));
        }
    }
    Ok(seen)
}

/// Writes `filelocks.img` (nothing when the tree holds no lock).
pub fn dump(ctx: &mut dyn DumpContext) -> Result<(), PluginError> {
    let seen = sightings(ctx)?;
    let tree: Vec<i32> = ctx.tasks().iter().map(|t| t.pid).collect();
    let entries = entries(&seen, &tree)?;
    for e in &entries {
        tracing::debug!(
            flag = e.flag,
            r#type = e.r#type,
            pid = e.pid,
            fd = e.fd,
            start = e.start,
            len = e.len,
            "file lock"
        );
        write_message(ctx, IMAGE, e, &[])?;
    }
    tracing::info!(
        locks = entries.len(),
        seen = seen.len(),
        "file locks dumped"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lockline::parse_line;

    fn seen(pid: i32, fd: i32, file_id: u32, line: &str) -> Seen {
        Seen {
            pid,
            fd,
            file_id,
            lock: parse_line(line).unwrap(),
        }
    }

    #[test]
    fn a_shared_description_gives_one_entry_taken_by_its_creator() {
        // flock taken by 20 (a child), shown by the parent first, then by 20 itself.
        let s = [
            seen(10, 3, 1, "1: FLOCK ADVISORY WRITE 20 08:01:5 0 EOF"),
            seen(10, 4, 1, "1: FLOCK ADVISORY WRITE 20 08:01:5 0 EOF"),
            seen(20, 7, 1, "1: FLOCK ADVISORY WRITE 20 08:01:5 0 EOF"),
            seen(30, 3, 1, "1: FLOCK ADVISORY WRITE 20 08:01:5 0 EOF"),
        ];
        let e = entries(&s, &[10, 20, 30]).unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!((e[0].pid, e[0].fd, e[0].flag), (20, 7, 2));
    }

    #[test]
    fn a_creator_gone_leaves_it_to_the_first_holder() {
        let s = [
            seen(20, 5, 1, "1: OFDLCK ADVISORY READ -1 08:01:5 0 9"),
            seen(30, 5, 1, "1: OFDLCK ADVISORY READ -1 08:01:5 0 9"),
            seen(30, 5, 1, "2: OFDLCK ADVISORY READ -1 08:01:5 20 29"),
        ];
        let e = entries(&s, &[20, 30]).unwrap();
        let got: Vec<_> = e.iter().map(|e| (e.pid, e.start, e.len)).collect();
        assert_eq!(got, [(20, 0, 10), (30, 20, 10)]);
    }

    #[test]
    fn posix_locks_stay_with_their_owner() {
        // Same file, same range: the parent's and the child's are two locks (another
        // description for the child); a dup shows the parent's twice.
        let s = [
            seen(10, 3, 1, "1: POSIX ADVISORY READ 10 08:01:5 0 EOF"),
            seen(10, 4, 1, "1: POSIX ADVISORY READ 10 08:01:5 0 EOF"),
            seen(20, 3, 2, "1: POSIX ADVISORY READ 20 08:01:5 0 EOF"),
        ];
        let e = entries(&s, &[10, 20]).unwrap();
        let got: Vec<_> = e.iter().map(|e| (e.pid, e.fd)).collect();
        assert_eq!(got, [(10, 3), (20, 3)]);
    }

    #[test]
    fn a_shared_fd_table_records_the_lock_once_and_a_foreign_owner_is_refused() {
        let s = [
            seen(10, 3, 1, "1: POSIX ADVISORY WRITE 11 08:01:5 0 EOF"),
            seen(11, 3, 1, "1: POSIX ADVISORY WRITE 11 08:01:5 0 EOF"),
        ];
        let e = entries(&s, &[10, 11]).unwrap();
        assert_eq!(e.iter().map(|e| e.pid).collect::<Vec<_>>(), [11]);
        let err = entries(&s[..1], &[10]).unwrap_err().to_string();
        assert!(err.contains("pid 10") && err.contains("pid 11"), "{err}");
    }
}
