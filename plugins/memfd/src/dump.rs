//! Dump: one MEMFD `files.img` entry per description, one `memfd.img` entry and one copy of
//! the contents per inode.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::OnceLock;

use criu_plugin_api::{DumpContext, FdDesc, PluginError, write_message};
use criu_proto::images::{FdTypes, FileEntry, MemfdFileEntry, MemfdInodeEntry};
use nix::fcntl::{FcntlArg, OFlag, fcntl, open};
use nix::sys::stat::Mode;

use crate::MEMFD_INODES;
use crate::name::{ANON_SHMEM_NAME, hugetlb_flag, is_anon_shmem_link, memfd_name};

/// What one dump remembers across fds and tasks.
#[derive(Debug, Default)]
pub(crate) struct DumpState {
    /// `memfd.img` inode ids by (dev, inode): every fd and mapping of one memfd shares it.
    inodes: HashMap<(u64, u64), u32>,
}

/// Device of the kernel's internal shmem mount, where every (non-hugetlb) memfd lives.
fn shmem_dev() -> Option<u64> {
    static DEV: OnceLock<Option<u64>> = OnceLock::new();
    *DEV.get_or_init(|| {
        let fd = nix::sys::memfd::memfd_create(
            "criu-memfd-probe",
            nix::sys::memfd::MFdFlags::MFD_CLOEXEC,
        )
        .ok()?;
        nix::sys::stat::fstat(&fd).ok().map(|s| s.st_dev)
    })
}

/// The huge page size of the hugetlbfs `fd` lives on, `None` when it is not on hugetlbfs.
fn hugetlb_page_size(fd: &FdDesc) -> Option<u64> {
    let st = nix::sys::statfs::fstatfs(fd.file()).ok()?;
    (st.filesystem_type() == nix::sys::statfs::HUGETLBFS_MAGIC)
        .then(|| u64::try_from(st.block_size()).unwrap_or(0))
}

/// Whether `fd`'s file lives on the shmem mount (anonymous shared memory lives there).
pub fn on_shmem_fs(fd: &FdDesc) -> bool {
    Some(fd.stat.dev) == shmem_dev()
}

/// Whether `fd`'s file lives where memfds do (the shmem mount, or hugetlbfs for
/// `MFD_HUGETLB`): a file merely named `/memfd:x` elsewhere is not one.
pub fn on_memfd_fs(fd: &FdDesc) -> bool {
    Some(fd.stat.dev) == shmem_dev() || hugetlb_page_size(fd).is_some()
}

fn fd_err(fd: &FdDesc, op: &'static str, e: nix::errno::Errno) -> PluginError {
    PluginError::Fd {
        pid: fd.pid,
        fd: fd.fd,
        link: fd.link.clone(),
        op,
        source: e.into(),
    }
}

/// The `files.img` entry of the description behind `fd`, writing its inode first if this
/// dump has not yet.
pub fn dump_file(
    ctx: &mut dyn DumpContext,
    fd: &FdDesc,
    id: u32,
) -> Result<FileEntry, PluginError> {
    let known = ctx
        .state::<DumpState>()?
        .inodes
        .get(&(fd.stat.dev, fd.stat.ino))
        .copied();
    let inode_id = match known {
        Some(id) => id,
        None => dump_inode(ctx, fd)?,
    };
    tracing::debug!(pid = fd.pid, fd = fd.fd, id, inode_id, "memfd description");
    let memfd = MemfdFileEntry {
        id,
        flags: fd.fdinfo.file_flags(),
        pos: fd.fdinfo.pos,
        fown: fd.owner.to_entry(),
        inode_id,
    };
    Ok(FileEntry {
        r#type: FdTypes::Memfd as i32,
        id,
        memfd: Some(memfd),
        ..Default::default()
    })
}

/// Writes the inode of `fd` (its `memfd.img` entry and its contents); returns its id.
fn dump_inode(ctx: &mut dyn DumpContext, fd: &FdDesc) -> Result<u32, PluginError> {
    let anon_shmem = is_anon_shmem_link(&fd.link);
    let name = if anon_shmem {
        ANON_SHMEM_NAME
    } else {
        memfd_name(&fd.link).ok_or_else(|| PluginError::Unsupported {
            resource: fd.describe(),
            pid: fd.pid,
            hint: "not a memfd link (/memfd:NAME (deleted))".into(),
        })?
    };
    // CRIU numbers inodes from 1 in the order it meets them.
    let inode_id = u32::try_from(ctx.state::<DumpState>()?.inodes.len() + 1)
        .map_err(|_| PluginError::bad_image("memfd.img", "more than 2^32 memfd inodes"))?;

    // A description of our own: reading the contents (lseek SEEK_DATA) must not move the
    // task's offset, which `fd.file` shares.
    let own: OwnedFd = open(
        fd.reopen_path().as_str(),
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| fd_err(fd, "reopen", e))?;
    let hugetlb = hugetlb_page_size(fd);
    let hugetlb_flag = match hugetlb {
        Some(size) => Some(hugetlb_flag(size).ok_or_else(|| PluginError::Unsupported {
            resource: fd.describe(),
            pid: fd.pid,
            hint: format!("hugetlbfs page size {size} has no MFD_HUGE_* encoding"),
        })?),
        None => None,
    };
    let seals = match fcntl(own.as_fd(), FcntlArg::F_GET_SEALS) {
        Ok(s) => s as u32,
        // Kernels before 4.16 refuse seals on hugetlb memfds: as CRIU, "sealed".
        Err(nix::errno::Errno::EINVAL) if hugetlb.is_some() => libc::F_SEAL_SEAL as u32,
        Err(e) => return Err(fd_err(fd, "fcntl(F_GET_SEALS)", e)),
    };
    let size = u64::try_from(fd.stat.size).unwrap_or(0);
    // shmid: the inode number, as CRIU (the shmem device is shared with anonymous shared
    // memory, whose objects are keyed the same way).
    let shmid = u32::try_from(fd.stat.ino).map_err(|_| PluginError::Unsupported {
        resource: fd.describe(),
        pid: fd.pid,
        hint: format!(
            "inode number {} does not fit memfd_inode_entry.shmid (32 bits)",
            fd.stat.ino
        ),
    })?;
    ctx.dump_shmem(u64::from(shmid), own.as_fd())?;
    let entry = MemfdInodeEntry {
        name: name.to_string(),
        uid: fd.stat.uid,
        gid: fd.stat.gid,
        size,
        shmid,
        seals,
        inode_id: u64::from(inode_id),
        hugetlb_flag,
        mode: Some(fd.stat.mode),
        criu_rs_anon_shmem: anon_shmem.then_some(true),
    };
    write_message(ctx, MEMFD_INODES, &entry, &[])?;
    ctx.state::<DumpState>()?
        .inodes
        .insert((fd.stat.dev, fd.stat.ino), inode_id);
    tracing::debug!(name, inode_id, shmid, size, seals, "memfd inode");
    Ok(inode_id)
}
