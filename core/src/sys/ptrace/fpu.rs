//! FP register sets: the legacy FXSAVE area (`NT_PRFPREG`) and the full XSAVE area
//! (`NT_X86_XSTATE`, whose size depends on the CPU).

use super::{Pid, PtraceError, Result, getregset_raw, setregset_raw};
use crate::sys::kabi;

/// The 512-byte FXSAVE area (`struct user_fpregs_struct`).
pub type FpRegs = libc::user_fpregs_struct;

/// `PTRACE_GETREGSET NT_PRFPREG`.
pub fn get_fpregs(tid: Pid) -> Result<FpRegs> {
    // SAFETY: plain integers; all-zero is valid.
    let mut fp: FpRegs = unsafe { std::mem::zeroed() };
    let want = std::mem::size_of::<FpRegs>();
    // SAFETY: fp is a writable buffer of `want` bytes.
    let got = unsafe {
        getregset_raw(
            tid,
            libc::NT_PRFPREG,
            "PTRACE_GETREGSET(NT_PRFPREG)",
            (&mut fp as *mut FpRegs).cast(),
            want,
        )
    }?;
    if got != want {
        return Err(PtraceError::ShortRegset {
            request: "PTRACE_GETREGSET(NT_PRFPREG)",
            tid: tid.as_raw(),
            got,
            expected: want,
        });
    }
    Ok(fp)
}

/// `PTRACE_SETREGSET NT_PRFPREG`.
pub fn set_fpregs(tid: Pid, fp: &FpRegs) -> Result<()> {
    // SAFETY: fp is a readable buffer of its own size.
    unsafe {
        setregset_raw(
            tid,
            libc::NT_PRFPREG,
            "PTRACE_SETREGSET(NT_PRFPREG)",
            (fp as *const FpRegs).cast(),
            std::mem::size_of::<FpRegs>(),
        )
    }
}

/// Offset of the XSAVE header (xstate_bv, xcomp_bv) in the standard-format area.
pub const XSAVE_HDR_OFFSET: usize = 512;

/// CPUID leaf 0xD, subleaf `sub`: (eax, ebx, ecx, edx).
pub fn cpuid_xsave(sub: u32) -> (u32, u32, u32, u32) {
    #[allow(unused_unsafe)]
    // SAFETY: CPUID exists on every x86_64 CPU and only reads identification data.
    let r = unsafe { std::arch::x86_64::__cpuid_count(0xD, sub) };
    (r.eax, r.ebx, r.ecx, r.edx)
}

/// Upper bound for the XSAVE area of this CPU: CPUID(0xD,0).ECX is the size for every
/// feature the CPU supports; never below the 576-byte legacy+header minimum.
pub fn xsave_buffer_size() -> usize {
    let (_, enabled, supported, _) = cpuid_xsave(0);
    (enabled.max(supported) as usize).max(XSAVE_HDR_OFFSET + 64)
}

/// Where XSAVE state component `index` (2 = AVX ymm-high, 5 = opmask, 6 = zmm-high256,
/// 7 = hi16-zmm, 9 = PKRU...) lives in the standard (non-compacted) format: (offset, size).
/// `None` for components this CPU does not have.
pub fn xsave_component(index: u32) -> Option<(usize, usize)> {
    if !(2..64).contains(&index) {
        return None;
    }
    let (size, offset, _, _) = cpuid_xsave(index);
    (size != 0).then_some((offset as usize, size as usize))
}

/// A thread's full XSAVE area as the kernel exports it (standard format, sized by the kernel).
#[derive(Clone, PartialEq, Eq)]
pub struct XSave {
    bytes: Vec<u8>,
}

impl std::fmt::Debug for XSave {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XSave")
            .field("len", &self.bytes.len())
            .field("xstate_bv", &format_args!("{:#x}", self.xstate_bv()))
            .finish()
    }
}

impl XSave {
    /// Wraps bytes (e.g. built from an image); must be at least 576 bytes long.
    pub fn from_bytes(bytes: Vec<u8>) -> Option<XSave> {
        (bytes.len() >= XSAVE_HDR_OFFSET + 64).then_some(XSave { bytes })
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        &mut self.bytes
    }
    /// The XSTATE_BV header word: which components hold non-init state.
    pub fn xstate_bv(&self) -> u64 {
        let mut w = [0u8; 8];
        w.copy_from_slice(&self.bytes[XSAVE_HDR_OFFSET..XSAVE_HDR_OFFSET + 8]);
        u64::from_le_bytes(w)
    }
    pub fn set_xstate_bv(&mut self, bv: u64) {
        self.bytes[XSAVE_HDR_OFFSET..XSAVE_HDR_OFFSET + 8].copy_from_slice(&bv.to_le_bytes());
    }
    /// The bytes of component `index`, if present on this CPU and inside the buffer.
    pub fn component(&self, index: u32) -> Option<&[u8]> {
        let (off, len) = xsave_component(index)?;
        self.bytes.get(off..off + len)
    }
    pub fn component_mut(&mut self, index: u32) -> Option<&mut [u8]> {
        let (off, len) = xsave_component(index)?;
        self.bytes.get_mut(off..off + len)
    }
}

/// `PTRACE_GETREGSET NT_X86_XSTATE`: the full XSAVE area; its length is what the kernel
/// reported (the size `set_xsave` must pass back).
pub fn get_xsave(tid: Pid) -> Result<XSave> {
    let mut bytes = vec![0u8; xsave_buffer_size()];
    // SAFETY: bytes is a writable buffer of bytes.len() bytes.
    let got = unsafe {
        getregset_raw(
            tid,
            kabi::NT_X86_XSTATE,
            "PTRACE_GETREGSET(NT_X86_XSTATE)",
            bytes.as_mut_ptr().cast(),
            bytes.len(),
        )
    }?;
    if got < XSAVE_HDR_OFFSET + 64 {
        return Err(PtraceError::ShortRegset {
            request: "PTRACE_GETREGSET(NT_X86_XSTATE)",
            tid: tid.as_raw(),
            got,
            expected: XSAVE_HDR_OFFSET + 64,
        });
    }
    bytes.truncate(got);
    Ok(XSave { bytes })
}

/// `PTRACE_SETREGSET NT_X86_XSTATE`. The kernel needs at least the size it exports
/// (`get_xsave(..).as_bytes().len()`, also `kerndat::KernelFeatures::xsave_size`): a longer
/// buffer is cut to that size, a shorter one fails with EFAULT.
pub fn set_xsave(tid: Pid, xs: &XSave) -> Result<()> {
    // SAFETY: xs.bytes is a readable buffer of its length.
    unsafe {
        setregset_raw(
            tid,
            kabi::NT_X86_XSTATE,
            "PTRACE_SETREGSET(NT_X86_XSTATE)",
            xs.bytes.as_ptr().cast(),
            xs.bytes.len(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpuid_sizes_are_sane() {
        let n = xsave_buffer_size();
        assert!(n >= 576, "{n}");
        // Every x86_64 CPU with XSAVE has AVX on this machine class; if present, ymm-high is
        // 256 bytes right after the header.
        if let Some((off, len)) = xsave_component(2) {
            assert_eq!((off, len), (576, 256));
        }
        assert!(xsave_component(0).is_none());
    }

    #[test]
    fn xstate_bv_round_trip() {
        let mut xs = XSave::from_bytes(vec![0; 1024]).expect("size");
        xs.set_xstate_bv(0x2e7);
        assert_eq!(xs.xstate_bv(), 0x2e7);
        assert!(XSave::from_bytes(vec![0; 100]).is_none());
    }
}
