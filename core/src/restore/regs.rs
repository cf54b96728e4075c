//! From image registers to what the kernel takes back: general registers with the
//! interrupted-syscall fixup, and the XSAVE area.

use criu_proto::images::{UserX86FpregsEntry, UserX86RegsEntry};

use crate::sys::ptrace::{Regs, XSave, xsave_component};

// Kernel-internal syscall restart codes (include/linux/errno.h), as seen in ax.
const ERESTARTSYS: i64 = -512;
const ERESTARTNOINTR: i64 = -513;
const ERESTARTNOHAND: i64 = -514;
const ERESTART_RESTARTBLOCK: i64 = -516;

/// The general registers the thread resumes with.
///
/// A thread caught inside an interrupted syscall has `ax` = one of the kernel's restart codes.
/// The kernel would, on the way back to user space without a handler, restart it: we do what
/// it does for ERESTARTSYS/ERESTARTNOINTR/ERESTARTNOHAND (ax = orig_ax, ip -= 2 back onto the
/// `syscall` instruction). For ERESTART_RESTARTBLOCK the kernel would call restart_syscall,
/// which needs the kernel-side restart block of the dumped task that no image carries; like
/// CRIU the call returns -EINTR instead (restart_syscall in a fresh task gives the same).
/// Images whose dumper already rewound (CRIU's do) have ax == orig_ax and pass unchanged.
///
/// `orig_ax` is set to -1 so the kernel does not apply its own restart logic when the thread
/// leaves the ptrace stop we set these registers in.
pub fn final_regs(r: &UserX86RegsEntry) -> Regs {
    let mut out = Regs {
        r15: r.r15,
        r14: r.r14,
        r13: r.r13,
        r12: r.r12,
        rbp: r.bp,
        rbx: r.bx,
        r11: r.r11,
        r10: r.r10,
        r9: r.r9,
        r8: r.r8,
        rax: r.ax,
        rcx: r.cx,
        rdx: r.dx,
        rsi: r.si,
        rdi: r.di,
        orig_rax: u64::MAX,
        rip: r.ip,
        cs: r.cs,
        eflags: r.flags,
        rsp: r.sp,
        ss: r.ss,
        fs_base: r.fs_base,
        gs_base: r.gs_base,
        ds: r.ds,
        es: r.es,
        fs: r.fs,
        gs: r.gs,
    };
    let in_syscall = (r.orig_ax as i64) >= 0;
    if in_syscall {
        match r.ax as i64 {
            ERESTARTSYS | ERESTARTNOINTR | ERESTARTNOHAND => {
                out.rax = r.orig_ax;
                out.rip = r.ip.wrapping_sub(2);
            }
            ERESTART_RESTARTBLOCK => out.rax = (-(libc::EINTR as i64)) as u64,
            _ => {}
        }
    }
    out
}

fn put_u32s(dst: &mut [u8], words: &[u32]) {
    for (chunk, w) in dst.chunks_exact_mut(4).zip(words) {
        chunk.copy_from_slice(&w.to_le_bytes());
    }
}

fn put_u64s(dst: &mut [u8], words: &[u64]) {
    for (chunk, w) in dst.chunks_exact_mut(8).zip(words) {
        chunk.copy_from_slice(&w.to_le_bytes());
    }
}

/// Why an image FPU state cannot be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XsaveMismatch(pub String);

