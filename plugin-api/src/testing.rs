//! Helpers for testing plugins without the core: an in-memory images directory that is both a
//! [`DumpContext`] and a [`RestoreContext`] (with fake tasks: memory regions, a syscall log),
//! and [`FdDesc`] for an fd of the calling process.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use crate::{
    DumpContext, DumpOptions, FdDesc, FdInfo, FileOwner, FileStat, ImageRef, Plugin, PluginError,
    PluginState, RestoreContext, RestoreOptions, RunKind, TaskFd, TaskIds, Timespec,
};

/// Images kept in memory, by file name. Dump into it, then restore from it.
///
/// Kept fds are stored as they are (no renumbering): fine for tests, which install nothing.
#[derive(Debug, Default)]
pub struct MemoryImages {
    /// Image bodies (framed entries, no magic) by file name (`files.img`, ...).
    pub images: HashMap<String, Vec<u8>>,
    /// Plugin-owned files by name.
    pub plugin_files: HashMap<String, Vec<u8>>,
    /// Dump options handed to plugins.
    pub dump_options: DumpOptions,
    /// Restore options handed to plugins.
    pub restore_options: RestoreOptions,
    /// What [`RestoreContext::current_pid`] answers.
    pub pid: i32,
    /// What `tasks()` answers; the task services accept only these pids/tids.
    pub tasks: Vec<TaskIds>,
    /// Fake task memory: `(pid, start address, bytes)` regions the memory services read and
    /// write.
    pub memory: Vec<(i32, u64, Vec<u8>)>,
    /// Every `remote_syscall` made: `(tid, nr, args)`. The fake answers `getpid` with the
    /// thread's pid and anything else with `-ENOSYS`.
    pub syscalls: Vec<(i32, i64, [u64; 6])>,
    /// Every `install_fd`: `(pid, duplicate of the fd, target, cloexec)`.
    pub installed: Vec<(i32, OwnedFd, i32, bool)>,
    /// What `file_id_of` answers: `(pid, fd)` → file id.
    pub file_ids: HashMap<(i32, i32), u32>,
    /// What `epoll_target_is` answers: `(pid, epfd, tfd, toff, fd)` listed are the target.
    pub epoll_targets: Vec<(i32, i32, i32, u32, i32)>,
    /// What `task_fds` answers, by pid.
    pub task_fds: HashMap<i32, Vec<TaskFd>>,
    /// Contents stored by `dump_shmem`, whole (holes as zeros), by shmid.
    pub shmem: HashMap<u64, Vec<u8>>,
    /// What `plugin_state` lends (API 0.5): the state of the one plugin under test, set
    /// with [`MemoryImages::start_run`] (as the host does at the start of a run).
    pub state: Option<PluginState>,
    /// Every `dump_file_in_flight` (API 0.6): `(owner pid, duplicate of the file, the id it
    /// got)`. The fake gives each call a new id (it does not compare descriptions) and
    /// dumps nothing: a test runs the claiming handler itself if it wants the entry.
    pub in_flight: Vec<(i32, OwnedFd, u32)>,
    /// What `open_file_by_id` (API 0.6) hands a duplicate of, by file id.
    pub files_by_id: HashMap<u32, OwnedFd>,
    /// What `host_pid` (API 0.8) answers, image pid -> pid in criu's namespace: a pid not
    /// listed answers `None`, as criu does before the tasks exist; a test fills it (test
    /// tasks live in its own pid namespace: each pid maps to itself) when they do.
    pub host_pids: HashMap<i32, i32>,
    memo: HashMap<String, u64>,
    next_file_id: u32,
    kept: HashMap<String, OwnedFd>,
}

impl MemoryImages {
    /// An empty images directory; `new_file_id` hands out `first_id + 1`, `first_id + 2`, ...
    pub fn new(first_id: u32) -> Self {
        MemoryImages {
            next_file_id: first_id,
            pid: std::process::id() as i32,
            ..Default::default()
        }
    }

    /// Like [`MemoryImages::new`], with `plugin`'s state for a dump already created.
    pub fn for_plugin(first_id: u32, plugin: &dyn Plugin) -> Result<Self, PluginError> {
        let mut m = MemoryImages::new(first_id);
        m.start_run(plugin, RunKind::Dump)?;
        Ok(m)
    }

    /// Replaces the plugin state by `plugin`'s new one for a run of `kind` (the old one is
    /// dropped, as at the end of a run).
    pub fn start_run(&mut self, plugin: &dyn Plugin, kind: RunKind) -> Result<(), PluginError> {
        self.state = None;
        self.state = plugin.new_state(kind)?;
        Ok(())
    }

    /// The body of an image, if written.
    pub fn image(&self, image: ImageRef) -> Option<&[u8]> {
        let name = image.to_string();
        self.images.get(&name).map(Vec::as_slice)
    }

