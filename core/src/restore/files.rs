//! Opening the file descriptions a task needs, in the restorer, before the task is forked:
//! the child inherits them and only moves them to their numbers.
//!
//! The opener is a trait so the plugin registry (`criu-plugin-api` `FdHandler::open_file`)
//! can stand behind it; [`RegOpener`] restores regular files itself (path, flags, offset).

use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};

use criu_proto::images::{FileEntry, FownEntry, FsEntry};
use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;
use nix::unistd::{Whence, lseek};

/// Opens one `files.img` entry in the current process.
pub trait FileOpener {
    /// The next opens are for task `pid` (its pid in the images).
    fn begin_task(&mut self, pid: i32) {
        let _ = pid;
    }

    /// Returns the open description, or a reason naming what is unsupported.
    fn open(&mut self, entry: &FileEntry) -> Result<OwnedFd, String>;

    /// The restore reached `stage`: run the plugins' stage hooks (the plugin opener does).
    /// `live`: the tasks exist and are stopped under us (task services usable).
    fn stage(
        &mut self,
        stage: criu_plugin_api::RestoreStage,
        live: bool,
    ) -> Result<(), criu_plugin_api::HookFailure> {
        let _ = (stage, live);
        Ok(())
    }

    /// The last step before the tree resumes, after the before-resume hooks: the plugin
    /// opener calls its restorers' `finish` with the fds they installed (tasks stopped, task
    /// services on).
    fn finish(&mut self) -> Result<(), criu_plugin_api::HookFailure> {
        Ok(())
    }

    /// The restore is over (after the after-resume or failure hooks): drop every restorer,
    /// plugin state and kept fd.
    fn end(&mut self) {}

    /// The anonymous shared memory objects of this restore, for the plugins'
    /// [`criu_plugin_api::RestoreContext::anon_shmem`] (the plugin opener keeps them).
    fn set_shmem(&mut self, objects: super::shmem::SharedObjects) {
        let _ = objects;
    }

    /// Every task exists: (image pid, pid in criu's namespace) of each task and thread, and
    /// the fd relay when they live in a new pid namespace (for the task services).
    fn set_task_pids(
        &mut self,
        pids: &[(i32, i32)],
        relay: Option<std::sync::Arc<super::ns::relay::Relay>>,
    ) {
        let _ = (pids, relay);
    }
}

/// Opens each `files.img` entry once per restore and hands out duplicates: tasks sharing a
/// file id share one open file description (offset, flags, pipe), as in the dumped tree.
pub struct SharedDescriptions<'o> {
    inner: &'o mut dyn FileOpener,
    open: BTreeMap<u32, OwnedFd>,
}

impl std::fmt::Debug for SharedDescriptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedDescriptions")
            .field("open", &self.open.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl<'o> SharedDescriptions<'o> {
    pub fn new(inner: &'o mut dyn FileOpener) -> Self {
        SharedDescriptions {
            inner,
            open: BTreeMap::new(),
        }
    }
}

impl SharedDescriptions<'_> {
    /// Sets the `SIGIO` owner (and its signal) of every description opened so far whose
    /// entry recorded one. Runs once the whole tree exists: the owner may be any task or
    /// process group of it. Errors name the file id and the failed call.
    pub fn apply_owners(
        &self,
        files: &BTreeMap<u32, FileEntry>,
    ) -> Result<(), (u32, &'static str, nix::errno::Errno)> {
        for (id, fd) in &self.open {
            let Some(fown) = files.get(id).and_then(|e| fown_of(e, files)) else {
                continue;
            };
            if fown.pid == 0 && fown.signum == 0 {
                continue;
            }
            crate::sys::fown::set(fd.as_fd(), fown).map_err(|(call, e)| (*id, call, e))?;
        }
        Ok(())
    }
}

/// The `fown_entry` of a `files.img` entry, whatever its kind (a FIFO's is in the
/// `reg_file_entry` its `regf_id` names, as CRIU writes it).
pub fn fown_of<'f>(e: &'f FileEntry, files: &'f BTreeMap<u32, FileEntry>) -> Option<&'f FownEntry> {
    if let Some(reg_id) = e.fifo.as_ref().and_then(|f| f.regf_id) {
        return files.get(&reg_id)?.reg.as_ref().map(|r| &r.fown);
    }
    let fown = [
        e.reg.as_ref().map(|x| &x.fown),
        e.isk.as_ref().map(|x| &x.fown),
        e.psk.as_ref().map(|x| &x.fown),
        e.nlsk.as_ref().map(|x| &x.fown),
        e.efd.as_ref().map(|x| &x.fown),
        e.epfd.as_ref().map(|x| &x.fown),
        e.sgfd.as_ref().map(|x| &x.fown),
        e.tfd.as_ref().map(|x| &x.fown),
        e.ify.as_ref().map(|x| &x.fown),
        e.ffy.as_ref().map(|x| &x.fown),
        e.ext.as_ref().map(|x| &x.fown),
        e.usk.as_ref().map(|x| &x.fown),
        e.pipe.as_ref().map(|x| &x.fown),
        e.tty.as_ref().map(|x| &x.fown),
        e.memfd.as_ref().map(|x| &x.fown),
        e.bpf.as_ref().map(|x| &x.fown),
        e.pidfd.as_ref().map(|x| &x.fown),
    ];
    fown.into_iter().flatten().next()
}

