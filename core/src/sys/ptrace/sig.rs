//! Signal-related ptrace requests: siginfo, pending queues, blocked mask; plus rseq and
//! seccomp filter retrieval.

use std::ffi::c_void;

use super::{Pid, PtraceError, Result, raw};
use crate::sys::kabi;

/// A raw kernel `siginfo_t` (128 bytes), kept as bytes because CRIU stores it that way
/// (`siginfo_entry.siginfo`) and re-queues it with `rt_tgsigqueueinfo`.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(C, align(8))]
pub struct SigInfo(pub [u8; 128]);

impl SigInfo {
    fn word(&self, i: usize) -> i32 {
        let b = &self.0[i * 4..i * 4 + 4];
        i32::from_ne_bytes([b[0], b[1], b[2], b[3]])
    }
    /// `si_signo`.
    pub fn signo(&self) -> i32 {
        self.word(0)
    }
    /// `si_errno`.
    pub fn errno(&self) -> i32 {
        self.word(1)
    }
    /// `si_code`.
    pub fn code(&self) -> i32 {
        self.word(2)
    }
    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 128] {
        &self.0
    }
    /// Builds one from image bytes; `None` unless exactly 128 bytes.
    pub fn from_bytes(b: &[u8]) -> Option<SigInfo> {
        b.try_into().ok().map(SigInfo)
    }
}

impl std::fmt::Debug for SigInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigInfo")
            .field("signo", &self.signo())
            .field("errno", &self.errno())
            .field("code", &self.code())
            .finish_non_exhaustive()
    }
}

const _: () = assert!(std::mem::size_of::<SigInfo>() == std::mem::size_of::<libc::siginfo_t>());

/// `PTRACE_GETSIGINFO`: the siginfo of the current stop (for an event stop, si_code carries
/// the event in bits 8..16). Errors: EINVAL when the stop has no siginfo.
pub fn get_siginfo(tid: Pid) -> Result<SigInfo> {
    let mut si = SigInfo([0; 128]);
    // SAFETY: the kernel writes one siginfo_t (128 bytes) at data.
    unsafe {
        raw(
            libc::PTRACE_GETSIGINFO,
            "PTRACE_GETSIGINFO",
            tid,
            std::ptr::null_mut(),
            (&mut si as *mut SigInfo).cast(),
        )
    }?;
    Ok(si)
}

/// Which pending-signal queue to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigQueue {
    /// The thread's private queue (`signals_p` in the image).
    Thread,
    /// The process-wide shared queue (`signals_s`).
    Shared,
}

/// `PTRACE_PEEKSIGINFO`: every siginfo queued on `queue`, oldest first, without dequeuing.
pub fn peek_siginfo(tid: Pid, queue: SigQueue) -> Result<Vec<SigInfo>> {
    const BATCH: usize = 32;
    let mut out = Vec::new();
    let mut buf = [SigInfo([0; 128]); BATCH];
    loop {
        let mut args = libc::ptrace_peeksiginfo_args {
            off: out.len() as u64,
            flags: match queue {
                SigQueue::Thread => 0,
                SigQueue::Shared => libc::PTRACE_PEEKSIGINFO_SHARED,
            },
            nr: BATCH as i32,
        };
        // SAFETY: addr is the args struct, data has room for `nr` siginfo_t.
        let n = unsafe {
            raw(
                libc::PTRACE_PEEKSIGINFO,
                "PTRACE_PEEKSIGINFO",
                tid,
                (&mut args as *mut libc::ptrace_peeksiginfo_args).cast(),
                buf.as_mut_ptr().cast(),
            )
        }? as usize;
        out.extend_from_slice(&buf[..n.min(BATCH)]);
        if n < BATCH {
            return Ok(out);
        }
    }
}

/// `PTRACE_GETSIGMASK`: the thread's blocked-signal mask (bit N-1 = signal N).
pub fn get_sigmask(tid: Pid) -> Result<u64> {
    let mut mask: u64 = 0;
    // SAFETY: addr is the mask size, data points to a u64 the kernel fills.
    unsafe {
        raw(
            libc::PTRACE_GETSIGMASK,
            "PTRACE_GETSIGMASK",
            tid,
            8usize as *mut c_void,
            (&mut mask as *mut u64).cast(),
        )
    }?;
    Ok(mask)
}

