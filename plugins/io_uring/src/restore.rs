//! Restore: a stand-in fd until every task exists, then each ring set up again inside the
//! task that owned it, installed at every fd that held it, mapped at the dumped addresses,
//! its counters replayed and its memory written back ([`crate::replay`]).

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::{AsFd, OwnedFd};

use criu_plugin_api::{PluginError, RestoreContext, TaskIds, VmaDesc};
use criu_proto::images::FileEntry;

use crate::image::{FILE, RingEntry, UringImage};
use crate::remote::Task;
use crate::ringmem::memfd_name;
use crate::uapi::{self, Params};

/// The plugin's state for one restore.
#[derive(Debug, Default)]
pub struct RestoreState {
    image: Option<UringImage>,
    /// File ids of the rings set up so far.
    done: BTreeSet<u32>,
    /// The registered files of each ring (by its file id): slot and the restored file.
    files: BTreeMap<u32, Vec<(u32, OwnedFd)>>,
}

fn image(ctx: &mut dyn RestoreContext) -> Result<UringImage, PluginError> {
    if let Some(img) = &ctx.state::<RestoreState>()?.image {
        return Ok(img.clone());
    }
    let bytes = ctx
        .read_plugin_file(FILE)?
        .ok_or_else(|| PluginError::bad_image(FILE, "missing (files.img has io_uring entries)"))?;
    let img = UringImage::decode_file(&bytes)?;
    ctx.state::<RestoreState>()?.image = Some(img.clone());
    Ok(img)
}

/// The stand-in for a ring's fd (an eventfd): the ring is replaced into every fd holding it
/// once its owner exists ([`restore_task`]).
pub fn open_file(ctx: &mut dyn RestoreContext, entry: &FileEntry) -> Result<OwnedFd, PluginError> {
    let img = image(ctx)?;
    let Some(ring) = img.ring_by_id(entry.id) else {
        return Err(PluginError::bad_image(
            FILE,
            format!("no ring for file id {}", entry.id),
        ));
    };
    // The registered files are opened by their own plugins now (the core offers them to
    // file restorers only), registered once the ring exists.
    let mut files = Vec::new();
    for f in &ring.files {
        files.push((f.slot, ctx.open_file_by_id(f.file_id)?));
    }
    ctx.state::<RestoreState>()?.files.insert(entry.id, files);
    nix::sys::eventfd::EventFd::from_flags(nix::sys::eventfd::EfdFlags::EFD_CLOEXEC)
        .map(OwnedFd::from)
        .map_err(|e| PluginError::Restore {
            id: entry.id,
            what: crate::LINK.into(),
            op: "eventfd (stand-in)",
            source: e.into(),
        })
}

/// A mapping the core placed for us: it must be one of the image's (mapped for real with
/// its ring, in [`restore_task`]).
pub fn check_vma(ctx: &mut dyn RestoreContext, vma: &VmaDesc) -> Result<(), PluginError> {
    let img = image(ctx)?;
    if img
        .vmas
        .iter()
        .any(|v| v.pid == vma.pid && v.start == vma.start)
    {
        return Ok(());
    }
    Err(PluginError::bad_image(
        FILE,
        format!(
            "no entry for the io_uring mapping {:#x} of pid {}",
            vma.start, vma.pid
        ),
    ))
}

fn restored(ctx: &dyn RestoreContext, pid: i32) -> i32 {
    ctx.restored_pid(pid).unwrap_or(pid)
}