    /// Forgets kept fds and memos (as between two restores).
    pub fn reset_state(&mut self) {
        self.kept.clear();
        self.memo.clear();
    }
}

impl MemoryImages {
    fn pid_of(&self, tid: i32, service: &'static str) -> Result<i32, PluginError> {
        self.tasks
            .iter()
            .find(|t| t.pid == tid || t.tids.contains(&tid))
            .map(|t| t.pid)
            .ok_or_else(|| PluginError::Unavailable {
                service,
                why: format!("{tid} is not a task of this tree"),
            })
    }

    fn region(&mut self, pid: i32, addr: u64, len: usize) -> Result<&mut [u8], PluginError> {
        let fault = || PluginError::Task {
            pid,
            op: format!("memory access at {addr:#x} (+{len})"),
            source: Box::new(io::Error::from_raw_os_error(libc::EFAULT)),
        };
        self.pid_of(pid, "task memory")?;
        let (_, start, bytes) = self
            .memory
            .iter_mut()
            .find(|(p, start, bytes)| {
                *p == pid && addr >= *start && addr + len as u64 <= start + bytes.len() as u64
            })
            .ok_or_else(fault)?;
        let off = (addr - *start) as usize;
        Ok(&mut bytes[off..off + len])
    }

    fn fake_syscall(&mut self, tid: i32, nr: i64, args: [u64; 6]) -> Result<i64, PluginError> {
        let pid = self.pid_of(tid, "remote_syscall")?;
        self.syscalls.push((tid, nr, args));
        Ok(if nr == libc::SYS_getpid {
            i64::from(pid)
        } else {
            -i64::from(libc::ENOSYS)
        })
    }

    fn own_dup(&self, pid: i32, fd: i32) -> Result<OwnedFd, PluginError> {
        self.pid_of(pid, "dup_task_fd")?;
        // The fake tasks share this process's fd table.
        let f = std::fs::File::open(format!("/proc/self/fd/{fd}")).map_err(|source| {
            PluginError::Task {
                pid,
                op: format!("dup of fd {fd}"),
                source: Box::new(source),
            }
        })?;
        Ok(f.into())
    }
}

fn file_name(image: ImageRef) -> Result<String, PluginError> {
    image.kind.file_name(image.id).ok_or_else(|| {
        PluginError::bad_image(image.kind.criu_name(), "image kind needs an id, none given")
    })
}

impl DumpContext for MemoryImages {
    fn write_entry(
        &mut self,
        image: ImageRef,
        entry: &[u8],
        extra: &[u8],
    ) -> Result<(), PluginError> {
        let body = self.images.entry(file_name(image)?).or_default();
        body.extend_from_slice(&crate::frame_entries([(entry, extra)]));
        Ok(())
    }

    fn write_plugin_file(&mut self, name: &str, data: &[u8]) -> Result<(), PluginError> {
        self.plugin_files.insert(name.to_string(), data.to_vec());
        Ok(())
    }

    fn new_file_id(&mut self) -> u32 {
        self.next_file_id += 1;
        self.next_file_id
    }

    fn memo(&self, key: &str) -> Option<u64> {
        self.memo.get(key).copied()
    }

    fn set_memo(&mut self, key: &str, value: u64) {
        self.memo.insert(key.to_string(), value);
    }

    fn options(&self) -> &DumpOptions {
        &self.dump_options
    }

    fn tasks(&self) -> Vec<TaskIds> {
        self.tasks.clone()
    }

    fn read_task_memory(&mut self, pid: i32, addr: u64, buf: &mut [u8]) -> Result<(), PluginError> {
        let len = buf.len();
        buf.copy_from_slice(self.region(pid, addr, len)?);
        Ok(())
    }

    fn write_task_memory(&mut self, pid: i32, addr: u64, data: &[u8]) -> Result<(), PluginError> {
        self.region(pid, addr, data.len())?.copy_from_slice(data);
        Ok(())
    }

    fn remote_syscall(&mut self, tid: i32, nr: i64, args: [u64; 6]) -> Result<i64, PluginError> {
        self.fake_syscall(tid, nr, args)
    }

    fn dup_task_fd(&mut self, pid: i32, fd: i32) -> Result<OwnedFd, PluginError> {
        self.own_dup(pid, fd)
    }

    fn file_id_of(&self, pid: i32, fd: i32) -> Option<u32> {
        self.file_ids.get(&(pid, fd)).copied()
    }

    fn epoll_target_is(
        &mut self,
        pid: i32,
        epfd: i32,
        tfd: i32,
        toff: u32,
        fd: i32,
    ) -> Result<bool, PluginError> {
        self.pid_of(pid, "epoll_target_is")?;
        Ok(self.epoll_targets.contains(&(pid, epfd, tfd, toff, fd)))
    }

