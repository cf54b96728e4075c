//! Dump: a ring's setup, counters and memory once the kernel has no work of it left, and
//! the mappings of rings in each task. Nothing here changes the ring: it is read through
//! criu's own mapping of the same file, and the setup flags are found with calls that
//! change nothing (a layout probe on a ring of criu's own, read-only registrations).

use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use criu_plugin_api::{DumpContext, FdDesc, PluginError, VmaDesc};
use criu_proto::images::{ExtFileEntry, FdTypes, FileEntry};
use nix::errno::Errno;

use crate::NAME;
use crate::checks::{check_mapped_sizes, check_replay, check_restorable, check_sq_array};
use crate::fdinfo::{self, RingInfo};
use crate::image::{FILE, RingEntry, UringImage, VmaEntry};
use crate::ringmem::{self, RingMem};
use crate::uapi::{self, Params};

/// How long the dump waits for the kernel to finish a ring's requests (the task is frozen,
/// the kernel still completes them).
pub const SETTLE: Duration = Duration::from_millis(500);

/// The most NOP batches (one ring's worth of SQEs each) the restore replays through criu's
/// own `io_uring_enter` to bring a ring's counters back: about 9 µs a batch measured, so
/// about 1 s.
pub const MAX_BATCHES: u32 = 100_000;

/// The same for rings the owner must submit to (SINGLE_ISSUER, DEFER_TASKRUN, SQPOLL):
/// each batch is a remote `io_uring_enter`, 0.25-0.75 ms measured.
pub const MAX_REMOTE_BATCHES: u32 = 1_500;

/// The plugin's state for one dump.
#[derive(Debug, Default)]
pub struct DumpState {
    image: UringImage,
    /// The rings (by file id) whose owner the kernel fixes, and by what (their SQ thread,
    /// their submitter): [`check_placements`] keeps it.
    fixed: BTreeMap<u32, &'static str>,
    /// The layout of a plain ring by (SQ, CQ) sizes: one probe ring per sizes and run.
    layouts: BTreeMap<(u32, u32), Params>,
}

/// Writes the image once, after the last task ([`check_placements`]): rewriting it per ring
/// and per mapping cost a truncation each (`open` with `O_TRUNC` took up to 9 ms on this
/// machine's ext4, and the frozen task waited).
fn write_image(ctx: &mut dyn DumpContext) -> Result<(), PluginError> {
    let bytes = ctx.state::<DumpState>()?.image.encode_file();
    ctx.write_plugin_file(FILE, &bytes)
}

/// A refusal naming the ring, its holder and the way out.
pub(crate) fn refuse(fd: &FdDesc, what: String, hint: &str) -> PluginError {
    PluginError::Unsupported {
        resource: format!("io_uring ring (fd {}): {what}", fd.fd),
        pid: fd.pid,
        hint: hint.into(),
    }
}

/// criu's fdinfo of its own copy of the ring (fresh counters).
fn read_info(fd: &FdDesc) -> Result<RingInfo, PluginError> {
    let path = format!("/proc/self/fdinfo/{}", fd.file.as_raw_fd());
    let text = std::fs::read_to_string(&path).map_err(|e| PluginError::Path {
        path: path.clone().into(),
        op: "read",
        source: e,
    })?;
    fdinfo::parse(&text).map_err(|e| refuse(fd, format!("{path}: {e}"), "not an io_uring fd?"))
}

/// The layout of a plain ring of the same sizes: a ring of criu's own, closed at once,
/// once per sizes and dump.
fn probe_layout(
    ctx: &mut dyn DumpContext,
    fd: &FdDesc,
    info: &RingInfo,
) -> Result<Params, PluginError> {
    let key = (info.sq_entries, info.cq_entries);
    if let Some(p) = ctx.state::<DumpState>()?.layouts.get(&key) {
        return Ok(*p);
    }
    let mut p = Params::default();
    if info.cq_entries != 2 * info.sq_entries {
        p.flags |= uapi::SETUP_CQSIZE;
        p.cq_entries = info.cq_entries;
    }
    let probe = uapi::setup(info.sq_entries, &mut p).map_err(|e| PluginError::Fd {
        pid: fd.pid,
        fd: fd.fd,
        link: fd.link.clone(),
        op: "io_uring_setup (layout probe in criu)",
        source: e.into(),
    })?;
    drop(probe);
    ctx.state::<DumpState>()?.layouts.insert(key, p);
    Ok(p)
}

