//! Restore: each inode created once and filled, each description a reopen of it; seals
//! added once every task's memory is mapped.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use criu_plugin_api::{FileRestorer, PluginError, RestoreContext, read_messages};
use criu_proto::images::{FdTypes, FileEntry, MemfdFileEntry, MemfdInodeEntry};
use nix::fcntl::{FcntlArg, OFlag, SealFlag, fcntl, open};
use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::sys::stat::Mode;
use nix::unistd::{Whence, lseek};

use crate::MEMFD_INODES;
use crate::name::hugetlb_page_size;

/// The kept-fd key of an inode whose seals are still to add.
fn seal_key(inode_id: u32) -> String {
    format!("{}:seal:{inode_id}", crate::NAME)
}

/// The seals to add after creation: none when the memfd was made without
/// `MFD_ALLOW_SEALING` (its only seal is then `F_SEAL_SEAL`, which the kernel sets).
fn pending_seals(mie: &MemfdInodeEntry) -> u32 {
    if mie.seals == libc::F_SEAL_SEAL as u32 {
        0
    } else {
        mie.seals
    }
}

/// The memfd inodes of one restore and the fds of those created so far.
#[derive(Debug)]
pub struct MemfdRestorer {
    inodes: BTreeMap<u32, MemfdInodeEntry>,
    created: BTreeMap<u32, OwnedFd>,
    /// Inodes whose `memfd_create` description went to a task already.
    handed_out: std::collections::BTreeSet<u32>,
}

fn restore_err(id: u32, what: &str, op: &'static str, e: nix::errno::Errno) -> PluginError {
    PluginError::Restore {
        id,
        what: what.to_string(),
        op,
        source: e.into(),
    }
}

impl MemfdRestorer {
    /// Reads `memfd.img`; every MEMFD entry of `entries` must name one of its inodes.
    pub fn start(ctx: &mut dyn RestoreContext, entries: &[FileEntry]) -> Result<Self, PluginError> {
        let mut inodes = BTreeMap::new();
        for mie in read_messages::<MemfdInodeEntry>(ctx, MEMFD_INODES)? {
            let id = u32::try_from(mie.inode_id).map_err(|_| {
                PluginError::bad_image("memfd.img", format!("inode id {}", mie.inode_id))
            })?;
            if inodes.insert(id, mie).is_some() {
                return Err(PluginError::bad_image(
                    "memfd.img",
                    format!("inode id {id} twice"),
                ));
            }
        }
        for e in entries.iter().filter(|e| e.r#type == FdTypes::Memfd as i32) {
            let m = memfd_of(e)?;
            if !inodes.contains_key(&m.inode_id) {
                return Err(PluginError::bad_image(
                    "files.img",
                    format!(
                        "memfd file id {} names inode {}, not in memfd.img",
                        e.id, m.inode_id
                    ),
                ));
            }
        }
        Ok(MemfdRestorer {
            inodes,
            created: BTreeMap::new(),
            handed_out: Default::default(),
        })
    }

    /// The inode `inode_id`, created and filled on first use.
    fn inode(
        &mut self,
        ctx: &mut dyn RestoreContext,
        inode_id: u32,
    ) -> Result<&OwnedFd, PluginError> {
        if !self.created.contains_key(&inode_id) {
            let mie = self.inodes.get(&inode_id).ok_or_else(|| {
                PluginError::bad_image("memfd.img", format!("no inode {inode_id}"))
            })?;
            let fd = create_inode(ctx, inode_id, mie)?;
            self.created.insert(inode_id, fd);
        }
        self.created
            .get(&inode_id)
            .ok_or_else(|| PluginError::bad_image("memfd.img", format!("no inode {inode_id}")))
    }
}

fn memfd_of(entry: &FileEntry) -> Result<&MemfdFileEntry, PluginError> {
    entry.memfd.as_ref().ok_or_else(|| {
        PluginError::bad_image(
            "files.img",
            format!("MEMFD file id {} without memfd member", entry.id),
        )
    })
}

