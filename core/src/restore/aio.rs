//! AIO rings at restore, as CRIU's `restore_aio_ring`: the dumped ring's pages are first
//! read into a private anonymous area at the ring's address; then the task `io_setup`s a
//! ring of the same size, moves the kernel's tail to the dumped one by completing writes to
//! `/dev/null` (synchronous for that device), copies the events, and `mremap`s the new ring
//! over the old address (which also unmaps the temporary area). Requests in flight at dump
//! time are not brought back (CRIU neither).

use criu_proto::images::AioRingEntry;
use nix::unistd::Pid;

use crate::dump::aio::{RING_HEADER, RingHeader};
use crate::sys::vm;

use super::error::{RestoreError, Result, bad};
use super::mem::{VmaKind, VmaPlan};
use super::rexec::{RemoteThread, write_mem};

/// Most `struct iocb *` passed to one `io_submit` (they all point at one iocb).
const SUBMIT_BATCH: u64 = 1024;
/// `struct iocb` size and the kernel's `IOCB_CMD_PWRITE`.
const IOCB_SIZE: usize = 64;
const IOCB_CMD_PWRITE: u16 = 1;
/// Offset of `head` in `struct aio_ring`.
const HEAD_OFF: u64 = 8;

/// Checks `mm.img`'s AIO entries against its VMAs: each names an AIO ring VMA of its
/// length, and each AIO ring VMA has one entry.
pub fn check(image: &str, aios: &[AioRingEntry], vmas: &[VmaPlan]) -> Result<()> {
    for (i, a) in aios.iter().enumerate() {
        let vma = vmas.iter().find(|v| v.start == a.id);
        match vma {
            Some(v) if v.kind == VmaKind::AioRing && v.len() == u64::from(a.ring_len) => {}
            _ => {
                return Err(bad(
                    image,
                    Some(i),
                    format!(
                        "AIO ring {:#x} of {:#x} bytes matches no AIO ring VMA",
                        a.id, a.ring_len
                    ),
                ));
            }
        }
        if a.nr_req == 0 {
            return Err(bad(
                image,
                Some(i),
                format!("AIO ring {:#x}: nr_req 0", a.id),
            ));
        }
    }
    for v in vmas.iter().filter(|v| v.kind == VmaKind::AioRing) {
        if !aios.iter().any(|a| a.id == v.start) {
            return Err(bad(
                image,
                None,
                format!("AIO ring VMA {:#x}-{:#x} has no aios entry", v.start, v.end),
            ));
        }
    }
    Ok(())
}

fn err(rt: &RemoteThread, reason: String) -> RestoreError {
    RestoreError::Task {
        pid: rt.pid,
        tid: rt.tid.as_raw(),
        step: rt.step.clone(),
        reason,
    }
}

fn read(rt: &RemoteThread, addr: u64, buf: &mut [u8]) -> Result<()> {
    vm::read_exact(Pid::from_raw(rt.tid.as_raw()), addr, buf)
        .map_err(|e| err(rt, format!("reading memory at {addr:#x}: {e}")))
}

fn header(rt: &RemoteThread, addr: u64) -> Result<RingHeader> {
    let mut b = [0u8; RING_HEADER as usize];
    read(rt, addr, &mut b)?;
    Ok(RingHeader::parse(&b))
}

/// Restores every ring of `aios` in the task of `rt`, whose pages are already in place;
/// `scratch` is writable task memory of at least 16 KiB (the gadget's data area).
pub fn restore_rings(rt: &mut RemoteThread, aios: &[AioRingEntry], scratch: u64) -> Result<()> {
    for a in aios {
        rt.step = format!("restoring AIO ring {:#x}", a.id);
        restore_ring(rt, a, scratch)?;
    }
    Ok(())
}

fn restore_ring(rt: &mut RemoteThread, a: &AioRingEntry, scratch: u64) -> Result<()> {
    let len = u64::from(a.ring_len);
    let old = header(rt, a.id)?;
    if let Some(why) = old.insane(len) {
        return Err(err(rt, format!("dumped ring header: {why}")));
    }
    write_mem(rt, scratch, &0u64.to_ne_bytes())?;
    rt.call(
        "io_setup",
        libc::SYS_io_setup,
        [u64::from(a.nr_req), scratch, 0, 0, 0, 0],
    )?;
    let mut b = [0u8; 8];
    read(rt, scratch, &mut b)?;
    let ctx = u64::from_ne_bytes(b);
    let new = header(rt, ctx)?;
    if new.nr != old.nr {
        return Err(err(
            rt,
            format!(
                "io_setup({}) made a ring of {} events, the dumped one had {} (a host with \
                 more CPUs sizes rings up)",
                a.nr_req, new.nr, old.nr
            ),
        ));
    }
    if old.head != 0 || old.tail != 0 {
        move_tail(rt, ctx, &old, scratch)?;
    }
    let mut events = vec![0u8; (len - RING_HEADER) as usize];
    read(rt, a.id + RING_HEADER, &mut events)?;
    write_mem(rt, ctx + RING_HEADER, &events)?;
    let got = rt.call(
        "mremap",
        libc::SYS_mremap,
        [
            ctx,
            len,
            len,
            (libc::MREMAP_FIXED | libc::MREMAP_MAYMOVE) as u64,
            a.id,
            0,
        ],
    )?;
    if got != a.id {
        return Err(err(rt, format!("ring moved to {got:#x}")));
    }
    Ok(())
}