/// The setup flags the kernel lets an outsider see: SQPOLL (and its CPU), CQSIZE,
/// SINGLE_ISSUER (registrations refused to others), DEFER_TASKRUN (waits refused to others);
/// and the process of the SQ thread.
fn setup_flags(fd: &FdDesc, info: &RingInfo) -> Result<(u32, u32, Option<i32>), PluginError> {
    let mut flags = 0;
    let mut cpu = 0;
    let mut owner = None;
    if info.cq_entries != 2 * info.sq_entries {
        flags |= uapi::SETUP_CQSIZE;
    }
    if let Some(tid) = info.sq_thread {
        flags |= uapi::SETUP_SQPOLL;
        let status = std::fs::read_to_string(format!("/proc/{tid}/status")).unwrap_or_default();
        let field = |k: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_string()))
        };
        owner = Some(
            field("Tgid:")
                .and_then(|v| v.parse().ok())
                .unwrap_or(fd.pid),
        );
        // An SQ thread pinned to one CPU was created with IORING_SETUP_SQ_AFF.
        if let Some(c) = field("Cpus_allowed_list:").and_then(|v| v.parse::<u32>().ok()) {
            flags |= uapi::SETUP_SQ_AFF;
            cpu = c;
        }
    }
    match uapi::register_probe(fd.file.as_fd()) {
        Err(Errno::EEXIST) => {
            flags |= uapi::SETUP_SINGLE_ISSUER;
            if uapi::enter(fd.file.as_fd(), 0, 0, uapi::ENTER_GETEVENTS) == Err(Errno::EEXIST) {
                flags |= uapi::SETUP_DEFER_TASKRUN;
            }
        }
        Ok(()) => {}
        Err(Errno::EACCES) => return Err(crate::registered::restricted(fd)),
        Err(e) => {
            return Err(PluginError::Fd {
                pid: fd.pid,
                fd: fd.fd,
                link: fd.link.clone(),
                op: "io_uring_register(IORING_REGISTER_PROBE)",
                source: e.into(),
            });
        }
    }
    Ok((flags, cpu, owner))
}