impl FileRestorer for MemfdRestorer {
    fn open_file(
        &mut self,
        ctx: &mut dyn RestoreContext,
        entry: &FileEntry,
    ) -> Result<OwnedFd, PluginError> {
        let m = memfd_of(entry)?;
        let first_writer = !self.handed_out.contains(&m.inode_id);
        let inode = self.inode(ctx, m.inode_id)?;
        let what = format!("memfd inode {}", m.inode_id);
        // A new description of the one inode, with this description's own flags.
        let keep = OFlag::O_ACCMODE
            | OFlag::O_APPEND
            | OFlag::O_NONBLOCK
            | OFlag::O_NOATIME
            | OFlag::O_DSYNC
            | OFlag::O_SYNC
            | OFlag::O_DIRECT
            | OFlag::O_LARGEFILE;
        let flags = OFlag::from_bits_truncate(m.flags as i32) & keep;
        // The description memfd_create made is no writer of the inode for the kernel (a
        // reopen for writing is, and then execveat of the memfd fails with ETXTBSY): the
        // first read-write description gets it, as the task most likely had it.
        let fd = if flags & OFlag::O_ACCMODE == OFlag::O_RDWR && first_writer {
            let fd = inode.try_clone().map_err(|e| PluginError::Restore {
                id: entry.id,
                what: what.clone(),
                op: "dup",
                source: e,
            })?;
            let extra = flags & !(OFlag::O_ACCMODE | OFlag::O_LARGEFILE);
            if !extra.is_empty() {
                fcntl(fd.as_fd(), FcntlArg::F_SETFL(extra | OFlag::O_LARGEFILE))
                    .map_err(|e| restore_err(entry.id, &what, "fcntl(F_SETFL)", e))?;
            }
            self.handed_out.insert(m.inode_id);
            fd
        } else {
            let path = format!("/proc/self/fd/{}", inode.as_raw_fd());
            open(path.as_str(), flags | OFlag::O_CLOEXEC, Mode::empty())
                .map_err(|e| restore_err(entry.id, &what, "open", e))?
        };
        if m.pos != 0 {
            let pos = i64::try_from(m.pos).map_err(|_| {
                PluginError::bad_image("files.img", format!("memfd offset {}", m.pos))
            })?;
            lseek(fd.as_fd(), pos, Whence::SeekSet)
                .map_err(|e| restore_err(entry.id, &what, "lseek", e))?;
        }
        tracing::debug!(
            id = entry.id,
            inode = m.inode_id,
            pos = m.pos,
            "memfd description"
        );
        Ok(fd)
    }
}

/// Creates inode `inode_id` as `mie` describes it (contents, size, mode, owner); its seals
/// wait in a kept fd for [`apply_seals`].
fn create_inode(
    ctx: &mut dyn RestoreContext,
    inode_id: u32,
    mie: &MemfdInodeEntry,
) -> Result<OwnedFd, PluginError> {
    let what = format!("memfd:{} (inode {inode_id})", mie.name);
    let err = |op, e| restore_err(0, &what, op, e);
    if mie.criu_rs_anon_shmem == Some(true) {
        return anon_shmem_inode(ctx, mie, &what);
    }
    let mut flags = MFdFlags::MFD_CLOEXEC;
    if mie.seals != libc::F_SEAL_SEAL as u32 {
        flags |= MFdFlags::MFD_ALLOW_SEALING;
    }
    if let Some(h) = mie.hugetlb_flag {
        check_huge_pages(ctx, mie, h)?;
        flags |= MFdFlags::from_bits_retain(h);
    }
    let fd = memfd_create(mie.name.as_str(), flags).map_err(|e| err("memfd_create", e))?;
    let size = i64::try_from(mie.size)
        .map_err(|_| PluginError::bad_image("memfd.img", format!("size {}", mie.size)))?;
    nix::unistd::ftruncate(&fd, size).map_err(|e| err("ftruncate", e))?;
    ctx.restore_shmem(u64::from(mie.shmid), mie.size, fd.as_fd())?;
    if let Some(mode) = mie.mode {
        nix::sys::stat::fchmod(&fd, Mode::from_bits_truncate(mode & 0o7777))
            .map_err(|e| err("fchmod", e))?;
    }
    nix::unistd::fchown(
        &fd,
        Some(nix::unistd::Uid::from_raw(mie.uid)),
        Some(nix::unistd::Gid::from_raw(mie.gid)),
    )
    .map_err(|e| err("fchown", e))?;
    if pending_seals(mie) != 0 {
        let dup = fd.try_clone().map_err(|e| PluginError::Restore {
            id: 0,
            what: what.clone(),
            op: "dup",
            source: e,
        })?;
        ctx.keep_fd(&seal_key(inode_id), dup)?;
    }
    tracing::debug!(name = %mie.name, inode_id, size = mie.size, "memfd inode created");
    Ok(fd)
}

