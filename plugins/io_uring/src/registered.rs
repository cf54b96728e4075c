//! Resources registered on a ring: files and buffers (dumped, registered again at restore),
//! an eventfd (found, refused), personalities (not shown by the kernel: a warning).
//!
//! The kernel shows registered files in fdinfo by path only (`UserFiles:`, one line per
//! occupied slot) and offers no way to reach the open file in a slot without submitting
//! to the ring. A slot is matched to the open file of the tree whose fds link to the same
//! path: exactly one such open file (one `files.img` id) is needed; pipes and FIFOs, whose
//! two ends show the same path, are refused.
//!
//! Registered buffers are the task's own memory (`UserBufs:` gives address and length):
//! they are registered again from inside the task once its memory is back.

use std::collections::BTreeSet;
use std::os::fd::{AsFd, OwnedFd};

use criu_plugin_api::{DumpContext, FdDesc, PluginError, RestoreContext};
use nix::errno::Errno;

use crate::fdinfo::RingInfo;
use crate::image::{RegBuf, RegFile, RingEntry};
use crate::remote::Task;
use crate::uapi;

/// `IORING_REGISTER_BUFFERS`.
const REGISTER_BUFFERS: u64 = 0;
/// `IORING_REGISTER_FILES`.
const REGISTER_FILES: u64 = 2;
/// `IORING_REGISTER_EVENTFD`.
pub const REGISTER_EVENTFD: u32 = 4;

fn refuse(fd: &FdDesc, what: String, hint: &str) -> PluginError {
    PluginError::Unsupported {
        resource: format!("io_uring ring (fd {}): {what}", fd.fd),
        pid: fd.pid,
        hint: hint.into(),
    }
}

/// Every fd of the tree with its link, read once per ring.
fn tree_links(ctx: &dyn DumpContext) -> Vec<(i32, i32, String)> {
    let mut out = Vec::new();
    for task in ctx.tasks() {
        let Ok(dir) = std::fs::read_dir(format!("/proc/{}/fd", task.pid)) else {
            continue;
        };
        for e in dir.flatten() {
            let Some(n) = e.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            if let Ok(link) = std::fs::read_link(e.path()) {
                out.push((task.pid, n, link.to_string_lossy().into_owned()));
            }
        }
    }
    out
}

/// The registered files of `info` as `files.img` ids (each open file dumped by its own
/// plugin, as a task's fd or, for a task reached later, as a file in flight).
pub fn dump_files(
    ctx: &mut dyn DumpContext,
    fd: &FdDesc,
    info: &RingInfo,
) -> Result<Vec<RegFile>, PluginError> {
    if info.files.is_empty() {
        return Ok(Vec::new());
    }
    let links = tree_links(ctx);
    let mut out = Vec::new();
    for (slot, path) in &info.files {
        let mut ids = BTreeSet::new();
        let mut held = Vec::new();
        for (pid, n, _) in links.iter().filter(|(_, _, l)| l == path) {
            let dup = ctx.dup_task_fd(*pid, *n)?;
            let st = nix::sys::stat::fstat(dup.as_fd()).map_err(|e| PluginError::Fd {
                pid: *pid,
                fd: *n,
                link: path.clone(),
                op: "fstat (registered file candidate)",
                source: e.into(),
            })?;
            if st.st_mode & libc::S_IFMT == libc::S_IFIFO {
                return Err(refuse(
                    fd,
                    format!("registered file slot {slot} is a pipe or FIFO ({path})"),
                    "the kernel shows both ends of a pipe by the same name, so which end is \
                     registered cannot be found: register a socket or a file, or unregister it \
                     before dumping",
                ));
            }
            let id = match ctx.file_id_of(*pid, *n) {
                Some(id) => id,
                None => ctx.dump_file_in_flight(*pid, dup.as_fd())?,
            };
            ids.insert(id);
            held.push(format!("pid {pid} fd {n}"));
        }
        let id = match ids.len() {
            1 => *ids.first().expect("one id"),
            0 => {
                return Err(refuse(
                    fd,
                    format!("registered file slot {slot} ({path}) is held by no fd of the tree"),
                    "the kernel shows registered files by path only: keep an fd of the file open \
                     while it is registered, or unregister it before dumping",
                ));
            }
            n => {
                return Err(refuse(
                    fd,
                    format!(
                        "registered file slot {slot} ({path}) matches {n} different open files \
                         ({})",
                        held.join(", ")
                    ),
                    "the kernel shows registered files by path only: open the registered file \
                     once, or unregister it before dumping",
                ));
            }
        };
        out.push(RegFile {
            slot: *slot,
            file_id: id,
        });
    }
    Ok(out)
}

/// The registered buffers of `info`.
pub fn dump_bufs(info: &RingInfo) -> Vec<RegBuf> {
    info.bufs
        .iter()
        .map(|&(slot, addr, len)| RegBuf { slot, addr, len })
        .collect()
}

/// `io_uring_register(fd, IORING_REGISTER_EVENTFD, NULL, 1)`: the kernel answers `EBUSY`
/// when an eventfd is registered and `EFAULT` (reading the NULL argument) when none is,
/// changing nothing either way.
fn eventfd_probe(ctx: &mut dyn DumpContext, fd: &FdDesc) -> Result<Errno, PluginError> {
    match uapi::register_null(fd.file.as_fd(), REGISTER_EVENTFD) {
        // A SINGLE_ISSUER ring takes registrations from its submitter only: ask from inside.
        Err(Errno::EEXIST) => {
            let args = [fd.fd as u64, u64::from(REGISTER_EVENTFD), 0, 1, 0, 0];
            let r = ctx.remote_syscall(fd.pid, libc::SYS_io_uring_register, args)?;
            Ok(if (-4095..0).contains(&r) {
                Errno::from_raw(-r as i32)
            } else {
                Errno::UnknownErrno
            })
        }
        Err(e) => Ok(e),
        Ok(()) => Ok(Errno::UnknownErrno),
    }
}