/// Waits up to [`SETTLE`] for the ring to be quiet; refuses with what is still pending.
fn settle(
    ctx: &mut dyn DumpContext,
    fd: &FdDesc,
    sq: &RingMem,
    p: &Params,
) -> Result<RingInfo, PluginError> {
    let start = Instant::now();
    loop {
        let info = read_info(fd)?;
        let dropped = sq.load(ctx, p.sq_off.dropped)?;
        if !info.busy(dropped) {
            return Ok(info);
        }
        if start.elapsed() >= SETTLE {
            let mut what = Vec::new();
            if info.sq_thread.is_some() && info.sq_head != info.sq_tail {
                what.push(format!(
                    "{} SQEs not taken by its SQ thread",
                    info.sq_tail.wrapping_sub(info.sq_head)
                ));
            }
            let n = info.unanswered(dropped);
            if n > 0 {
                what.push(format!("{n} requests without a completion"));
            }
            if !info.poll_ops.is_empty() {
                let ops: Vec<String> = info.poll_ops.iter().map(|&o| fdinfo::op_name(o)).collect();
                what.push(format!("waiting: {}", ops.join(", ")));
            }
            return Err(refuse(
                fd,
                format!(
                    "requests in flight after {} ms ({})",
                    SETTLE.as_millis(),
                    what.join("; ")
                ),
                "let them complete (give the files data, the timeouts time) or cancel them \
                 (IORING_OP_ASYNC_CANCEL) before dumping; the tree keeps running",
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The `files.img` entry of a ring: CRIU's EXT type marked with `criu_rs_plugin`; the ring
/// itself goes into [`FILE`].
pub fn dump_file(
    ctx: &mut dyn DumpContext,
    fd: &FdDesc,
    id: u32,
) -> Result<FileEntry, PluginError> {
    let info = read_info(fd)?;
    let p = probe_layout(ctx, fd, &info)?;
    check_mapped_sizes(ctx, fd, &p)?;
    if p.features & uapi::FEAT_SINGLE_MMAP == 0 {
        return Err(refuse(
            fd,
            "the kernel maps SQ and CQ rings apart".into(),
            "needs IORING_FEAT_SINGLE_MMAP (Linux 5.4+)",
        ));
    }
    // The task the ring is set up in again: the SQ thread's process, a SINGLE_ISSUER
    // ring's submitter (found among the ring's holders), else chosen by its mappings.
    let (flags, sq_thread_cpu, sq_owner) = setup_flags(fd, &info)?;
    let mut eventfd_answer = None;
    let fixed = match sq_owner {
        Some(pid) => Some((pid, "SQ thread")),
        None if flags & uapi::SETUP_SINGLE_ISSUER != 0 => {
            let holders = crate::shared::holders(ctx, fd.stat.ino);
            let (pid, answer) = crate::shared::submitter(ctx, fd, &holders)?;
            eventfd_answer = Some(answer);
            Some((pid, "submitter (IORING_SETUP_SINGLE_ISSUER)"))
        }
        None => None,
    };
    // A ring criu restored (NO_MMAP) cannot be mapped: its memory is a task's.
    let (sq, sqes) = match ringmem::map(fd, uapi::OFF_SQ_RING, p.sq_ring_len()) {
        Some(sq) => {
            let sqes = ringmem::map(fd, uapi::OFF_SQES, p.sqes_len()).ok_or_else(|| {
                refuse(
                    fd,
                    "its SQE array cannot be mapped".into(),
                    "rings set up with IORING_SETUP_NO_SQARRAY are not supported",
                )
            })?;
            (sq, sqes)
        }
        None => ringmem::find_in_tree(ctx, fd, &info, &p, fixed)?,
    };
    let owner = match (&sq, fixed) {
        (RingMem::Task { pid, .. }, _) => *pid,
        (_, Some((pid, _))) => pid,
        _ => fd.pid,
    };
    let info = settle(ctx, fd, &sq, &p)?;
    let dropped = sq.load(ctx, p.sq_off.dropped)?;
    check_restorable(fd, &info, dropped)?;
    check_replay(fd, &info, flags)?;
    crate::registered::check_hidden(ctx, fd, eventfd_answer)?;
    let sq_ring = sq.snapshot(ctx)?;
    check_sq_array(fd, &p, &sq_ring)?;
    let files = crate::registered::dump_files(ctx, fd, &info)?;
    let ring = RingEntry {
        file_id: id,
        inode: fd.stat.ino,
        owner,
        sq_entries: info.sq_entries,
        cq_entries: info.cq_entries,
        flags,
        sq_thread_cpu,
        sq_head: info.cached_sq_head,
        cq_tail: info.cached_cq_tail,
        sq_ring,
        cq_ring: Vec::new(),
        sqes: sqes.snapshot(ctx)?,
        user_rings: sq.user_addr(),
        user_sqes: sqes.user_addr(),
        file_slots: info.user_files,
        files,
        buf_slots: info.user_bufs,
        bufs: crate::registered::dump_bufs(&info),
    };
    tracing::debug!(
        pid = fd.pid,
        fd = fd.fd,
        id,
        flags,
        sq_head = ring.sq_head,
        cq_tail = ring.cq_tail,
        "io_uring ring"
    );
    let state = ctx.state::<DumpState>()?;
    state.image.rings.push(ring);
    if let Some((_, why)) = fixed {
        state.fixed.insert(id, why);
    }
    Ok(FileEntry {
        r#type: FdTypes::Ext as i32,
        id,
        ext: Some(ExtFileEntry {
            id,
            fown: fd.owner.to_entry(),
            criu_rs_plugin: Some(NAME.into()),
        }),
        ..Default::default()
    })
}

/// Records a mapping of a ring (its memory is the ring's, dumped with the ring).
pub fn dump_vma(ctx: &mut dyn DumpContext, vma: &VmaDesc) -> Result<(), PluginError> {
    let path = format!("/proc/{}/maps", vma.pid);
    let text = std::fs::read_to_string(&path).map_err(|e| PluginError::Path {
        path: path.clone().into(),
        op: "read",
        source: e,
    })?;
    let inode = text
        .lines()
        .find_map(|l| {
            let w: Vec<&str> = l.split_ascii_whitespace().collect();
            let s = u64::from_str_radix(w.first()?.split('-').next()?, 16).ok()?;
            (s == vma.start).then(|| w.get(4)?.parse::<u64>().ok())?
        })
        .ok_or_else(|| PluginError::Unsupported {
            resource: format!("io_uring mapping at {:#x}", vma.start),
            pid: vma.pid,
            hint: format!("not found in {path}"),
        })?;
    ctx.state::<DumpState>()?.image.vmas.push(VmaEntry {
        pid: vma.pid,
        start: vma.start,
        end: vma.end,
        pgoff: vma.pgoff,
        prot: vma.prot,
        inode,
    });
    Ok(())
}

/// After the last task: every ring mapped from its fd must be mapped once (rings + SQEs)
/// in each task that maps it, one of them its owner (see [`crate::shared`]); every mapped
/// ring must have been dumped through an fd.
pub fn check_placements(ctx: &mut dyn DumpContext) -> Result<(), PluginError> {
    let state = ctx.state::<DumpState>()?;
    let img = &mut state.image;
    if img.rings.is_empty() && img.vmas.is_empty() {
        // No ring in the tree: no file, so the images do not need this plugin.
        return Ok(());
    }
    for v in &img.vmas {
        if !img.rings.iter().any(|r| r.inode == v.inode) {
            return Err(PluginError::Unsupported {
                resource: format!(
                    "io_uring ring mapped at {:#x}-{:#x} whose fd no task holds",
                    v.start, v.end
                ),
                pid: v.pid,
                hint: "keep the ring's fd open while it is mapped".into(),
            });
        }
    }
    for r in &mut img.rings {
        if r.user_rings != 0 {
            // A ring criu restored: its memory is memfd mappings, dumped as such.
            continue;
        }
        crate::shared::place(r, &img.vmas, state.fixed.get(&r.file_id).copied())?;
    }
    write_image(ctx)
}