/// Sets up every ring `task` owned.
pub fn restore_task(ctx: &mut dyn RestoreContext, task: &TaskIds) -> Result<(), PluginError> {
    // Called for every task: images without a ring (no ring entry, no ring mapping, both of
    // which need the file) have no file of ours.
    if ctx.state::<RestoreState>()?.image.is_none() && ctx.read_plugin_file(FILE)?.is_none() {
        return Ok(());
    }
    let img = image(ctx)?;
    for ring in &img.rings {
        if restored(ctx, ring.owner) != task.pid
            || ctx.state::<RestoreState>()?.done.contains(&ring.file_id)
        {
            continue;
        }
        restore_ring(ctx, &img, ring, task.pid).map_err(|e| match e {
            PluginError::Task { pid, op, source } => PluginError::Task {
                pid,
                op: format!("io_uring ring (file id {}): {op}", ring.file_id),
                source,
            },
            other => other,
        })?;
        ctx.state::<RestoreState>()?.done.insert(ring.file_id);
    }
    Ok(())
}

/// Where a ring's memory goes back in its task: the rings and the SQE array, at the
/// addresses the core mapped its placeholders at.
#[derive(Debug, Clone, Copy)]
pub struct Placement {
    /// The task.
    pub pid: i32,
    /// The SQ and CQ rings (one region: `IORING_FEAT_SINGLE_MMAP`).
    pub rings: u64,
    /// The SQE array.
    pub sqes: u64,
    /// The core's placeholders (anonymous shared memory) to be replaced by named memfd
    /// mappings, with their lengths; `None` when the memory is already one (a ring criu
    /// restored before, its memfds restored by the core, in every task mapping it).
    pub placeholders: Option<(u64, u64)>,
}

/// Where another task sharing the ring maps it (a child forked after the ring's setup):
/// the same memfds go over its placeholders.
#[derive(Debug, Clone, Copy)]
struct Mirror {
    /// The task (restored pid).
    pid: i32,
    /// Its rings mapping: address and protection.
    rings: (u64, u32),
    /// Its SQE mapping.
    sqes: (u64, u32),
}

/// The dumped mappings of `ring`: the rings' and the SQEs' in its owner, and those of the
/// other tasks mapping it (checked at dump: one each per task, one task the owner).
fn placement(
    ctx: &dyn RestoreContext,
    img: &UringImage,
    ring: &RingEntry,
) -> Result<(Placement, Vec<Mirror>), PluginError> {
    if ring.user_rings != 0 {
        return Ok((
            Placement {
                pid: restored(ctx, ring.owner),
                rings: ring.user_rings,
                sqes: ring.user_sqes,
                placeholders: None,
            },
            Vec::new(),
        ));
    }
    let bad = |what: String| {
        PluginError::bad_image(FILE, format!("ring of file id {}: {what}", ring.file_id))
    };
    let maps: Vec<_> = img.vmas.iter().filter(|v| v.inode == ring.inode).collect();
    let find = |pid: i32, off: u64| {
        maps.iter()
            .find(|v| v.pid == pid && v.pgoff == off)
            .ok_or_else(|| bad(format!("no mapping at offset {off:#x} in pid {pid}")))
    };
    let (r, s) = (
        find(ring.owner, uapi::OFF_SQ_RING)?,
        find(ring.owner, uapi::OFF_SQES)?,
    );
    let mut mirrors = Vec::new();
    for v in maps
        .iter()
        .filter(|v| v.pid != ring.owner && v.pgoff == uapi::OFF_SQ_RING)
    {
        let sq = find(v.pid, uapi::OFF_SQES)?;
        if (v.end - v.start, sq.end - sq.start) != (r.end - r.start, s.end - s.start) {
            return Err(bad(format!(
                "pid {} maps it with other sizes than its owner, pid {}",
                v.pid, ring.owner
            )));
        }
        mirrors.push(Mirror {
            pid: restored(ctx, v.pid),
            rings: (v.start, v.prot),
            sqes: (sq.start, sq.prot),
        });
    }
    Ok((
        Placement {
            pid: restored(ctx, r.pid),
            rings: r.start,
            sqes: s.start,
            placeholders: Some((r.end - r.start, s.end - s.start)),
        },
        mirrors,
    ))
}

