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

/// The rings' memfd names in a `/proc/PID/maps` text: (start, address in the name, what).
fn named_maps(text: &str) -> Vec<(u64, u64, u64, String)> {
    text.lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_ascii_whitespace().collect();
            let start = u64::from_str_radix(w.first()?.split('-').next()?, 16).ok()?;
            let inode: u64 = w.get(4)?.parse().ok()?;
            let name = l
                .split_once("/memfd:criu-rs-io_uring@")?
                .1
                .strip_suffix(" (deleted)")?;
            let (at, what) = name.split_once(':')?;
            Some((
                start,
                inode,
                u64::from_str_radix(at, 16).ok()?,
                what.to_string(),
            ))
        })
        .collect()
}

/// The rings and SQEs of a ring criu restored, in the memory of a task of the tree: the
/// memfd mappings named by [`memfd_name`] whose ring header holds the ring's masks, sizes
/// and counters as fdinfo shows them. The rings and SQEs of one task are the pair named
/// after the same address (the owner's at their restore: a task sharing the ring may map
/// them elsewhere). `fixed`: the only task the memory may be in (its owner, and what ties
/// it); else `fd.pid` is looked at first, then every task of the tree, and the first
/// holding it is taken (tasks sharing the ring map the same memfds).
pub fn find_in_tree(
    ctx: &mut dyn DumpContext,
    fd: &FdDesc,
    info: &RingInfo,
    p: &Params,
    fixed: Option<(i32, &str)>,
) -> Result<(RingMem, RingMem), PluginError> {
    let mut pids = vec![fixed.map_or(fd.pid, |f| f.0)];
    if fixed.is_none() {
        pids.extend(ctx.tasks().iter().map(|t| t.pid).filter(|&p| p != fd.pid));
    }
    // Distinct rings matching (by the memfd inode of their rings), the first task's memory.
    let mut found: Vec<(u64, RingMem, RingMem)> = Vec::new();
    for pid in pids {
        let path = format!("/proc/{pid}/maps");
        let text = std::fs::read_to_string(&path).map_err(|e| PluginError::Path {
            path: path.clone().into(),
            op: "read",
            source: e,
        })?;
        let named = named_maps(&text);
        for (start, inode, at, what) in &named {
            if what != "rings" || found.iter().any(|f| f.0 == *inode) {
                continue;
            }
            let Some((sqes, ..)) = named.iter().find(|n| n.2 == *at && n.3 == "sqes") else {
                continue;
            };
            let rings = RingMem::Task {
                pid,
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
                    pid,
                    addr: *sqes,
                    len: p.sqes_len(),
                };
                found.push((*inode, rings, sqes));
            }
        }
    }
    let n = found.len();
    match found.pop() {
        Some((_, rings, sqes)) if n == 1 => Ok((rings, sqes)),
        _ => Err(PluginError::Unsupported {
            resource: format!(
                "io_uring ring (fd {}) that cannot be mapped (IORING_SETUP_NO_MMAP)",
                fd.fd
            ),
            pid: fd.pid,
            hint: match fixed {
                Some((pid, why)) if n == 0 => format!(
                    "its {why} is in pid {pid}, which does not map its memory: the ring is set up \
                     again there"
                ),
                _ => format!(
                    "{n} rings' memory in the tree matches this ring's: only NO_MMAP rings set up \
                     by a criu restore (their memory in memfd mappings named criu-rs-io_uring@...) \
                     are supported"
                ),
            },
        }),
    }
}

/// criu's mapping of a ring region, `None` when the ring cannot be mapped (NO_MMAP).
pub fn map(fd: &FdDesc, off: u64, len: u64) -> Option<RingMem> {
    Mapping::new(fd.file.as_fd(), off, len, false)
        .ok()
        .map(RingMem::Mapped)
}
