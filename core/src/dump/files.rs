//! Files: every fd of the task, plus the exe link, cwd/root and mapped files, each dumped by
//! the plugin that claims it into files.img; fds sharing an open file description get one
//! id. The core itself knows no fd kind.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

use criu_plugin_api::{self as api, DumpContext, FdDesc, FileOwner, FileStat, Plugin, Timespec};
use criu_proto::images::{FdinfoEntry, FileEntry, FsEntry};

use crate::image::{ImageDir, ImageKind};
use crate::proc::{fdinfo, misc, pid_path, status};

use super::DumpError;
use super::ctx::CoreDumpContext;
use super::fdaccess::FdAccess;
use super::memory::Vma;

/// Ids handed out so far, keyed by what identifies a file for sharing.
#[derive(Debug, Default)]
pub struct FileIds {
    /// (dev, ino) of exe/VMA files → file id and `files.img` entry type (CRIU shares one
    /// entry between them).
    by_inode: HashMap<(u64, u64), (u32, i32)>,
}

pub(super) fn stat_of(fd: &OwnedFd) -> Result<FileStat, nix::errno::Errno> {
    let s = nix::sys::stat::fstat(fd)?;
    Ok(FileStat {
        mode: s.st_mode,
        dev: s.st_dev,
        ino: s.st_ino,
        rdev: s.st_rdev,
        size: s.st_size,
        nlink: s.st_nlink,
        uid: s.st_uid,
        gid: s.st_gid,
        atime: Timespec {
            sec: s.st_atime,
            nsec: s.st_atime_nsec,
        },
        mtime: Timespec {
            sec: s.st_mtime,
            nsec: s.st_mtime_nsec,
        },
    })
}

pub(super) fn to_api_fdinfo(fi: &fdinfo::FdInfo, raw: String) -> api::FdInfo {
    api::FdInfo {
        pos: fi.pos,
        flags: fi.flags,
        mnt_id: fi.mnt_id.unwrap_or(0),
        ino: fi.ino.unwrap_or(0),
        raw,
    }
}