impl FileOpener for SharedDescriptions<'_> {
    fn begin_task(&mut self, pid: i32) {
        self.inner.begin_task(pid);
    }

    fn set_shmem(&mut self, objects: super::shmem::SharedObjects) {
        self.inner.set_shmem(objects);
    }

    fn set_task_pids(
        &mut self,
        pids: &[(i32, i32)],
        relay: Option<std::sync::Arc<super::ns::relay::Relay>>,
    ) {
        self.inner.set_task_pids(pids, relay);
    }

    fn stage(
        &mut self,
        stage: criu_plugin_api::RestoreStage,
        live: bool,
    ) -> Result<(), criu_plugin_api::HookFailure> {
        self.inner.stage(stage, live)
    }

    fn finish(&mut self) -> Result<(), criu_plugin_api::HookFailure> {
        self.inner.finish()
    }

    fn end(&mut self) {
        self.inner.end()
    }

    fn open(&mut self, entry: &FileEntry) -> Result<OwnedFd, String> {
        if !self.open.contains_key(&entry.id) {
            // A path of the restored mount tree, when there is one, is opened inside it.
            let fd = if entry.reg.is_some() {
                crate::mnt::build::in_tree(|| self.inner.open(entry))??
            } else {
                self.inner.open(entry)?
            };
            self.open.insert(entry.id, fd);
        }
        let fd = &self.open[&entry.id];
        let dup = nix::unistd::dup(fd).map_err(|e| format!("dup of file id {}: {e}", entry.id))?;
        nix::fcntl::fcntl(
            &dup,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )
        .map_err(|e| format!("FD_CLOEXEC on file id {}: {e}", entry.id))?;
        Ok(dup)
    }
}

/// Regular files only: reopens the path with the dumped flags and offset. Other kinds fail
/// with a message naming the type.
#[derive(Debug, Default)]
pub struct RegOpener;

