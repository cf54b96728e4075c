//! Where a ring's memory is read from at dump: criu's own mapping of the ring, or, for a
//! ring criu restored (`IORING_SETUP_NO_MMAP`, which cannot be mapped), the task's memory.
//!
//! A restored ring's memory is two memfd mappings of its task named after the rings'
//! address ([`memfd_name`]): the kernel shows nothing of a NO_MMAP ring's addresses, so
//! the names find them again, and the memfds (dumped and restored by the memfd plugin like
//! any memfd mapping) keep the names through further dumps and restores.

use std::os::fd::AsFd;

use criu_plugin_api::{DumpContext, FdDesc, PluginError};

use crate::fdinfo::RingInfo;
use crate::uapi::{Mapping, Params};

/// The memfd name of a restored ring's region `what` (`rings` or `sqes`), the rings at
/// `rings` in the task.
pub fn memfd_name(rings: u64, what: &str) -> String {
    format!("criu-rs-io_uring@{rings:x}:{what}")
}

/// One region of a ring's memory.
pub enum RingMem {
    /// criu's shared mapping of the ring.
    Mapped(Mapping),
    /// Memory of task `pid` at `addr`, `len` bytes.
    Task {
        /// The task.
        pid: i32,
        /// First address.
        addr: u64,
        /// Length.
        len: u64,
    },
}

impl RingMem {
    /// The u32 at `off`.
    pub fn load(&self, ctx: &mut dyn DumpContext, off: u32) -> Result<u32, PluginError> {
        match self {
            RingMem::Mapped(m) => m.load(off).map_err(|e| PluginError::Task {
                pid: 0,
                op: format!("reading ring word at offset {off}"),
                source: e.into(),
            }),
            RingMem::Task { pid, addr, .. } => {
                let mut b = [0u8; 4];
                ctx.read_task_memory(*pid, addr + u64::from(off), &mut b)?;
                Ok(u32::from_ne_bytes(b))
            }
        }
    }

    /// A copy of the whole region.
    pub fn snapshot(&self, ctx: &mut dyn DumpContext) -> Result<Vec<u8>, PluginError> {
        match self {
            RingMem::Mapped(m) => Ok(m.snapshot()),
            RingMem::Task { pid, addr, len } => {
                let mut b = vec![0u8; *len as usize];
                ctx.read_task_memory(*pid, *addr, &mut b)?;
                Ok(b)
            }
        }
    }

    /// The task address of the region (0 for criu's mapping).
    pub fn user_addr(&self) -> u64 {
        match self {
            RingMem::Mapped(_) => 0,
            RingMem::Task { addr, .. } => *addr,
        }
    }
}

/// The rings and SQEs of a ring criu restored, in the holder's memory: the memfd mappings
/// named by [`memfd_name`] whose ring header holds the ring's masks, sizes and counters as
/// fdinfo shows them.
pub fn find_in_task(
    ctx: &mut dyn DumpContext,
    fd: &FdDesc,
    info: &RingInfo,
    p: &Params,
) -> Result<(RingMem, RingMem), PluginError> {
    let path = format!("/proc/{}/maps", fd.pid);
    let text = std::fs::read_to_string(&path).map_err(|e| PluginError::Path {
        path: path.clone().into(),
        op: "read",
        source: e,
    })?;
    let named: Vec<(u64, String)> = text
        .lines()
        .filter_map(|l| {
            let start = u64::from_str_radix(l.split('-').next()?, 16).ok()?;
            let name = l.split_once("/memfd:")?.1.strip_suffix(" (deleted)")?;
            Some((start, name.to_string()))
        })
        .collect();
    let mut found = Vec::new();
    for (start, name) in &named {
        if *name != memfd_name(*start, "rings") {
            continue;
        }
        let Some((sqes, _)) = named.iter().find(|(_, n)| *n == memfd_name(*start, "sqes")) else {
            continue;
        };
        let rings = RingMem::Task {
            pid: fd.pid,
            addr: *start,
            len: p.sq_ring_len(),
        };
        let mut words = Vec::new();
        for off in [
            p.sq_off.ring_mask,
            p.cq_off.ring_mask,
            p.sq_off.tail,
            p.cq_off.head,
        ] {
            words.push(rings.load(ctx, off)?);
        }
        let want = [
            info.sq_entries - 1,
            info.cq_entries - 1,
            info.sq_tail,
            info.cq_head,
        ];
        if words == want {
            let sqes = RingMem::Task {
                pid: fd.pid,
                addr: *sqes,
                len: p.sqes_len(),
            };
            found.push((rings, sqes));
        }
    }
    let n = found.len();
    match found.pop() {
        Some(r) if n == 1 => Ok(r),
        _ => Err(PluginError::Unsupported {
            resource: format!(
                "io_uring ring (fd {}) that cannot be mapped (IORING_SETUP_NO_MMAP)",
                fd.fd
            ),
            pid: fd.pid,
            hint: format!(
                "{n} of the task's memory areas are this ring's: only NO_MMAP rings set up by \
                 a criu restore (their memory in memfd mappings named criu-rs-io_uring@...) \
                 are supported"
            ),
        }),
    }
}

/// criu's mapping of a ring region, `None` when the ring cannot be mapped (NO_MMAP).
pub fn map(fd: &FdDesc, off: u64, len: u64) -> Option<RingMem> {
    Mapping::new(fd.file.as_fd(), off, len, false)
        .ok()
        .map(RingMem::Mapped)
}
