//! A thread frozen inside an rseq critical section (as CRIU's `fixup_thread_rseq`).
//!
//! The kernel aborts a critical section (jumps to its abort handler) when the thread is
//! preempted or gets a signal in it, clearing `struct rseq.rseq_cs`. At restore, the rseq
//! registration makes the kernel check `rseq_cs` on the next return to user space, while the
//! thread is still at criu's gadget: outside the section, so the kernel only clears the
//! field, and the thread would later finish a section the kernel no longer knows it is in.
//! So a thread inside a section is dumped at its abort handler, as the kernel would send it
//! there; a section flagged `RSEQ_CS_FLAG_NO_RESTART_ON_SIGNAL` keeps its IP and its
//! `rseq_cs` pointer is saved (`rseq_entry.rseq_cs_pointer`) and written back at restore.

use nix::unistd::Pid;

use super::DumpError;

/// `RSEQ_CS_FLAG_NO_RESTART_ON_SIGNAL` (uapi linux/rseq.h).
pub const NO_RESTART_ON_SIGNAL: u32 = 1 << 1;
/// Offsets in `struct rseq` (uapi): `rseq_cs` (u64) and `flags` (u32).
const RSEQ_CS_OFFSET: u64 = 8;
const RSEQ_FLAGS_OFFSET: u64 = 16;

/// `struct rseq_cs` (uapi): the section a thread announced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RseqCs {
    /// ABI version (0).
    pub version: u32,
    /// Section flags, combined with `struct rseq.flags` as the kernel reads them.
    pub flags: u32,
    /// First instruction of the section.
    pub start_ip: u64,
    /// Length of the section from `start_ip`.
    pub post_commit_offset: u64,
    /// Where the kernel sends a thread that is interrupted in the section.
    pub abort_ip: u64,
}

impl RseqCs {
    /// Decodes the 32 bytes of a `struct rseq_cs`.
    pub fn parse(b: &[u8; 32]) -> Self {
        let u32_at = |o: usize| u32::from_ne_bytes(b[o..o + 4].try_into().unwrap());
        let u64_at = |o: usize| u64::from_ne_bytes(b[o..o + 8].try_into().unwrap());
        RseqCs {
            version: u32_at(0),
            flags: u32_at(4),
            start_ip: u64_at(8),
            post_commit_offset: u64_at(16),
            abort_ip: u64_at(24),
        }
    }

    /// Whether `ip` is inside the section.
    pub fn contains(&self, ip: u64) -> bool {
        ip >= self.start_ip && ip - self.start_ip < self.post_commit_offset
    }
}

/// What the dump of a thread does about its rseq state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RseqFixup {
    /// The IP to dump instead of the thread's (its abort handler).
    pub ip: Option<u64>,
    /// The `rseq_cs` pointer to save (a no-restart section).
    pub cs_pointer: Option<u64>,
}

/// Decides the fixup for a thread at `ip` whose `struct rseq` announces section `cs` (at
/// `cs_pointer`), with `rseq_flags` from `struct rseq.flags`.
pub fn decide(cs_pointer: u64, cs: &RseqCs, rseq_flags: u32, ip: u64) -> RseqFixup {
    let flags = cs.flags | rseq_flags;
    if flags & NO_RESTART_ON_SIGNAL != 0 {
        return RseqFixup {
            ip: None,
            cs_pointer: Some(cs_pointer),
        };
    }
    RseqFixup {
        ip: cs.contains(ip).then_some(cs.abort_ip),
        cs_pointer: None,
    }
}

/// Reads the section thread `tid` of `pid` announced at `abi` (its `struct rseq`) and decides
/// the fixup for its `ip`.
pub fn fixup(pid: i32, tid: i32, abi: u64, ip: u64) -> Result<RseqFixup, DumpError> {
    let t = Pid::from_raw(tid);
    let read_err = |what: &str, addr: u64, e: crate::sys::vm::VmError| DumpError::Unsupported {
        pid,
        step: "rseq",
        what: format!("thread {tid}: reading its {what} at {addr:#x}: {e}"),
        hint: "the rseq area must be readable",
    };
    let mut word = [0u8; 8];
    crate::sys::vm::read_exact(t, abi + RSEQ_CS_OFFSET, &mut word)
        .map_err(|e| read_err("struct rseq", abi, e))?;
    let cs_pointer = u64::from_ne_bytes(word);
    if cs_pointer == 0 {
        return Ok(RseqFixup::default());
    }
    let mut fl = [0u8; 4];
    crate::sys::vm::read_exact(t, abi + RSEQ_FLAGS_OFFSET, &mut fl)
        .map_err(|e| read_err("struct rseq", abi, e))?;
    let mut raw = [0u8; 32];
    crate::sys::vm::read_exact(t, cs_pointer, &mut raw)
        .map_err(|e| read_err("struct rseq_cs", cs_pointer, e))?;
    let cs = RseqCs::parse(&raw);
    if cs.version != 0 {
        return Err(DumpError::Unsupported {
            pid,
            step: "rseq",
            what: format!(
                "thread {tid}: rseq_cs at {cs_pointer:#x} has ABI version {}",
                cs.version
            ),
            hint: "only rseq ABI version 0 is known",
        });
    }
    let fix = decide(cs_pointer, &cs, u32::from_ne_bytes(fl), ip);
    if let Some(abort) = fix.ip {
        tracing::warn!(
            pid,
            tid,
            ip,
            abort,
            "thread in an rseq critical section: dumped at its abort handler"
        );
    }
    Ok(fix)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cs(flags: u32) -> RseqCs {
        RseqCs {
            version: 0,
            flags,
            start_ip: 0x1000,
            post_commit_offset: 0x20,
            abort_ip: 0x2000,
        }
    }

    #[test]
    fn parse_reads_the_uapi_layout() {
        let mut b = [0u8; 32];
        b[4..8].copy_from_slice(&2u32.to_ne_bytes());
        b[8..16].copy_from_slice(&0x1000u64.to_ne_bytes());
        b[16..24].copy_from_slice(&0x20u64.to_ne_bytes());
        b[24..32].copy_from_slice(&0x2000u64.to_ne_bytes());
        assert_eq!(RseqCs::parse(&b), cs(2));
    }

    #[test]
    fn a_thread_inside_goes_to_the_abort_handler() {
        let f = decide(0x500, &cs(0), 0, 0x1010);
        assert_eq!(f.ip, Some(0x2000));
        assert_eq!(f.cs_pointer, None);
    }

    #[test]
    fn section_bounds_are_half_open() {
        assert_eq!(decide(0x500, &cs(0), 0, 0x1000).ip, Some(0x2000));
        assert_eq!(decide(0x500, &cs(0), 0, 0x1020).ip, None);
        assert_eq!(decide(0x500, &cs(0), 0, 0xfff).ip, None);
    }

    #[test]
    fn no_restart_on_signal_keeps_the_ip_and_saves_the_pointer() {
        let want = RseqFixup {
            ip: None,
            cs_pointer: Some(0x500),
        };
        assert_eq!(decide(0x500, &cs(NO_RESTART_ON_SIGNAL), 0, 0x1010), want);
        // The flag of struct rseq counts as well.
        assert_eq!(decide(0x500, &cs(0), NO_RESTART_ON_SIGNAL, 0x1010), want);
    }
}
