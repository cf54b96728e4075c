//! Dump-time checks of what a restore cannot bring back or would bring back wrong: the
//! sizes of a ring's mappings, its SQ array, overflowed and multishot completions, and how
//! long its counters would take to replay.

use criu_plugin_api::{DumpContext, FdDesc, PluginError};

use crate::dump::{MAX_BATCHES, MAX_REMOTE_BATCHES, refuse};
use crate::fdinfo::RingInfo;
use crate::uapi::{self, Params};

fn page_up(n: u64) -> u64 {
    n.div_ceil(4096) * 4096
}

/// Every mapping of the ring in the tree must have a plain ring's sizes: a ring set up with
/// 128-byte SQEs, 32-byte CQEs or without an SQ array maps more or less.
pub fn check_mapped_sizes(
    ctx: &dyn DumpContext,
    fd: &FdDesc,
    p: &Params,
) -> Result<(), PluginError> {
    let mut maps = Vec::new();
    for t in ctx.tasks() {
        maps.extend(ring_maps(t.pid, fd.stat.ino)?);
    }
    if ctx.tasks().is_empty() {
        maps = ring_maps(fd.pid, fd.stat.ino)?;
    }
    for (start, end, pgoff) in maps {
        let want = match pgoff {
            uapi::OFF_SQ_RING => p.sq_ring_len(),
            uapi::OFF_CQ_RING => p.cq_ring_len(),
            uapi::OFF_SQES => p.sqes_len(),
            _ => continue,
        };
        if end - start != page_up(want) {
            return Err(refuse(
                fd,
                format!(
                    "mapping {start:#x}-{end:#x} (offset {pgoff:#x}) is not a plain ring's {} bytes",
                    page_up(want)
                ),
                "rings with IORING_SETUP_SQE128, CQE32, NO_SQARRAY or NO_MMAP are not supported",
            ));
        }
    }
    Ok(())
}

/// (start, end, offset) of every mapping of inode `ino` in `/proc/PID/maps`.
pub fn ring_maps(pid: i32, ino: u64) -> Result<Vec<(u64, u64, u64)>, PluginError> {
    let path = format!("/proc/{pid}/maps");
    let text = std::fs::read_to_string(&path).map_err(|e| PluginError::Path {
        path: path.clone().into(),
        op: "read",
        source: e,
    })?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_ascii_whitespace().collect();
            let (s, e) = w.first()?.split_once('-')?;
            let inode: u64 = w.get(4)?.parse().ok()?;
            (inode == ino && w.get(5) == Some(&crate::MAPS_NAME)).then(|| {
                Some((
                    u64::from_str_radix(s, 16).ok()?,
                    u64::from_str_radix(e, 16).ok()?,
                    u64::from_str_radix(w.get(2)?, 16).ok()?,
                ))
            })?
        })
        .collect())
}

/// Checks what the restore cannot bring back, after the ring settled.
pub fn check_restorable(fd: &FdDesc, info: &RingInfo, dropped: u32) -> Result<(), PluginError> {
    let out = |what: String, hint: &str| Err(refuse(fd, what, hint));
    if info.personalities {
        return out(
            "registered personalities".into(),
            "personalities are not supported: unregister them before dumping",
        );
    }
    if info.overflowed > 0 {
        return out(
            format!("{} completions overflowed the CQ ring", info.overflowed),
            "reap the CQ ring (the kernel flushes the overflow on the next io_uring_enter)",
        );
    }
    if info.unanswered(dropped) < 0 {
        return out(
            "more completions than submissions (multishot requests)".into(),
            "cancel multishot requests before dumping",
        );
    }
    Ok(())
}

/// A ring set up with `IORING_SETUP_NO_SQARRAY` (liburing 2.6 and later set it by default)
/// shows that flag nowhere, and its memory is a plain ring's but for the SQ array; restored
/// as a plain ring, the kernel would take every SQE index from an array of zeros. liburing
/// and the `io-uring` crate fill the array of a plain ring with the identity at setup, so
/// an array of zeros (with room for more than one SQE) is taken for NO_SQARRAY and refused.
pub fn check_sq_array(fd: &FdDesc, p: &Params, rings: &[u8]) -> Result<(), PluginError> {
    let at = p.sq_off.array as usize;
    let array = rings.get(at..at + 4 * p.sq_entries as usize);
    if p.sq_entries >= 2 && array.is_some_and(|a| a.iter().all(|&b| b == 0)) {
        return Err(refuse(
            fd,
            "its SQ array is all zeros: a ring set up with IORING_SETUP_NO_SQARRAY (which shows \
             nowhere), or one that submitted SQE 0 only"
                .into(),
            "rings without an SQ array are not supported: set the ring up without \
             IORING_SETUP_NO_SQARRAY (and fill its SQ array)",
        ));
    }
    Ok(())
}

/// The restore replays every request the ring consumed: refuse what would take more than
/// about a second.
pub fn check_replay(fd: &FdDesc, info: &RingInfo, flags: u32) -> Result<(), PluginError> {
    let remote =
        flags & (uapi::SETUP_SQPOLL | uapi::SETUP_SINGLE_ISSUER | uapi::SETUP_DEFER_TASKRUN) != 0;
    let limit = if remote {
        MAX_REMOTE_BATCHES
    } else {
        MAX_BATCHES
    };
    let batch = info.sq_entries.min(info.cq_entries).max(1);
    let batches = info.cached_sq_head.div_ceil(batch);
    if batches > limit {
        return Err(refuse(
            fd,
            format!(
                "{} requests since its setup: the restore would replay {batches} batches of {batch} NOPs, more than \
                 the {limit} it replays in about a second",
                info.cached_sq_head
            ),
            "a ring with fewer requests behind it (set up again), or more entries, can be dumped",
        ));
    }
    Ok(())
}
