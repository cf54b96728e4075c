//! SysV shared memory attached by the tree. As CRIU does when the IPC namespace is not
//! dumped (the tree lives in the host's), the segment itself is not saved: the dump records
//! each attachment (a VMA with `VMA_AREA_SYSVIPC` and the segment id as `shmid`, no pages),
//! and the restore attaches the same segment again with `shmat(shmid, start)`. The segment
//! must therefore outlive the dumped tree: the dump refuses one already removed (IPC_RMID,
//! it dies with its last detach), the restore one that is gone or changed size.

use super::error::{RestoreError, Result};
use super::mem::{PAGE_SIZE, VmaPlan};
use super::rexec::RemoteThread;

/// `SHM_DEST` in a segment's mode: removed, destroyed at its last detach.
pub const SHM_DEST: u32 = 0o1000;

/// One row of `/proc/sysvipc/shm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShmSegment {
    pub shmid: u64,
    pub mode: u32,
    pub size: u64,
}

/// Parses `/proc/sysvipc/shm` (header, then key, shmid, perms in octal, size, ...).
pub fn parse_segments(text: &str) -> Vec<ShmSegment> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            Some(ShmSegment {
                shmid: w.get(1)?.parse().ok()?,
                mode: u32::from_str_radix(w.get(2)?, 8).ok()?,
                size: w.get(3)?.parse().ok()?,
            })
        })
        .collect()
}

/// The segment `shmid` of our IPC namespace, if it exists.
pub fn segment(shmid: u64) -> Option<ShmSegment> {
    let text = std::fs::read_to_string("/proc/sysvipc/shm").ok()?;
    parse_segments(&text).into_iter().find(|s| s.shmid == shmid)
}

/// The segment `shmid` of `pid`'s IPC namespace: criu's, or the tree's own (a restored or
/// dumped IPC namespace), read from inside it.
pub fn segment_of(pid: i32, shmid: u64) -> Option<ShmSegment> {
    use crate::proc::misc::read_ns_inode;
    let me = std::process::id() as i32;
    if read_ns_inode(pid, "ipc").ok()? == read_ns_inode(me, "ipc").ok()? {
        return segment(shmid);
    }
    crate::sys::nsenter::in_namespaces(pid, nix::sched::CloneFlags::CLONE_NEWIPC, || segment(shmid))
        .ok()
        .flatten()
}

/// Attaches segment `shmid` over the whole of `v` in the task.
pub fn attach(rt: &mut RemoteThread, v: &VmaPlan, shmid: u64) -> Result<()> {
    rt.step = format!("attaching SysV shm {shmid} at {:#x}", v.start);
    let unsupported = |what: String| RestoreError::Unsupported {
        pid: rt.pid,
        what,
        hint: "SysV shm segments are not saved with the tree (no IPC namespace dump): restore where the segment still exists, unchanged",
    };
    let Some(seg) = segment_of(rt.tid.as_raw(), shmid) else {
        return Err(unsupported(format!(
            "SysV shm segment {shmid} (attached at {:#x}), which no longer exists",
            v.start
        )));
    };
    if seg.size.div_ceil(PAGE_SIZE) * PAGE_SIZE != v.len() || v.pgoff != 0 {
        return Err(unsupported(format!(
            "SysV shm segment {shmid} of {} bytes attached at {:#x} as {} bytes from offset {} (a partial attachment, or the segment changed)",
            seg.size,
            v.start,
            v.len(),
            v.pgoff
        )));
    }
    let mut flags = libc::SHM_REMAP;
    if v.prot & libc::PROT_WRITE as u32 == 0 {
        flags |= libc::SHM_RDONLY;
    }
    if v.prot & libc::PROT_EXEC as u32 != 0 {
        flags |= libc::SHM_EXEC;
    }
    let got = rt.call(
        "shmat",
        libc::SYS_shmat,
        [shmid, v.start, flags as u64, 0, 0, 0],
    )?;
    if got != v.start {
        return Err(RestoreError::Task {
            pid: rt.pid,
            tid: rt.tid.as_raw(),
            step: rt.step.clone(),
            reason: format!("shmat placed it at {got:#x}"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysvipc_rows_parse() {
        let text = "       key      shmid perms                  size  cpid  lpid nattch   uid   gid  cuid  cgid      atime      dtime      ctime                   rss                  swap\n         0         32  1600                 65536  4242  4242      1     0     0     0     0 1764270000          0 1764270000                 4096                    0\n";
        assert_eq!(
            parse_segments(text),
            vec![ShmSegment {
                shmid: 32,
                mode: 0o1600,
                size: 65536
            }]
        );
        assert!(parse_segments("header only\n").is_empty());
    }
}