    fn dump_shmem(&mut self, shmid: u64, file: BorrowedFd<'_>) -> Result<(), PluginError> {
        use std::io::Read;
        if self.shmem.contains_key(&shmid) {
            return Ok(());
        }
        let path = format!("/proc/self/fd/{}", file.as_raw_fd());
        let mut data = Vec::new();
        std::fs::File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut data))
            .map_err(|source| PluginError::Path {
                path: path.into(),
                op: "read",
                source,
            })?;
        self.shmem.insert(shmid, data);
        Ok(())
    }

    fn plugin_state(&mut self) -> Option<&mut (dyn std::any::Any + Send)> {
        self.state.as_deref_mut()
    }

    fn dump_file_in_flight(
        &mut self,
        owner_pid: i32,
        file: BorrowedFd<'_>,
    ) -> Result<u32, PluginError> {
        let dup = file
            .try_clone_to_owned()
            .map_err(|source| PluginError::Task {
                pid: owner_pid,
                op: "dup of a file in flight".into(),
                source: Box::new(source),
            })?;
        let id = self.new_file_id();
        self.in_flight.push((owner_pid, dup, id));
        Ok(id)
    }
}

impl RestoreContext for MemoryImages {
    fn read_image(&mut self, image: ImageRef) -> Result<Option<Vec<u8>>, PluginError> {
        Ok(self.images.get(&file_name(image)?).cloned())
    }

    fn read_plugin_file(&mut self, name: &str) -> Result<Option<Vec<u8>>, PluginError> {
        Ok(self.plugin_files.get(name).cloned())
    }

    fn current_pid(&self) -> i32 {
        self.pid
    }

    fn restored_pid(&self, old: i32) -> Option<i32> {
        Some(old)
    }

    fn host_pid(&self, image_pid: i32) -> Option<i32> {
        self.host_pids.get(&image_pid).copied()
    }

    fn keep_fd(&mut self, key: &str, fd: OwnedFd) -> Result<(), PluginError> {
        self.kept.insert(key.to_string(), fd);
        Ok(())
    }

    fn kept_fd(&self, key: &str) -> Option<BorrowedFd<'_>> {
        self.kept.get(key).map(|fd| fd.as_fd())
    }

    fn options(&self) -> &RestoreOptions {
        &self.restore_options
    }

    fn tasks(&self) -> Vec<TaskIds> {
        self.tasks.clone()
    }

    fn read_task_memory(&mut self, pid: i32, addr: u64, buf: &mut [u8]) -> Result<(), PluginError> {
        let len = buf.len();
        buf.copy_from_slice(self.region(pid, addr, len)?);
        Ok(())
    }

    fn write_task_memory(&mut self, pid: i32, addr: u64, data: &[u8]) -> Result<(), PluginError> {
        self.region(pid, addr, data.len())?.copy_from_slice(data);
        Ok(())
    }

    fn remote_syscall(&mut self, tid: i32, nr: i64, args: [u64; 6]) -> Result<i64, PluginError> {
        self.fake_syscall(tid, nr, args)
    }

    fn dup_task_fd(&mut self, pid: i32, fd: i32) -> Result<OwnedFd, PluginError> {
        self.own_dup(pid, fd)
    }

    fn install_fd(
        &mut self,
        pid: i32,
        fd: BorrowedFd<'_>,
        target: i32,
        cloexec: bool,
    ) -> Result<(), PluginError> {
        self.pid_of(pid, "install_fd")?;
        let dup = fd
            .try_clone_to_owned()
            .map_err(|source| PluginError::Task {
                pid,
                op: format!("dup for fd {target}"),
                source: Box::new(source),
            })?;
        self.installed.push((pid, dup, target, cloexec));
        Ok(())
    }

    fn task_fds(&self, pid: i32) -> Result<Vec<TaskFd>, PluginError> {
        self.pid_of(pid, "task_fds")?;
        Ok(self.task_fds.get(&pid).cloned().unwrap_or_default())
    }

    fn restore_shmem(
        &mut self,
        shmid: u64,
        size: u64,
        file: BorrowedFd<'_>,
    ) -> Result<(), PluginError> {
        use std::os::unix::fs::FileExt;
        let Some(data) = self.shmem.get(&shmid) else {
            return Ok(());
        };
        if data.len() as u64 > size {
            return Err(PluginError::bad_image(
                format!("pagemap-shmem-{shmid}.img"),
                format!("{} bytes for a {size}-byte object", data.len()),
            ));
        }
        let f = std::fs::File::from(file.try_clone_to_owned().map_err(|source| {
            PluginError::Restore {
                id: 0,
                what: format!("shmem {shmid}"),
                op: "dup",
                source,
            }
        })?);
        f.write_all_at(data, 0)
            .map_err(|source| PluginError::Restore {
                id: 0,
                what: format!("shmem {shmid}"),
                op: "pwrite",
                source,
            })
    }

    fn open_file_by_id(&mut self, id: u32) -> Result<OwnedFd, PluginError> {
        let fd = self.files_by_id.get(&id).ok_or_else(|| {
            PluginError::bad_image("files.img", format!("no entry with file id {id}"))
        })?;
        fd.try_clone().map_err(|source| PluginError::Restore {
            id,
            what: "files_by_id".into(),
            op: "dup",
            source,
        })
    }

    fn plugin_state(&mut self) -> Option<&mut (dyn std::any::Any + Send)> {
        self.state.as_deref_mut()
    }
}