impl FileOpener for RegOpener {
    fn open(&mut self, entry: &FileEntry) -> Result<OwnedFd, String> {
        let Some(reg) = &entry.reg else {
            return Err(format!(
                "file type {} has no restorer here (only regular files)",
                criu_proto::images::FdTypes::try_from(entry.r#type)
                    .map(|t| t.as_str_name().to_string())
                    .unwrap_or_else(|_| entry.r#type.to_string())
            ));
        };
        // Never create or truncate on restore; keep access mode and status flags.
        let keep = OFlag::O_ACCMODE
            | OFlag::O_APPEND
            | OFlag::O_NONBLOCK
            | OFlag::O_DIRECT
            | OFlag::O_NOATIME
            | OFlag::O_DSYNC
            | OFlag::O_SYNC
            | OFlag::O_LARGEFILE
            | OFlag::O_DIRECTORY
            | OFlag::O_PATH;
        let flags = OFlag::from_bits_truncate(reg.flags as i32) & keep;
        let fd = open(reg.name.as_str(), flags | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| format!("open({}, {:#x}): {e}", reg.name, flags.bits()))?;
        if reg.pos != 0 {
            lseek(fd.as_fd(), reg.pos as i64, Whence::SeekSet)
                .map_err(|e| format!("lseek({}, {}): {e}", reg.name, reg.pos))?;
        }
        Ok(fd)
    }
}

/// Opens a regular file by `files.img` id for the restorer's own use (VMA backing, exe,
/// cwd): read-only unless `write`, or O_PATH for directories.
pub fn open_for_mapping(
    files: &BTreeMap<u32, FileEntry>,
    id: u32,
    write: bool,
) -> Result<(OwnedFd, String), String> {
    let reg = files
        .get(&id)
        .and_then(|f| f.reg.as_ref())
        .ok_or_else(|| format!("file id {id} is not a regular file"))?;
    let acc = if write {
        OFlag::O_RDWR
    } else {
        OFlag::O_RDONLY
    };
    // Inside the restored mount tree when there is one.
    let fd = crate::mnt::build::in_tree(|| {
        open(reg.name.as_str(), acc | OFlag::O_CLOEXEC, Mode::empty())
    })?
    .map_err(|e| format!("open({}): {e}", reg.name))?;
    // A mapped file that changed since the dump (an upgraded library, a truncated file)
    // would give the task other code or SIGBUS: refuse, as CRIU does.
    let st = nix::sys::stat::fstat(&fd).map_err(|e| format!("fstat({}): {e}", reg.name))?;
    if let Some(size) = reg.size
        && size != st.st_size as u64
    {
        return Err(format!(
            "{} is {} bytes, it was {size} at dump: the file changed",
            reg.name, st.st_size
        ));
    }
    if let Some(mode) = reg.mode
        && mode != st.st_mode
    {
        return Err(format!(
            "{} has mode {:o}, it had {mode:o} at dump: the file changed",
            reg.name, st.st_mode
        ));
    }
    Ok((fd, reg.name.clone()))
}

/// A new description of the file open at `fd` (`/proc/self/fd/N`), read-only unless
/// `write`: for mapping a file that has no path (a memfd) with the access its mapping needs,
/// whatever the flags of the description its plugin restored. A writable mapping of a
/// read-write description maps that very description: a reopen for writing would count as
/// a writer of the inode as long as the mapping lives (`execveat` of a memfd then fails with
/// ETXTBSY, where the description `memfd_create` made counts as none).
pub fn reopen_for_mapping(fd: &OwnedFd, write: bool) -> Result<OwnedFd, String> {
    use std::os::fd::AsRawFd;
    if write
        && nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL)
            .is_ok_and(|fl| fl & libc::O_ACCMODE == libc::O_RDWR)
    {
        return fd
            .try_clone()
            .map_err(|e| format!("dup of fd {} for mapping: {e}", fd.as_raw_fd()));
    }
    let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let acc = if write {
        OFlag::O_RDWR
    } else {
        OFlag::O_RDONLY
    };
    open(path.as_str(), acc | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| format!("reopen {path} for mapping: {e}"))
}

/// A read-write MEMFD entry of the same memfd inode as `entry`, for a writable shared mapping
/// of it: the task most likely mapped that description (a reopen for writing would count as
/// a writer of the inode and make `execveat` of the memfd fail with ETXTBSY, where the
/// description `memfd_create` made counts as none).
pub fn writable_memfd_twin<'a>(
    files: &'a BTreeMap<u32, FileEntry>,
    entry: &FileEntry,
) -> Option<&'a FileEntry> {
    let inode = entry.memfd.as_ref()?.inode_id;
    files.values().find(|f| {
        f.memfd.as_ref().is_some_and(|m| {
            m.inode_id == inode && m.flags & libc::O_ACCMODE as u32 == libc::O_RDWR as u32
        })
    })
}

/// The cwd and root paths of `fs`.
pub fn fs_paths(files: &BTreeMap<u32, FileEntry>, fs: &FsEntry) -> Option<(String, String)> {
    let p = |id: u32| files.get(&id)?.reg.as_ref().map(|r| r.name.clone());
    Some((p(fs.cwd_id)?, p(fs.root_id)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use criu_proto::images::{FdTypes, FifoEntry, PipeEntry, RegFileEntry};

    fn fown(pid: u32) -> FownEntry {
        FownEntry {
            uid: 0,
            euid: 0,
            signum: 35,
            pid_type: 1,
            pid,
        }
    }

    #[test]
    fn fown_of_pipe_and_fifo() {
        let pipe = FileEntry {
            r#type: FdTypes::Pipe as i32,
            id: 1,
            pipe: Some(PipeEntry {
                id: 1,
                pipe_id: 9,
                flags: 0,
                fown: fown(10),
            }),
            ..Default::default()
        };
        let fifo = FileEntry {
            r#type: FdTypes::Fifo as i32,
            id: 2,
            fifo: Some(FifoEntry {
                id: 2,
                pipe_id: 8,
                regf_id: Some(3),
            }),
            ..Default::default()
        };
        let reg = FileEntry {
            r#type: FdTypes::Reg as i32,
            id: 3,
            reg: Some(RegFileEntry {
                id: 3,
                name: "/tmp/f".into(),
                fown: fown(11),
                ..Default::default()
            }),
            ..Default::default()
        };
        let files: BTreeMap<u32, FileEntry> = [(1, pipe), (2, fifo), (3, reg)].into();
        assert_eq!(fown_of(&files[&1], &files).map(|f| f.pid), Some(10));
        assert_eq!(fown_of(&files[&2], &files).map(|f| f.pid), Some(11));
        assert_eq!(fown_of(&files[&3], &files).map(|f| f.pid), Some(11));
    }
}