/// Fills `xs` (a valid XSAVE buffer read from the new thread, so the kernel accepts its
/// layout) with the image's FPU/SSE/AVX/AVX-512/PKRU state. Components the image has but this
/// CPU lacks are an error; components this CPU has but the image lacks keep their init state
/// (their xstate_bv bit is cleared).
pub fn fill_xsave(xs: &mut XSave, fp: &UserX86FpregsEntry) -> Result<(), XsaveMismatch> {
    let b = xs.as_bytes_mut();
    if b.len() < 576 {
        return Err(XsaveMismatch(format!("xsave area of {} bytes", b.len())));
    }
    // Legacy FXSAVE region (first 512 bytes).
    b[0..2].copy_from_slice(&(fp.cwd as u16).to_le_bytes());
    b[2..4].copy_from_slice(&(fp.swd as u16).to_le_bytes());
    b[4..6].copy_from_slice(&(fp.twd as u16).to_le_bytes());
    b[6..8].copy_from_slice(&(fp.fop as u16).to_le_bytes());
    b[8..16].copy_from_slice(&fp.rip.to_le_bytes());
    b[16..24].copy_from_slice(&fp.rdp.to_le_bytes());
    b[24..28].copy_from_slice(&fp.mxcsr.to_le_bytes());
    b[28..32].copy_from_slice(&fp.mxcsr_mask.to_le_bytes());
    if fp.st_space.len() != 32 || fp.xmm_space.len() != 64 {
        return Err(XsaveMismatch(format!(
            "st_space has {} words, xmm_space {} (want 32 and 64)",
            fp.st_space.len(),
            fp.xmm_space.len()
        )));
    }
    put_u32s(&mut b[32..160], &fp.st_space);
    put_u32s(&mut b[160..416], &fp.xmm_space);
    // x87 and SSE are always present in the legacy area.
    let mut bv: u64 = 0b11;
    if let Some(x) = &fp.xsave {
        let comps: [(u32, Vec<u8>); 5] = [
            (
                2,
                x.ymmh_space.iter().flat_map(|w| w.to_le_bytes()).collect(),
            ),
            (
                5,
                x.opmask_reg.iter().flat_map(|w| w.to_le_bytes()).collect(),
            ),
            (
                6,
                x.zmm_upper.iter().flat_map(|w| w.to_le_bytes()).collect(),
            ),
            (7, x.hi16_zmm.iter().flat_map(|w| w.to_le_bytes()).collect()),
            (9, x.pkru.iter().flat_map(|w| w.to_le_bytes()).collect()),
        ];
        // MPX (components 3, 4) is gone from current CPUs and kernels. CET (`x.cet`) is no
        // XSAVE component of the ptrace buffer (a supervisor state the kernel keeps across
        // NT_X86_XSTATE writes): `crate::shstk` restores it, or refused the image at load.
        if x.xstate_bv & 0b1_1000 != 0 {
            return Err(XsaveMismatch("MPX state in the image".into()));
        }
        for (idx, bytes) in comps {
            let wanted = x.xstate_bv & (1 << idx) != 0;
            if bytes.is_empty() {
                if wanted {
                    return Err(XsaveMismatch(format!(
                        "xstate_bv has component {idx} but no data"
                    )));
                }
                continue;
            }
            let Some((off, len)) = xsave_component(idx) else {
                if wanted {
                    return Err(XsaveMismatch(format!(
                        "this CPU lacks xsave component {idx}"
                    )));
                }
                continue;
            };
            let dst = xs_component(b, off, len)?;
            let n = bytes.len().min(len);
            dst[..n].copy_from_slice(&bytes[..n]);
            if wanted {
                bv |= 1 << idx;
            }
        }
    }
    put_u64s(&mut b[512..520], &[bv]);
    Ok(())
}

fn xs_component(b: &mut [u8], off: usize, len: usize) -> Result<&mut [u8], XsaveMismatch> {
    let blen = b.len();
    b.get_mut(off..off + len)
        .ok_or_else(|| XsaveMismatch(format!("component at {off}+{len} outside {blen}-byte area")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regs(ax: i64, orig: i64, ip: u64) -> UserX86RegsEntry {
        UserX86RegsEntry {
            ax: ax as u64,
            orig_ax: orig as u64,
            ip,
            ..Default::default()
        }
    }

    #[test]
    fn restart_codes_rewind_like_the_kernel() {
        for code in [ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND] {
            let r = final_regs(&regs(code, 34, 0x1002));
            assert_eq!((r.rax, r.rip, r.orig_rax), (34, 0x1000, u64::MAX));
        }
        let r = final_regs(&regs(ERESTART_RESTARTBLOCK, 35, 0x1002));
        assert_eq!((r.rax as i64, r.rip), (-(libc::EINTR as i64), 0x1002));
        // Already rewound by the dumper (CRIU): unchanged.
        let r = final_regs(&regs(34, 34, 0x1000));
        assert_eq!((r.rax, r.rip), (34, 0x1000));
        // Not in a syscall: ax is just a register, even if it looks like a code.
        let r = final_regs(&regs(ERESTARTSYS, -1, 0x1002));
        assert_eq!((r.rax as i64, r.rip), (ERESTARTSYS, 0x1002));
    }

    #[test]
    fn xsave_fill_places_the_legacy_area() {
        let mut xs = XSave::from_bytes(vec![0; crate::sys::ptrace::xsave_buffer_size()]).unwrap();
        let fp = UserX86FpregsEntry {
            cwd: 0x37f,
            mxcsr: 0x1f80,
            st_space: vec![0; 32],
            xmm_space: (0..64).collect(),
            ..Default::default()
        };
        fill_xsave(&mut xs, &fp).unwrap();
        let b = xs.as_bytes();
        assert_eq!(&b[0..2], &0x37fu16.to_le_bytes());
        assert_eq!(&b[24..28], &0x1f80u32.to_le_bytes());
        assert_eq!(&b[164..168], &1u32.to_le_bytes());
        assert_eq!(xs.xstate_bv(), 0b11);
        let bad = UserX86FpregsEntry {
            st_space: vec![0; 3],
            ..fp
        };
        assert!(fill_xsave(&mut xs, &bad).is_err());
    }
}