fn restore_ring(
    ctx: &mut dyn RestoreContext,
    img: &UringImage,
    ring: &RingEntry,
    pid: i32,
) -> Result<(), PluginError> {
    let (at, mirrors) = placement(ctx, img, ring)?;
    let (fd, p) = setup_in_task(ctx, ring, at, &mirrors)?;
    let want = (ring.sq_ring.len() as u64, ring.sqes.len() as u64);
    if (p.sq_ring_len(), p.sqes_len()) != want {
        return Err(PluginError::bad_image(
            FILE,
            format!(
                "ring of file id {}: the new ring's memory ({} + {} bytes) is not the dumped ({} + {})",
                ring.file_id,
                p.sq_ring_len(),
                p.sqes_len(),
                want.0,
                want.1
            ),
        ));
    }
    install_everywhere(ctx, ring.file_id, &fd, at.pid)?;
    crate::replay::replay(ctx, ring, &p, &fd, at)?;
    tracing::debug!(
        pid,
        id = ring.file_id,
        sq_head = ring.sq_head,
        cq_tail = ring.cq_tail,
        "io_uring ring restored"
    );
    Ok(())
}

/// Remote `io_uring_setup` in the task with the dumped parameters, its rings in the task's
/// memory at the dumped addresses (`IORING_SETUP_NO_MMAP` over the core's placeholders:
/// the kernel refuses to map a ring at an address the program chooses, `MAP_FIXED` and
/// `mremap` alike), the same memory mapped in the `mirrors` too; the new ring is put at
/// the task's own fds of it; returns criu's duplicate of the ring and the parameters the
/// kernel filled in.
fn setup_in_task(
    ctx: &mut dyn RestoreContext,
    ring: &RingEntry,
    at: Placement,
    mirrors: &[Mirror],
) -> Result<(OwnedFd, Params), PluginError> {
    let pid = at.pid;
    let mut p = Params {
        sq_entries: ring.sq_entries,
        cq_entries: ring.cq_entries,
        flags: ring.flags | uapi::SETUP_NO_MMAP,
        sq_thread_cpu: ring.sq_thread_cpu,
        ..Default::default()
    };
    p.sq_off.user_addr = at.sqes;
    p.cq_off.user_addr = at.rings;
    match at.placeholders {
        Some((rings_len, sqes_len)) => {
            let rw = (libc::PROT_READ | libc::PROT_WRITE) as u32;
            let rings = new_memfd(&memfd_name(at.rings, "rings"), rings_len)?;
            let sqes = new_memfd(&memfd_name(at.rings, "sqes"), sqes_len)?;
            let mut places = vec![(pid, (at.rings, rw), (at.sqes, rw))];
            places.extend(mirrors.iter().map(|m| (m.pid, m.rings, m.sqes)));
            for (task, r, s) in places {
                map_shared(
                    ctx,
                    task,
                    [(&rings, r.0, rings_len, r.1), (&sqes, s.0, sqes_len, s.1)],
                )?;
            }
        }
        None => {
            // The dumped ring memory is there: the new ring starts from zeroed memory,
            // brought to the dumped state by the replay.
            ctx.write_task_memory(pid, at.rings, &vec![0; ring.sq_ring.len()])?;
            ctx.write_task_memory(pid, at.sqes, &vec![0; ring.sqes.len()])?;
        }
    }
    // The parameters go in and out through the SQE array's first page (the task's, at
    // least a page long), filled by the replay afterwards: no scratch mapping to make.
    ctx.write_task_memory(pid, at.sqes, &p.to_bytes())?;
    let mut call = |nr, args| ctx.remote_syscall(pid, nr, args);
    let nfd = Task {
        tid: pid,
        call: &mut call,
    }
    .sys(
        "io_uring_setup",
        libc::SYS_io_uring_setup,
        [u64::from(ring.sq_entries), at.sqes, 0, 0, 0, 0],
    )?;
    let mut b = [0u8; 120];
    let files = ctx
        .state::<RestoreState>()?
        .files
        .remove(&ring.file_id)
        .unwrap_or_default();
    let got = ctx
        .read_task_memory(pid, at.sqes, &mut b)
        .and_then(|()| crate::registered::register_in_task(ctx, pid, nfd, ring, files))
        .and_then(|()| ctx.dup_task_fd(pid, nfd as i32))
        .and_then(|fd| own_fds(ctx, pid, ring.file_id, nfd).map(|()| fd));
    let mut call = |nr, args| ctx.remote_syscall(pid, nr, args);
    let closed = Task {
        tid: pid,
        call: &mut call,
    }
    .close(nfd);
    let fd = got?;
    closed?;
    Ok((fd, Params::from_bytes(&b)))
}