/// Ask the plugins for `desc` and append its entry to files.img; then the files in flight
/// the plugin met on the way ([`CoreDumpContext::dump_pending_in_flight`]).
pub(super) fn dump_desc(
    plugins: &[&'static dyn Plugin],
    ctx: &mut CoreDumpContext<'_>,
    desc: &FdDesc,
    id: u32,
) -> Result<FileEntry, DumpError> {
    let pid = desc.pid;
    let h = api::find_fd_handler(plugins, desc).map_err(|source| match source {
        api::PluginError::NoHandler { fd, link, .. } => DumpError::NoPlugin {
            pid,
            fd,
            link,
            searched: crate::plugins::searched_dirs(),
        },
        source => DumpError::Plugin {
            pid,
            what: desc.describe(),
            source,
        },
    })?;
    tracing::debug!(pid, fd = desc.fd, link = %desc.link, plugin = h.plugin.info().name, id, "dumping file");
    let name = h.plugin.info().name;
    let entry = ctx
        .as_plugin(name, |ctx| h.handler.dump_file(ctx, desc, id))
        .map_err(|source| DumpError::Plugin {
            pid,
            what: format!("{} (plugin {})", desc.describe(), h.plugin.info().name),
            source,
        })?;
    ctx.note_plugin(h.plugin.info().name);
    ctx.append_file_entry(pid, &entry)?;
    ctx.dump_pending_in_flight()?;
    Ok(entry)
}

/// A file reached by path (exe, cwd, root, map_files): opened by us, flags 0 as CRIU
/// records them.
fn path_desc(pid: i32, open_path: &str, link: String) -> Result<FdDesc, DumpError> {
    let file = std::fs::File::open(open_path).map_err(|e| {
        if e.raw_os_error() == Some(libc::ESRCH)
            && let Some(refused) = super::deadproc::refusal(pid, open_path, &link)
        {
            return refused;
        }
        DumpError::sys(
            pid,
            "files",
            format!("open {open_path}"),
            nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        )
    })?;
    let file: OwnedFd = file.into();
    let stat = stat_of(&file)
        .map_err(|e| DumpError::sys(pid, "files", format!("fstat {open_path}"), e))?;
    let own = std::process::id() as i32;
    let fi =
        fdinfo::read_fdinfo(own, file.as_raw_fd()).map_err(|e| DumpError::proc(pid, "files", e))?;
    let mut info = to_api_fdinfo(&fi, String::new());
    info.flags = 0;
    info.pos = 0;
    info.raw = format!(
        "pos:\t0\nflags:\t0\nmnt_id:\t{}\nino:\t{}\n",
        info.mnt_id, info.ino
    );
    Ok(FdDesc {
        pid,
        fd: -1,
        link,
        fdinfo: info,
        stat,
        owner: FileOwner::default(),
        file,
    })
}

/// A file id (and its entry type) for a file reached by path, shared by inode with earlier
/// exe/VMA files.
fn path_file_id(
    plugins: &[&'static dyn Plugin],
    ctx: &mut CoreDumpContext<'_>,
    ids: &mut FileIds,
    pid: i32,
    open_path: &str,
    link: String,
    share: bool,
) -> Result<(u32, i32), DumpError> {
    let desc = path_desc(pid, open_path, link)?;
    let key = (desc.stat.dev, desc.stat.ino);
    if share && let Some(&known) = ids.by_inode.get(&key) {
        return Ok(known);
    }
    let id = ctx.new_file_id();
    let ty = dump_desc(plugins, ctx, &desc, id)?.r#type;
    if share {
        ids.by_inode.insert(key, (id, ty));
    }
    Ok((id, ty))
}

/// exe and mapped files: returns exe_file_id and fills `shmid` of file VMAs with their file
/// id. A VMA whose file a plugin dumped as a MEMFD entry gets `VMA_AREA_MEMFD`, as in CRIU
/// (its shared contents are the memfd's; private pages stay the task's).
pub fn dump_mm_files(
    plugins: &[&'static dyn Plugin],
    ctx: &mut CoreDumpContext<'_>,
    ids: &mut FileIds,
    pid: i32,
    vmas: &mut [Vma],
) -> Result<u32, DumpError> {
    let exe_link = misc::read_link(pid, "exe").map_err(|e| DumpError::proc(pid, "files", e))?;
    let exe_path = pid_path(pid, "exe");
    let exe_id = path_file_id(
        plugins,
        ctx,
        ids,
        pid,
        &exe_path.to_string_lossy(),
        exe_link.to_string_lossy().into_owned(),
        true,
    )?
    .0;
    for v in vmas.iter_mut() {
        let Some(f) = &v.file else { continue };
        let (id, ty) = match ids.by_inode.get(&(f.dev, f.ino)) {
            Some(&known) => known,
            None => path_file_id(plugins, ctx, ids, pid, &f.map_files, f.path.clone(), true)?,
        };
        v.entry.shmid = id as u64;
        if ty == criu_proto::images::FdTypes::Memfd as i32 {
            v.entry.status |= super::memory::VMA_AREA_MEMFD;
        }
    }
    Ok(exe_id)
}

/// An fd already dumped (of any process of the tree, or criu's own copy of a file in
/// flight), for sharing its file id.
#[derive(Debug, Clone, Copy)]
pub struct SeenFd {
    /// The task holding it (criu's own pid for a file in flight).
    pub pid: i32,
    pub fd: i32,
    pub dev: u64,
    pub ino: u64,
    pub id: u32,
    pub fd_type: i32,
}

/// Every fd of `pid`: files.img entries (one per open file description, shared with fds of
/// other processes of the tree and files in flight through `ctx.seen_fds`) and fdinfo-<files_id>.img. Returns the
/// number of new descriptions.
///
/// Two passes: first every fd gets its file id (a plugin dumping one fd may ask for the id
/// of another fd of the same task: an epoll names its targets), then the new descriptions
/// are dumped. The task is frozen, so its fd table does not change in between.
#[allow(clippy::too_many_arguments)]
pub fn dump_fds(
    plugins: &[&'static dyn Plugin],
    ctx: &mut CoreDumpContext<'_>,
    dir: &ImageDir,
    access: &mut dyn FdAccess,
    pid: i32,
    files_id: u32,
) -> Result<usize, DumpError> {
    let fds = misc::read_fds(pid).map_err(|e| DumpError::proc(pid, "files", e))?;
    // Pass 1: ids. Each slot: fd, file id, its index in `seen`, and the stat of a
    // description this task brings first. The fd itself is not kept between the passes:
    // holding every fd of a large table at once could exceed our RLIMIT_NOFILE.
    let mut slots: Vec<(i32, u32, usize, Option<FileStat>)> = Vec::with_capacity(fds.len());
    for fd in fds {
        let file = access.get(fd)?;
        let stat = stat_of(&file)
            .map_err(|e| DumpError::sys(pid, "files", format!("fstat fd {fd}"), e))?;
        drop(file);
        // kcmp only where it can answer yes: same inode.
        let mut same = None;
        for (at, o) in ctx.seen_fds.iter().enumerate() {
            if o.dev == stat.dev && o.ino == stat.ino && access.same_description(o.pid, o.fd, fd)? {
                same = Some((o.id, at));
                break;
            }
        }
        let slot = match same {
            Some((id, at)) => (fd, id, at, None),
            None => {
                let id = ctx.new_file_id();
                ctx.seen_fds.push(SeenFd {
                    pid,
                    fd,
                    dev: stat.dev,
                    ino: stat.ino,
                    id,
                    fd_type: 0,
                });
                (fd, id, ctx.seen_fds.len() - 1, Some(stat))
            }
        };
        ctx.set_fd_id(pid, fd, slot.1);
        slots.push(slot);
    }
    // Pass 2: the new descriptions through the plugins, then the fdinfo entries.
    let mut entries = Vec::with_capacity(slots.len());
    let mut descs = 0;
    for (fd, id, at, new) in slots {
        let fdinfo_path = || pid_path(pid, &format!("fdinfo/{fd}"));
        let (_, text) =
            crate::proc::read_text(fdinfo_path()).map_err(|e| DumpError::proc(pid, "files", e))?;
        let fi = fdinfo::parse_fdinfo(&text).map_err(|source| DumpError::Proc {
            pid,
            step: "files",
            source: crate::proc::ProcError::Parse {
                path: fdinfo_path(),
                source,
            },
        })?;
        if let Some(lock) = lock_held(pid, fd, &fi)? {
            // With --file-locks a plugin dumps every lock once the fds have ids; without it,
            // refused as CRIU does.
            if criu_plugin_api::DumpContext::options(ctx).file_locks {
                ctx.first_lock.get_or_insert(lock);
            } else {
                return Err(lock);
            }
        }
        let cloexec = fi.flags & libc::O_CLOEXEC as u32 != 0;
        if let Some(stat) = new {
            let file = access.get(fd)?;
            let link = misc::read_link(pid, &format!("fd/{fd}"))
                .map_err(|e| DumpError::proc(pid, "files", e))?;
            // fcntl on an O_PATH description fails with EBADF: such files have no owner.
            let owner = if fi.flags & libc::O_PATH as u32 != 0 {
                FileOwner::default()
            } else {
                crate::sys::fown::get(file.as_fd()).map_err(|(call, e)| {
                    DumpError::sys(pid, "files", format!("{call} on fd {fd}"), e)
                })?
            };
            let desc = FdDesc {
                pid,
                fd,
                link: link.to_string_lossy().into_owned(),
                fdinfo: to_api_fdinfo(&fi, text),
                stat,
                owner,
                file,
            };
            let e = dump_desc(plugins, ctx, &desc, id)?;
            descs += 1;
            ctx.seen_fds[at].fd_type = e.r#type;
        }
        let ty = ctx.seen_fds[at].fd_type;
        entries.push(FdinfoEntry {
            id,
            flags: if cloexec { libc::FD_CLOEXEC as u32 } else { 0 },
            r#type: ty,
            fd: fd as u32,
            xattr_security_selinux: None,
        });
    }
    dir.write_image(ImageKind::Fdinfo, files_id as u64, &entries)
        .map_err(|source| DumpError::Image {
            pid,
            step: "files",
            source,
        })?;
    Ok(descs)
}

/// The refusal of a lock or lease held through `fd`, which the restore would lose unless it
/// is dumped (`--file-locks`). Checked on every fd, not only the first of a shared
/// description: a POSIX lock shows only in its owner's fdinfo.
fn lock_held(pid: i32, fd: i32, fi: &fdinfo::FdInfo) -> Result<Option<DumpError>, DumpError> {
    let locks = crate::proc::locks::fd_locks(fi).map_err(|source| DumpError::Proc {
        pid,
        step: "files",
        source: crate::proc::ProcError::Parse {
            path: pid_path(pid, &format!("fdinfo/{fd}")),
            source,
        },
    })?;
    let Some(lock) = locks.into_iter().next() else {
        return Ok(None);
    };
    let path = misc::read_link(pid, &format!("fd/{fd}"))
        .map(|l| l.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "?".into());
    Ok(Some(DumpError::FileLock {
        pid,
        fd,
        path,
        lock,
    }))
}

/// cwd and root as files.img entries, and fs-<pid>.img.
pub fn dump_fs(
    plugins: &[&'static dyn Plugin],
    ctx: &mut CoreDumpContext<'_>,
    dir: &ImageDir,
    ids: &mut FileIds,
    pid: i32,
) -> Result<(), DumpError> {
    let mut one = |name: &str| -> Result<u32, DumpError> {
        let link = misc::read_link(pid, name).map_err(|e| DumpError::proc(pid, "files", e))?;
        let p = pid_path(pid, name);
        path_file_id(
            plugins,
            ctx,
            ids,
            pid,
            &p.to_string_lossy(),
            link.to_string_lossy().into_owned(),
            false,
        )
        .map(|(id, _)| id)
    };
    let cwd_id = one("cwd")?;
    let root_id = one("root")?;
    let st = status::read_status(pid).map_err(|e| DumpError::proc(pid, "files", e))?;
    let fs = FsEntry {
        cwd_id,
        root_id,
        umask: st.umask,
    };
    dir.write_single(ImageKind::Fs, pid as u64, &fs)
        .map_err(|source| DumpError::Image {
            pid,
            step: "files",
            source,
        })
}

/// (dev, ino) of a path, for tests.
pub fn inode_of(path: &str) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}
