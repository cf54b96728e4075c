//! Rings shared by several tasks (a fork after the ring's setup, a ring fd passed to
//! another task): which tasks hold and map a ring, and which of them must set it up again
//! at restore.
//!
//! A ring is one kernel object whatever the number of its holders: the restore sets it up
//! once, in its owner, installs it at every fd that held it and maps its memory (one memfd
//! pair) at each task's dumped addresses. The owner is the task the kernel ties the ring
//! to when it has one (the SQ thread's process, a SINGLE_ISSUER ring's submitter), else
//! the first task that maps it; it must map the ring (its memory is set up there).

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;

use criu_plugin_api::{DumpContext, FdDesc, PluginError};
use nix::errno::Errno;

use crate::image::{RingEntry, VmaEntry};
use crate::registered::REGISTER_EVENTFD;
use crate::uapi;

/// Every (pid, fd) of the tree holding the ring whose inode is `ino` (each ring has its own
/// anonymous inode), the tree's order (parents first).
pub fn holders(ctx: &dyn DumpContext, ino: u64) -> Vec<(i32, i32)> {
    let mut out = Vec::new();
    for task in ctx.tasks() {
        let Ok(dir) = std::fs::read_dir(format!("/proc/{}/fd", task.pid)) else {
            continue;
        };
        for e in dir.flatten() {
            let Some(n) = e.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            let ring = std::fs::read_link(e.path()).is_ok_and(|l| l.as_os_str() == crate::LINK);
            if ring && std::fs::metadata(e.path()).is_ok_and(|m| m.ino() == ino) {
                out.push((task.pid, n));
            }
        }
    }
    out.sort_by_key(|&(pid, n)| (ctx.tasks().iter().position(|t| t.pid == pid), n));
    out
}

/// A SINGLE_ISSUER ring's submitter among its holders: the task whose main thread may
/// register on it (`IORING_REGISTER_EVENTFD` with a NULL argument, which changes nothing:
/// `EEXIST` to any other task, `EFAULT` or `EBUSY` (an eventfd is registered) to it).
/// Returns its pid and the answer.
pub fn submitter(
    ctx: &mut dyn DumpContext,
    fd: &FdDesc,
    holders: &[(i32, i32)],
) -> Result<(i32, Errno), PluginError> {
    for &(pid, n) in holders {
        let args = [n as u64, u64::from(REGISTER_EVENTFD), 0, 1, 0, 0];
        let r = ctx.remote_syscall(pid, libc::SYS_io_uring_register, args)?;
        let answer = if (-4095..0).contains(&r) {
            Errno::from_raw(-r as i32)
        } else {
            Errno::UnknownErrno
        };
        if answer != Errno::EEXIST {
            return Ok((pid, answer));
        }
    }
    let list: Vec<String> = holders
        .iter()
        .map(|(p, n)| format!("pid {p} fd {n}"))
        .collect();
    Err(PluginError::Unsupported {
        resource: format!(
            "io_uring ring (fd {}): IORING_SETUP_SINGLE_ISSUER ring held by [{}], none of whose main \
             threads is its submitter",
            fd.fd,
            list.join(", ")
        ),
        pid: fd.pid,
        hint:
            "only SINGLE_ISSUER rings submitted to by a process's main thread are supported (the \
               restore sets the ring up there)"
                .into(),
    })
}

/// Checks the mappings of a ring mapped from its fd and chooses its owner: every task that
/// maps it maps the rings and the SQE array once each; the owner (`fixed`: the task the
/// kernel ties the ring to, else the first task mapping it) maps it.
pub fn place(
    ring: &mut RingEntry,
    vmas: &[VmaEntry],
    fixed: Option<&str>,
) -> Result<(), PluginError> {
    let maps: Vec<&VmaEntry> = vmas.iter().filter(|v| v.inode == ring.inode).collect();
    let mut by_pid: BTreeMap<i32, Vec<&VmaEntry>> = BTreeMap::new();
    for v in &maps {
        by_pid.entry(v.pid).or_default().push(v);
    }
    let list = || {
        maps.iter()
            .map(|v| {
                format!(
                    "pid {} {:#x}-{:#x} offset {:#x}",
                    v.pid, v.start, v.end, v.pgoff
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let refuse = |pid: i32, what: String, hint: &str| PluginError::Unsupported {
        resource: format!("io_uring ring (file id {}) {what}", ring.file_id),
        pid,
        hint: hint.into(),
    };
    for (&pid, m) in &by_pid {
        let of = |off| m.iter().filter(|v| v.pgoff == off).count();
        if of(uapi::OFF_SQ_RING) != 1 || of(uapi::OFF_SQES) != 1 || m.len() != 2 {
            return Err(refuse(
                pid,
                format!("mapped as [{}]", list()),
                "only rings mapped once per task (rings + SQEs, IORING_FEAT_SINGLE_MMAP) are supported",
            ));
        }
    }
    let Some(first) = maps.first() else {
        return Err(refuse(
            ring.owner,
            "mapped by no task".into(),
            "keep the ring mapped in a task that holds it (its memory is set up there at restore)",
        ));
    };
    match fixed {
        Some(why) if !by_pid.contains_key(&ring.owner) => Err(refuse(
            ring.owner,
            format!(
                "mapped as [{}], its {why} in pid {}, which does not map it",
                list(),
                ring.owner
            ),
            "the ring is set up again in that task, which must map it",
        )),
        Some(_) => Ok(()),
        None => {
            ring.owner = first.pid;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vma(pid: i32, start: u64, pgoff: u64) -> VmaEntry {
        VmaEntry {
            pid,
            start,
            end: start + 4096,
            pgoff,
            prot: 3,
            inode: 77,
        }
    }

    fn ring(owner: i32) -> RingEntry {
        RingEntry {
            file_id: 5,
            inode: 77,
            owner,
            ..Default::default()
        }
    }

    #[test]
    fn forked_ring_is_owned_by_the_first_mapper_or_the_fixed_one() {
        let v = [
            vma(10, 0x1000, uapi::OFF_SQ_RING),
            vma(10, 0x3000, uapi::OFF_SQES),
            vma(11, 0x1000, uapi::OFF_SQ_RING),
            vma(11, 0x3000, uapi::OFF_SQES),
        ];
        let mut r = ring(11);
        place(&mut r, &v, None).unwrap();
        assert_eq!(r.owner, 10);
        let mut r = ring(11);
        place(&mut r, &v, Some("SQ thread")).unwrap();
        assert_eq!(r.owner, 11);
        let mut r = ring(12);
        let e = place(&mut r, &v, Some("SQ thread"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("pid 12, which does not map it"), "{e}");
    }

    #[test]
    fn a_task_mapping_half_a_ring_or_none_is_refused() {
        let v = [
            vma(10, 0x1000, uapi::OFF_SQ_RING),
            vma(10, 0x3000, uapi::OFF_SQES),
            vma(11, 0x1000, uapi::OFF_SQ_RING),
        ];
        let e = place(&mut ring(10), &v, None).unwrap_err().to_string();
        assert!(
            e.contains("file id 5") && e.contains("pid 11 0x1000"),
            "{e}"
        );
        let e = place(&mut ring(10), &[], None).unwrap_err().to_string();
        assert!(e.contains("mapped by no task"), "{e}");
    }
}