/// Refuses a ring with an eventfd registered (which eventfd shows nowhere); warns about
/// what the kernel hides (personalities, and an eventfd when even the probe is refused).
/// `known`: the probe's answer when it was already asked (a SINGLE_ISSUER ring's submitter
/// was found with it, [`crate::shared::submitter`]).
pub fn check_hidden(
    ctx: &mut dyn DumpContext,
    fd: &FdDesc,
    known: Option<Errno>,
) -> Result<(), PluginError> {
    let answer = match known {
        Some(a) => a,
        None => eventfd_probe(ctx, fd)?,
    };
    match answer {
        Errno::EFAULT => {}
        Errno::EBUSY => {
            return Err(refuse(
                fd,
                "an eventfd is registered on it (IORING_REGISTER_EVENTFD)".into(),
                "the kernel does not show which eventfd, so it cannot be registered again: \
                 unregister it (io_uring_unregister_eventfd) before dumping",
            ));
        }
        Errno::EACCES => return Err(restricted(fd)),
        e => tracing::warn!(
            pid = fd.pid,
            fd = fd.fd,
            answer = %e,
            "io_uring ring: whether an eventfd is registered could not be found; one would not be \
             registered again"
        ),
    }
    tracing::warn!(
        pid = fd.pid,
        fd = fd.fd,
        "io_uring ring: registered personalities (IORING_REGISTER_PERSONALITY) show nowhere on \
         this kernel; any are not restored (requests naming one fail with EINVAL after restore)"
    );
    Ok(())
}

/// The refusal of a ring with restrictions (registrations answer `EACCES`).
pub fn restricted(fd: &FdDesc) -> PluginError {
    refuse(
        fd,
        "it has restrictions (IORING_REGISTER_RESTRICTIONS)".into(),
        "restrictions show nowhere from outside: rings with restrictions are not supported",
    )
}

/// Registers `files` (open files by slot, criu's own) and the ring's buffers again on the
/// new ring, fd `rfd` of task `pid` (still stopped), from inside the task: a SINGLE_ISSUER
/// ring takes registrations from it only, and buffers are pinned in the caller's memory.
pub fn register_in_task(
    ctx: &mut dyn RestoreContext,
    pid: i32,
    rfd: u64,
    ring: &RingEntry,
    files: Vec<(u32, OwnedFd)>,
) -> Result<(), PluginError> {
    if ring.file_slots == 0 && ring.buf_slots == 0 {
        return Ok(());
    }
    // A file the task holds is registered from its own fd: what stands at that number now
    // (another plugin may have replaced the description since criu opened it, as the unix
    // plugin does to restore peer credentials). Other files go into the task above every
    // fd it has, for the registration only.
    let fds = ctx.task_fds(pid)?;
    let top = fds.iter().map(|f| f.fd).max().unwrap_or(0);
    let base = top.max(rfd as i32) + 1;
    let mut table = vec![-1i32; ring.file_slots as usize];
    let mut extra = 0;
    for (slot, f) in &files {
        let id = ring
            .files
            .iter()
            .find(|r| r.slot == *slot)
            .map(|r| r.file_id);
        if let Some(held) = fds.iter().find(|t| Some(t.id) == id) {
            table[*slot as usize] = held.fd;
            continue;
        }
        let n = base + extra;
        extra += 1;
        ctx.install_fd(pid, f.as_fd(), n, true)?;
        table[*slot as usize] = n;
    }
    let mut iov = vec![0u8; ring.buf_slots as usize * 16];
    for b in &ring.bufs {
        let at = b.slot as usize * 16;
        iov[at..at + 8].copy_from_slice(&b.addr.to_ne_bytes());
        iov[at + 8..at + 16].copy_from_slice(&b.len.to_ne_bytes());
    }
    let table: Vec<u8> = table.iter().flat_map(|v| v.to_ne_bytes()).collect();
    let len = (table.len().max(iov.len()) as u64).div_ceil(4096).max(1) * 4096;
    let mut call = |nr, args| ctx.remote_syscall(pid, nr, args);
    let page = Task {
        tid: pid,
        call: &mut call,
    }
    .scratch(len)?;
    let r = (|| {
        for (op, name, bytes, n) in [
            (
                REGISTER_FILES,
                "IORING_REGISTER_FILES",
                &table,
                ring.file_slots,
            ),
            (
                REGISTER_BUFFERS,
                "IORING_REGISTER_BUFFERS",
                &iov,
                ring.buf_slots,
            ),
        ] {
            if n == 0 {
                continue;
            }
            ctx.write_task_memory(pid, page, bytes)?;
            let mut call = |nr, args| ctx.remote_syscall(pid, nr, args);
            Task {
                tid: pid,
                call: &mut call,
            }
            .sys(
                &format!("io_uring_register({name}, {n} slots)"),
                libc::SYS_io_uring_register,
                [rfd, op, page, u64::from(n), 0, 0],
            )?;
        }
        Ok(())
    })();
    let mut call = |nr, args| ctx.remote_syscall(pid, nr, args);
    let mut t = Task {
        tid: pid,
        call: &mut call,
    };
    let unmapped = t.unmap(page, len);
    let mut closed = Ok(());
    // Only the fds put there for the registration; the task's own stay.
    for k in 0..extra {
        closed = closed.and(t.close((base + k) as u64));
    }
    r?;
    unmapped?;
    closed?;
    tracing::debug!(
        pid,
        files = files.len(),
        bufs = ring.bufs.len(),
        "io_uring registrations restored"
    );
    Ok(())
}