/// Anonymous shared memory dumped as a memfd inode: the core's object of its `shmid` (the
/// one the tree's shared mappings of it map), reopened for a description of our own.
fn anon_shmem_inode(
    ctx: &mut dyn RestoreContext,
    mie: &MemfdInodeEntry,
    what: &str,
) -> Result<OwnedFd, PluginError> {
    let obj = ctx.anon_shmem(u64::from(mie.shmid), mie.size)?;
    let path = format!("/proc/self/fd/{}", obj.as_raw_fd());
    let fd = open(
        path.as_str(),
        OFlag::O_RDWR | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| restore_err(0, what, "open", e))?;
    tracing::debug!(
        shmid = mie.shmid,
        size = mie.size,
        "anonymous shared memory inode"
    );
    Ok(fd)
}

/// A hugetlb memfd needs free huge pages of its size; without them the restore would die of
/// SIGBUS or ENOMEM later, so it is refused here, naming the knob.
fn check_huge_pages(
    ctx: &mut dyn RestoreContext,
    mie: &MemfdInodeEntry,
    flag: u32,
) -> Result<(), PluginError> {
    let page = hugetlb_page_size(flag).unwrap_or(2 << 20);
    let kb = page / 1024;
    let knob = format!("/sys/kernel/mm/hugepages/hugepages-{kb}kB");
    let free = std::fs::read_to_string(format!("{knob}/free_hugepages"))
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let need = mie.size.div_ceil(page);
    if free >= need.max(1) {
        return Ok(());
    }
    Err(PluginError::Unsupported {
        resource: format!("hugetlb memfd:{} ({} bytes)", mie.name, mie.size),
        pid: ctx.current_pid(),
        hint: format!(
            "it needs {need} free huge pages of {kb} kB, the kernel has {free}: raise {knob}/nr_hugepages"
        ),
    })
}

/// Adds every inode's seals (once all tasks' memory is mapped: `F_SEAL_FUTURE_WRITE` and
/// `F_SEAL_WRITE` forbid the writable shared mappings made before).
pub fn apply_seals(ctx: &mut dyn RestoreContext) -> Result<(), PluginError> {
    for mie in read_messages::<MemfdInodeEntry>(ctx, MEMFD_INODES)? {
        let seals = pending_seals(&mie);
        let Ok(inode_id) = u32::try_from(mie.inode_id) else {
            continue;
        };
        if seals == 0 {
            continue;
        }
        // Not opened in this restore (no task used it): nothing to seal.
        let Some(fd) = ctx.kept_fd(&seal_key(inode_id)) else {
            continue;
        };
        fcntl(
            fd,
            FcntlArg::F_ADD_SEALS(SealFlag::from_bits_retain(seals as i32)),
        )
        .map_err(|e| {
            restore_err(
                0,
                &format!("memfd:{} (inode {inode_id})", mie.name),
                "F_ADD_SEALS",
                e,
            )
        })?;
    }
    Ok(())
}