/// Describes `file`, an fd of the calling process, as the core would describe a task's fd:
/// link from `/proc/self/fd`, fdinfo, fstat. The [`FdDesc::file`] is a duplicate (same
/// description), like `pidfd_getfd` gives.
pub fn own_fd_desc(file: BorrowedFd<'_>) -> io::Result<FdDesc> {
    let n = file.as_raw_fd();
    let link = std::fs::read_link(format!("/proc/self/fd/{n}"))?
        .to_string_lossy()
        .into_owned();
    let raw = std::fs::read_to_string(format!("/proc/self/fdinfo/{n}"))?;
    let fdinfo = parse_fdinfo(&raw)?;
    let st = nix::sys::stat::fstat(file)?;
    let stat = FileStat {
        mode: st.st_mode,
        dev: st.st_dev,
        ino: st.st_ino,
        rdev: st.st_rdev,
        size: st.st_size,
        nlink: st.st_nlink,
        uid: st.st_uid,
        gid: st.st_gid,
        atime: Timespec {
            sec: st.st_atime,
            nsec: st.st_atime_nsec,
        },
        mtime: Timespec {
            sec: st.st_mtime,
            nsec: st.st_mtime_nsec,
        },
    };
    Ok(FdDesc {
        pid: std::process::id() as i32,
        fd: n,
        link,
        fdinfo,
        stat,
        owner: FileOwner::default(),
        file: file.try_clone_to_owned()?,
    })
}

/// Parses the common lines of a `/proc/PID/fdinfo/N` text.
pub fn parse_fdinfo(raw: &str) -> io::Result<FdInfo> {
    let mut info = FdInfo {
        raw: raw.to_string(),
        ..FdInfo::default()
    };
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("fdinfo {what}"));
    info.pos = info
        .field("pos")
        .ok_or_else(|| bad("pos"))?
        .parse()
        .map_err(|_| bad("pos"))?;
    let flags = info.field("flags").ok_or_else(|| bad("flags"))?;
    info.flags = u32::from_str_radix(flags, 8).map_err(|_| bad("flags"))?;
    info.mnt_id = match info.field("mnt_id") {
        Some(v) => v.parse().map_err(|_| bad("mnt_id"))?,
        None => 0,
    };
    info.ino = match info.field("ino") {
        Some(v) => v.parse().map_err(|_| bad("ino"))?,
        None => 0,
    };
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_fd_of_a_file() {
        let f = std::fs::File::open("/proc/self/status").unwrap();
        let d = own_fd_desc(f.as_fd()).unwrap();
        assert!(d.link.ends_with("/status"), "{}", d.link);
        assert!(d.stat.is_reg());
        assert_eq!(d.fdinfo.pos, 0);
        // std opens with O_CLOEXEC
        assert!(d.fdinfo.cloexec());
        assert_eq!(
            d.fdinfo.file_flags() & libc::O_ACCMODE as u32,
            libc::O_RDONLY as u32
        );
    }

    #[test]
    fn memory_images_frame_and_read_back() {
        let mut m = MemoryImages::new(10);
        assert_eq!(m.new_file_id(), 11);
        m.write_entry(ImageRef::ghost_file(0x1f), b"ab", b"xyz")
            .unwrap();
        assert_eq!(
            m.images.get("ghost-file-1f.img").unwrap(),
            &[2, 0, 0, 0, b'a', b'b', b'x', b'y', b'z']
        );
        assert!(m.read_image(ImageRef::PIPES_DATA).unwrap().is_none());
        let unnumbered = ImageRef::single(crate::PluginImageKind::GhostFile);
        assert!(m.write_entry(unnumbered, b"", b"").is_err());
    }

    #[test]
    fn fdinfo_parse_rejects_garbage() {
        assert!(parse_fdinfo("pos:\tx\nflags:\t0\n").is_err());
        assert!(parse_fdinfo("pos:\t1\n").is_err());
        let i = parse_fdinfo("pos:\t12\nflags:\t0100002\nmnt_id:\t3\n").unwrap();
        assert_eq!((i.pos, i.flags, i.mnt_id, i.ino), (12, 0o100002, 3, 0));
    }
}
