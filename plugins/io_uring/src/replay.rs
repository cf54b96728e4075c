//! Bringing a new ring's kernel counters to the dumped ones. The kernel keeps its own SQ
//! head and CQ tail and only moves them by consuming SQEs and posting CQEs, so the restore
//! submits NOP requests: each consumes one SQE and posts one CQE (none with
//! `IOSQE_CQE_SKIP_SUCCESS`, for the SQEs of the dumped ring that had no CQE), in batches
//! of the ring's size, reaping as it goes. Then the dumped ring memory is written back:
//! heads, tails, the CQEs not reaped and the SQEs written but not submitted. The ring's
//! memory is the task's (see [`crate::restore::Placement`]): criu reaches it with
//! `process_vm_readv`/`writev`.

use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use criu_plugin_api::{PluginError, RestoreContext};

use crate::image::{FILE, RingEntry};
use crate::remote::Task;
use crate::restore::Placement;
use crate::uapi::{self, Params};

/// How the NOPs are submitted: by criu itself, or by the ring's owner (a SINGLE_ISSUER or
/// DEFER_TASKRUN ring takes submissions from its creator only; an SQPOLL ring's thread is
/// woken by it) through remote `io_uring_enter` calls on its own fd `tfd`.
#[derive(Clone, Copy)]
enum Submitter {
    Criu,
    Owner { tfd: u64 },
}

/// The ring in the task's memory.
struct Mem<'a> {
    ctx: &'a mut dyn RestoreContext,
    at: Placement,
    ring: &'a RingEntry,
}

impl Mem<'_> {
    fn fail(&self, what: String) -> PluginError {
        PluginError::Task {
            pid: self.at.pid,
            op: format!(
                "replaying the counters of io_uring ring (file id {})",
                self.ring.file_id
            ),
            source: what.into(),
        }
    }

    fn load(&mut self, off: u32) -> Result<u32, PluginError> {
        let mut b = [0u8; 4];
        self.ctx
            .read_task_memory(self.at.pid, self.at.rings + u64::from(off), &mut b)?;
        Ok(u32::from_ne_bytes(b))
    }

    fn store(&mut self, off: u32, v: u32) -> Result<(), PluginError> {
        self.ctx.write_task_memory(
            self.at.pid,
            self.at.rings + u64::from(off),
            &v.to_ne_bytes(),
        )
    }

    /// Fills every SQE slot with the same NOP (`flags`: its SQE flags) and the SQ array
    /// with the identity: any batch then submits NOPs whatever slots it uses.
    fn fill(&mut self, p: &Params, flags: u8) -> Result<(), PluginError> {
        let mut sqes = vec![0u8; p.sqes_len() as usize];
        for s in sqes.chunks_mut(uapi::SQE_SIZE as usize) {
            s[1] = flags;
        }
        self.ctx
            .write_task_memory(self.at.pid, self.at.sqes, &sqes)?;
        let array: Vec<u8> = (0..p.sq_entries).flat_map(|i| i.to_ne_bytes()).collect();
        self.ctx.write_task_memory(
            self.at.pid,
            self.at.rings + u64::from(p.sq_off.array),
            &array,
        )
    }
}

/// Replays the ring's counters and writes its memory back (the ring is `fd`, set up in
/// `at.pid`, which is stopped under the restorer).
pub fn replay(
    ctx: &mut dyn RestoreContext,
    ring: &RingEntry,
    p: &Params,
    fd: &OwnedFd,
    at: Placement,
) -> Result<(), PluginError> {
    let skip = ring.sq_head.wrapping_sub(ring.cq_tail);
    if skip > ring.sq_head {
        return Err(PluginError::bad_image(
            FILE,
            format!(
                "ring of file id {}: CQ tail {} beyond SQ head {}",
                ring.file_id, ring.cq_tail, ring.sq_head
            ),
        ));
    }
    let restricted = uapi::SETUP_SQPOLL | uapi::SETUP_SINGLE_ISSUER | uapi::SETUP_DEFER_TASKRUN;
    let mut who = Submitter::Criu;
    if ring.flags & restricted != 0 {
        let tfd = crate::remote::lend_fd(ctx, at.pid, fd.as_fd())?;
        who = Submitter::Owner { tfd };
    }
    let started = Instant::now();
    let mut mem = Mem { ctx, at, ring };
    let r = run(&mut mem, p, fd, who, skip).and_then(|()| write_back(&mut mem, p));
    if let Submitter::Owner { tfd } = who {
        let mut call = |nr, args| ctx.remote_syscall(at.pid, nr, args);
        let closed = Task {
            tid: at.pid,
            call: &mut call,
        }
        .close(tfd);
        r?;
        closed?;
    } else {
        r?;
    }
    tracing::debug!(
        id = ring.file_id,
        nops = ring.sq_head,
        ms = started.elapsed().as_secs_f64() * 1e3,
        "io_uring counters replayed"
    );
    Ok(())
}