/// Puts the ring, fd `nfd` of task `pid` that set it up, at that task's fds of file id
/// `id` (remote `dup3` over the stand-ins; other tasks get it in [`install_everywhere`]).
fn own_fds(ctx: &mut dyn RestoreContext, pid: i32, id: u32, nfd: u64) -> Result<(), PluginError> {
    for tfd in ctx.task_fds(pid)? {
        if tfd.id != id {
            continue;
        }
        let flags = if tfd.cloexec {
            libc::O_CLOEXEC as u64
        } else {
            0
        };
        let mut call = |nr, args| ctx.remote_syscall(pid, nr, args);
        Task {
            tid: pid,
            call: &mut call,
        }
        .sys(
            "dup3 (ring at its fd)",
            libc::SYS_dup3,
            [nfd, tfd.fd as u64, flags, 0, 0, 0],
        )?;
    }
    Ok(())
}

/// A new memfd of criu named `name`, `len` bytes long: ring memory shared by every task
/// mapping the ring, shown in their maps under a name a later dump finds it by
/// ([`crate::ringmem`]).
fn new_memfd(name: &str, len: u64) -> Result<OwnedFd, PluginError> {
    let fail = |op, e: nix::errno::Errno| PluginError::Path {
        path: format!("memfd:{name}").into(),
        op,
        source: e.into(),
    };
    let fd = nix::sys::memfd::memfd_create(name, nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
        .map_err(|e| fail("memfd_create", e))?;
    nix::unistd::ftruncate(&fd, len as i64).map_err(|e| fail("ftruncate", e))?;
    Ok(fd)
}

/// Maps criu's memfds shared in task `pid`, each (memfd, address, length, protection), over
/// what is there (the core's placeholders), each lent to the task for its `mmap`.
fn map_shared(
    ctx: &mut dyn RestoreContext,
    pid: i32,
    maps: [(&OwnedFd, u64, u64, u32); 2],
) -> Result<(), PluginError> {
    for (mfd, addr, len, prot) in maps {
        let tfd = crate::remote::lend_fd(ctx, pid, mfd.as_fd())?;
        let mut call = |nr, args| ctx.remote_syscall(pid, nr, args);
        let mut t = Task {
            tid: pid,
            call: &mut call,
        };
        let m = t.sys(
            "mmap (ring memory)",
            libc::SYS_mmap,
            [
                addr,
                len,
                u64::from(prot),
                (libc::MAP_SHARED | libc::MAP_FIXED) as u64,
                tfd,
                0,
            ],
        );
        let closed = t.close(tfd);
        m?;
        closed?;
    }
    Ok(())
}

/// Puts the ring at every fd of every task but its owner `owner` (done in [`own_fds`])
/// that held file id `id` (over the stand-in).
fn install_everywhere(
    ctx: &mut dyn RestoreContext,
    id: u32,
    fd: &OwnedFd,
    owner: i32,
) -> Result<(), PluginError> {
    for task in ctx.tasks().into_iter().filter(|t| t.pid != owner) {
        for tfd in ctx.task_fds(task.pid)? {
            if tfd.id == id {
                ctx.install_fd(task.pid, fd.as_fd(), tfd.fd, tfd.cloexec)?;
            }
        }
    }
    Ok(())
}