/// Completes writes to `/dev/null` on the new ring `ctx` until the kernel's tail is the
/// dumped one, setting `head` as it goes (what `io_getevents` would do) so the ring never
/// overflows; a tail behind the head needs a full turn first, so that the kernel's count of
/// completed events is right.
fn move_tail(rt: &mut RemoteThread, ctx: u64, old: &RingHeader, scratch: u64) -> Result<()> {
    let (head, tail, nr) = (u64::from(old.head), u64::from(old.tail), u64::from(old.nr));
    let count = if tail < head { nr + tail } else { tail };
    let batch = count.min(nr - 1).min(SUBMIT_BATCH);
    // Scratch layout: path at +0, one byte of data at +32, the iocb at +64, pointers at +128.
    let (path, buf, iocb, ptrs) = (scratch, scratch + 32, scratch + 64, scratch + 128);
    write_mem(rt, path, b"/dev/null\0")?;
    write_mem(rt, buf, &[0])?;
    let fd = rt.call(
        "open(/dev/null)",
        libc::SYS_open,
        [
            path,
            libc::O_WRONLY as u64 | libc::O_CLOEXEC as u64,
            0,
            0,
            0,
            0,
        ],
    )?;
    let mut cb = [0u8; IOCB_SIZE];
    cb[16..18].copy_from_slice(&IOCB_CMD_PWRITE.to_ne_bytes());
    cb[20..24].copy_from_slice(&(fd as u32).to_ne_bytes());
    cb[24..32].copy_from_slice(&buf.to_ne_bytes());
    cb[32..40].copy_from_slice(&1u64.to_ne_bytes());
    write_mem(rt, iocb, &cb)?;
    let p: Vec<u8> = (0..batch).flat_map(|_| iocb.to_ne_bytes()).collect();
    write_mem(rt, ptrs, &p)?;
    let mut done = 0u64;
    while done < count {
        let n = rt.call(
            "io_submit",
            libc::SYS_io_submit,
            [ctx, (count - done).min(batch), ptrs, 0, 0, 0],
        )?;
        if n == 0 {
            return Err(err(
                rt,
                format!("io_submit took none after {done} of {count}"),
            ));
        }
        done += n;
        write_mem(rt, ctx + HEAD_OFF, &(done.min(head) as u32).to_ne_bytes())?;
    }
    rt.call("close", libc::SYS_close, [fd, 0, 0, 0, 0, 0])?;
    let now = header(rt, ctx)?;
    if (now.head, now.tail) != (old.head, old.tail) {
        return Err(err(
            rt,
            format!(
                "ring head/tail {}/{} after replay, dumped {}/{}",
                now.head, now.tail, old.head, old.tail
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vma(start: u64, end: u64, kind: VmaKind) -> VmaPlan {
        VmaPlan {
            start,
            end,
            pgoff: 0,
            prot: 3,
            flags: libc::MAP_SHARED as u32,
            kind,
            madv: 0,
            fdflags: 0,
            stack: false,
            heap: false,
        }
    }

    #[test]
    fn entries_must_match_ring_vmas() {
        let vmas = [
            vma(0x1000, 0x2000, VmaKind::AnonPrivate),
            vma(0x3000, 0x5000, VmaKind::AioRing),
        ];
        let ok = AioRingEntry {
            id: 0x3000,
            nr_req: 126,
            ring_len: 0x2000,
        };
        check("mm-1.img", &[ok], &vmas).unwrap();
        let e = check("mm-1.img", &[], &vmas).unwrap_err().to_string();
        assert!(e.contains("mm-1.img") && e.contains("no aios entry"), "{e}");
        let short = AioRingEntry {
            ring_len: 0x1000,
            ..ok
        };
        assert!(check("mm-1.img", &[short], &vmas).is_err());
        let anon = AioRingEntry { id: 0x1000, ..ok };
        assert!(check("mm-1.img", &[anon, ok], &vmas).is_err());
    }
}