fn run(
    mem: &mut Mem<'_>,
    p: &Params,
    fd: &OwnedFd,
    who: Submitter,
    skip: u32,
) -> Result<(), PluginError> {
    let batch_max = p.sq_entries.min(p.cq_entries);
    let total = mem.ring.sq_head;
    let mut done = 0u32;
    // The SQEs without a CQE first (all slots NOPs with IOSQE_CQE_SKIP_SUCCESS), then
    // plain NOPs.
    for (flags, until) in [(uapi::SQE_CQE_SKIP_SUCCESS, skip), (0, total)] {
        if done < until {
            mem.fill(p, flags)?;
        }
        while done < until {
            let n = batch_max.min(until - done);
            let posts = if flags == 0 { n } else { 0 };
            let tail = mem.load(p.sq_off.tail)?.wrapping_add(n);
            mem.store(p.sq_off.tail, tail)?;
            submit(mem, fd, who, n, posts)?;
            wait_taken(mem, p, tail)?;
            let ctail = mem.load(p.cq_off.tail)?;
            mem.store(p.cq_off.head, ctail)?;
            done += n;
        }
    }
    let (h, t) = (mem.load(p.sq_off.head)?, mem.load(p.cq_off.tail)?);
    if (h, t) != (mem.ring.sq_head, mem.ring.cq_tail) {
        return Err(mem.fail(format!(
            "reached SQ head {h}, CQ tail {t}; wanted {}, {}",
            mem.ring.sq_head, mem.ring.cq_tail
        )));
    }
    Ok(())
}

fn submit(
    mem: &mut Mem<'_>,
    fd: &OwnedFd,
    who: Submitter,
    n: u32,
    posts: u32,
) -> Result<(), PluginError> {
    let sqpoll = mem.ring.flags & uapi::SETUP_SQPOLL != 0;
    let flags = uapi::ENTER_GETEVENTS | if sqpoll { uapi::ENTER_SQ_WAKEUP } else { 0 };
    let got = match who {
        Submitter::Criu => uapi::enter(fd.as_fd(), n, posts, flags)
            .map_err(|e| mem.fail(format!("io_uring_enter: {e}")))?,
        Submitter::Owner { tfd } => {
            let pid = mem.at.pid;
            let mut call = |nr, args| mem.ctx.remote_syscall(pid, nr, args);
            Task {
                tid: pid,
                call: &mut call,
            }
            .sys(
                "io_uring_enter",
                libc::SYS_io_uring_enter,
                [tfd, u64::from(n), u64::from(posts), u64::from(flags), 0, 0],
            )? as u32
        }
    };
    // An SQPOLL ring's thread takes the SQEs itself; enter answers how many it saw.
    if !sqpoll && got != n {
        return Err(mem.fail(format!("submitted {got} of {n} NOPs")));
    }
    Ok(())
}

/// Waits (1 s at most) until the kernel consumed the SQEs up to `tail` (at once unless an
/// SQ thread takes them).
fn wait_taken(mem: &mut Mem<'_>, p: &Params, tail: u32) -> Result<(), PluginError> {
    let start = Instant::now();
    loop {
        let head = mem.load(p.sq_off.head)?;
        if head == tail {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(1) {
            return Err(mem.fail(format!("the kernel took SQEs up to {head} of {tail}")));
        }
        std::thread::yield_now();
    }
}

/// Writes the dumped ring memory back, keeping the kernel's live SQ flags word.
fn write_back(mem: &mut Mem<'_>, p: &Params) -> Result<(), PluginError> {
    let flags = mem.load(p.sq_off.flags)?;
    let (pid, at) = (mem.at.pid, mem.at);
    mem.ctx
        .write_task_memory(pid, at.rings, &mem.ring.sq_ring)?;
    mem.store(p.sq_off.flags, flags)?;
    mem.ctx.write_task_memory(pid, at.sqes, &mem.ring.sqes)
}