/// `PTRACE_SETSIGMASK`: replace the blocked mask (SIGKILL/SIGSTOP bits are ignored).
pub fn set_sigmask(tid: Pid, mask: u64) -> Result<()> {
    let mut m = mask;
    // SAFETY: addr is the mask size, data points to a u64 the kernel reads.
    unsafe {
        raw(
            libc::PTRACE_SETSIGMASK,
            "PTRACE_SETSIGMASK",
            tid,
            8usize as *mut c_void,
            (&mut m as *mut u64).cast(),
        )
    }
    .map(drop)
}

/// The thread's registered rseq area (`PTRACE_GET_RSEQ_CONFIGURATION`, Linux 5.13+).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RseqConfig {
    pub rseq_abi_pointer: u64,
    pub rseq_abi_size: u32,
    pub signature: u32,
    pub flags: u32,
}

impl RseqConfig {
    /// No area is registered.
    pub fn is_unregistered(&self) -> bool {
        self.rseq_abi_pointer == 0
    }
}

/// `PTRACE_GET_RSEQ_CONFIGURATION`. Errors: EIO on kernels without it.
pub fn get_rseq_config(tid: Pid) -> Result<RseqConfig> {
    // SAFETY: plain integers; all-zero is valid.
    let mut c: libc::ptrace_rseq_configuration = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of_val(&c);
    // SAFETY: addr is the struct size, data points to the struct the kernel fills.
    let n = unsafe {
        raw(
            libc::PTRACE_GET_RSEQ_CONFIGURATION,
            "PTRACE_GET_RSEQ_CONFIGURATION",
            tid,
            size as *mut c_void,
            (&mut c as *mut libc::ptrace_rseq_configuration).cast(),
        )
    }? as usize;
    if n < 24 {
        return Err(PtraceError::ShortRegset {
            request: "PTRACE_GET_RSEQ_CONFIGURATION",
            tid: tid.as_raw(),
            got: n,
            expected: size,
        });
    }
    Ok(RseqConfig {
        rseq_abi_pointer: c.rseq_abi_pointer,
        rseq_abi_size: c.rseq_abi_size,
        signature: c.signature,
        flags: c.flags,
    })
}

/// `PTRACE_SECCOMP_GET_FILTER`: classic-BPF instructions (8 bytes each) of filter `index`
/// (0 = most recently installed). Errors: ENOENT past the last filter, EMEDIUMTYPE for a
/// filter that is not classic BPF, EACCES without CAP_SYS_ADMIN.
pub fn seccomp_get_filter(tid: Pid, index: u64) -> Result<Vec<u8>> {
    // First call with a null buffer returns the instruction count.
    // SAFETY: a null data pointer only queries the length.
    let count = unsafe {
        raw(
            kabi::PTRACE_SECCOMP_GET_FILTER,
            "PTRACE_SECCOMP_GET_FILTER",
            tid,
            index as usize as *mut c_void,
            std::ptr::null_mut(),
        )
    }? as usize;
    let mut buf = vec![0u8; count * 8];
    // SAFETY: buf has room for `count` sock_filter instructions.
    let n = unsafe {
        raw(
            kabi::PTRACE_SECCOMP_GET_FILTER,
            "PTRACE_SECCOMP_GET_FILTER",
            tid,
            index as usize as *mut c_void,
            buf.as_mut_ptr().cast(),
        )
    }? as usize;
    buf.truncate(n.min(count) * 8);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn siginfo_fields() {
        let mut b = [0u8; 128];
        b[0..4].copy_from_slice(&10i32.to_ne_bytes());
        b[8..12].copy_from_slice(&(-6i32).to_ne_bytes());
        let si = SigInfo::from_bytes(&b).expect("128 bytes");
        assert_eq!(si.signo(), 10);
        assert_eq!(si.code(), -6);
        assert_eq!(si.errno(), 0);
        assert!(SigInfo::from_bytes(&b[..100]).is_none());
    }
}
