//! Per-thread state: registers (with CRIU's syscall-restart fixup), FPU/XSAVE, TLS, signal
//! mask and queue, sigaltstack, rseq, robust list, clear_child_tid, creds, scheduling, comm.

use criu_proto::images::{
    CredsEntry, RseqEntry, SiginfoEntry, SignalQueueEntry, ThreadCoreEntry, ThreadInfoX86,
    ThreadSasEntry, UserDescT, UserX86FpregsEntry, UserX86RegsEntry, UserX86RegsMode,
    UserX86XsaveEntry,
};
use nix::unistd::Pid;

use crate::proc::{misc, status};
use crate::sys::kabi;
use crate::sys::ptrace::{self, Regs, SigQueue, XSave};

use super::DumpError;
use super::remote_ops::{self, TaskRemote};

/// `FP_XSTATE_MAGIC1`: marks the `_fpx_sw_bytes` the kernel puts at byte 464.
const FP_XSTATE_MAGIC1: u32 = 0x4650_5853;

const ERESTARTSYS: i64 = 512;
const ERESTARTNOINTR: i64 = 513;
const ERESTARTNOHAND: i64 = 514;
const ERESTART_RESTARTBLOCK: i64 = 516;

/// Everything dumped for one thread.
#[derive(Debug, Clone)]
pub struct ThreadState {
    pub tid: i32,
    pub info: ThreadInfoX86,
    pub core: ThreadCoreEntry,
    /// Classic-BPF seccomp filters of the thread, newest first (raw `sock_filter` arrays).
    pub seccomp_chain: Vec<Vec<u8>>,
}

/// The thread's seccomp filters, newest first. PTRACE_SECCOMP_GET_FILTER counts from the
/// oldest filter (index 0); ENOENT ends the chain.
pub fn seccomp_chain(pid: i32, tid: i32) -> Result<Vec<Vec<u8>>, DumpError> {
    let mut out = Vec::new();
    for i in 0u64.. {
        match ptrace::seccomp_get_filter(Pid::from_raw(tid), i) {
            Ok(f) => out.push(f),
            Err(e) if e.errno() == Some(nix::errno::Errno::ENOENT) && i > 0 => break,
            Err(e) => return Err(DumpError::ptrace(pid, "threads", e)),
        }
    }
    out.reverse();
    Ok(out)
}

/// As CRIU does on dump: a thread stopped inside an interrupted syscall is saved so that it
/// re-executes the syscall (ip back over `syscall`, ax = syscall number), or sees EINTR for
/// syscalls that cannot simply restart.
pub fn fixup_syscall_restart(regs: &mut Regs) {
    if (regs.orig_rax as i64) < 0 {
        return;
    }
    match -(regs.rax as i64) {
        ERESTARTSYS | ERESTARTNOINTR | ERESTARTNOHAND => {
            regs.rax = regs.orig_rax;
            regs.rip = regs.rip.wrapping_sub(2);
        }
        ERESTART_RESTARTBLOCK => regs.rax = (-(libc::EINTR as i64)) as u64,
        _ => {}
    }
}

pub fn gpregs_entry(r: &Regs) -> UserX86RegsEntry {
    UserX86RegsEntry {
        r15: r.r15,
        r14: r.r14,
        r13: r.r13,
        r12: r.r12,
        bp: r.rbp,
        bx: r.rbx,
        r11: r.r11,
        r10: r.r10,
        r9: r.r9,
        r8: r.r8,
        ax: r.rax,
        cx: r.rcx,
        dx: r.rdx,
        si: r.rsi,
        di: r.rdi,
        orig_ax: r.orig_rax,
        ip: r.rip,
        cs: r.cs,
        flags: r.eflags,
        sp: r.rsp,
        ss: r.ss,
        fs_base: r.fs_base,
        gs_base: r.gs_base,
        ds: r.ds,
        es: r.es,
        fs: r.fs,
        gs: r.gs,
        mode: Some(UserX86RegsMode::Native as i32),
    }
}

fn u16_at(b: &[u8], off: usize) -> u32 {
    u16::from_le_bytes([b[off], b[off + 1]]) as u32
}

fn u32s(b: &[u8]) -> Vec<u32> {
    b.chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn u64s(b: &[u8]) -> Vec<u64> {
    b.chunks_exact(8)
        .map(|c| {
            let mut a = [0u8; 8];
            a.copy_from_slice(c);
            u64::from_le_bytes(a)
        })
        .collect()
}

/// The fpregs entry from a standard-format XSAVE area: the 512-byte legacy region, then
/// each extended component this CPU has, as CRIU lays them out.
pub fn fpregs_entry(xs: &XSave) -> UserX86FpregsEntry {
    let b = xs.as_bytes();
    let le64 = |off: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[off..off + 8]);
        u64::from_le_bytes(a)
    };
    let le32 = |off: usize| u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]]);
    // The kernel stores its enabled feature mask (XCR0 as it uses it) in the software
    // reserved bytes of the legacy area; CRIU writes exactly those components. A CPU may
    // describe components the kernel does not enable (MPX, PKRU on some VMs).
    let enabled = if le32(464) == FP_XSTATE_MAGIC1 {
        le64(472)
    } else {
        u64::MAX
    };
    let comp = |i: u32| {
        if enabled & (1u64 << i) == 0 {
            return None;
        }
        xs.component(i)
    };
    let xsave = UserX86XsaveEntry {
        xstate_bv: xs.xstate_bv(),
        ymmh_space: comp(2).map(u32s).unwrap_or_default(),
        bndreg_state: comp(3).map(u64s).unwrap_or_default(),
        bndcsr_state: comp(4).map(u64s).unwrap_or_default(),
        opmask_reg: comp(5).map(u64s).unwrap_or_default(),
        zmm_upper: comp(6).map(u64s).unwrap_or_default(),
        hi16_zmm: comp(7).map(u64s).unwrap_or_default(),
        pkru: comp(9).map(u32s).unwrap_or_default(),
        cet: None,
    };
    UserX86FpregsEntry {
        cwd: u16_at(b, 0),
        swd: u16_at(b, 2),
        twd: u16_at(b, 4),
        fop: u16_at(b, 6),
        rip: le64(8),
        rdp: le64(16),
        mxcsr: le32(24),
        mxcsr_mask: le32(28),
        st_space: u32s(&b[32..160]),
        xmm_space: u32s(&b[160..416]),
        padding: Vec::new(),
        xsave: Some(xsave),
    }
}

fn tls_entries(pid: i32, tid: Pid) -> Result<Vec<UserDescT>, DumpError> {
    let v = ptrace::get_tls_entries(tid).map_err(|e| DumpError::ptrace(pid, "threads", e))?;
    Ok(v.iter()
        .map(|d| UserDescT {
            entry_number: d.entry_number,
            base_addr: d.base_addr,
            limit: d.limit,
            seg_32bit: d.seg_32bit(),
            contents_h: d.contents() & 2 != 0,
            contents_l: d.contents() & 1 != 0,
            read_exec_only: d.read_exec_only(),
            limit_in_pages: d.limit_in_pages(),
            seg_not_present: d.seg_not_present(),
            usable: d.usable(),
        })
        .collect())
}

/// Split a 64-bit capability mask into CRIU's two u32 words.
pub fn cap_words(v: u64) -> Vec<u32> {
    vec![v as u32, (v >> 32) as u32]
}

pub fn creds_entry(st: &status::ProcStatus, secbits: u32) -> CredsEntry {
    CredsEntry {
        uid: st.uid[0],
        euid: st.uid[1],
        suid: st.uid[2],
        fsuid: st.uid[3],
        gid: st.gid[0],
        egid: st.gid[1],
        sgid: st.gid[2],
        fsgid: st.gid[3],
        cap_inh: cap_words(st.cap_inh),
        cap_prm: cap_words(st.cap_prm),
        cap_eff: cap_words(st.cap_eff),
        cap_bnd: cap_words(st.cap_bnd),
        cap_amb: if st.cap_amb != 0 {
            cap_words(st.cap_amb)
        } else {
            Vec::new()
        },
        secbits,
        groups: st.groups.clone(),
        no_new_privs: (st.no_new_privs != 0).then_some(st.no_new_privs),
        ..Default::default()
    }
}

pub fn signal_queue(v: &[ptrace::SigInfo]) -> SignalQueueEntry {
    SignalQueueEntry {
        signals: v
            .iter()
            .map(|s| SiginfoEntry {
                siginfo: s.as_bytes().to_vec(),
            })
            .collect(),
    }
}

/// A frozen thread's rseq registration and what its dump does about it ([`rseq_state`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct RseqState {
    pub config: ptrace::RseqConfig,
    pub fix: super::rseq::RseqFixup,
}

/// Reads the rseq state of frozen thread `tid` of `pid`. Must run before criu runs anything
/// in the thread: a remote syscall returns to user space outside the thread's critical
/// section, where the kernel clears `struct rseq.rseq_cs`, so a later read would take a
/// thread frozen inside a section for one outside it.
pub fn rseq_state(pid: i32, tid: i32) -> Result<RseqState, DumpError> {
    let t = Pid::from_raw(tid);
    let pt = |e| DumpError::ptrace(pid, "threads", e);
    let mut regs = ptrace::get_regs(t).map_err(pt)?;
    fixup_syscall_restart(&mut regs);
    let config = ptrace::get_rseq_config(t).map_err(pt)?;
    let fix = if config.is_unregistered() {
        super::rseq::RseqFixup::default()
    } else {
        super::rseq::fixup(pid, tid, config.rseq_abi_pointer, regs.rip)?
    };
    Ok(RseqState { config, fix })
}

/// Points a thread dumped at its rseq abort handler there in the live task too (CRIU's
/// `compel_set_thread_ip`), for `--leave-running` and a failed dump: the kernel has
/// cleared its `rseq_cs` meanwhile, so resuming inside the section would finish it.
pub fn move_to_abort_handler(pid: i32, tid: i32, rseq: &RseqState) -> Result<(), DumpError> {
    let Some(ip) = rseq.fix.ip else {
        return Ok(());
    };
    let t = Pid::from_raw(tid);
    let pt = |e| DumpError::ptrace(pid, "threads", e);
    let mut regs = ptrace::get_regs(t).map_err(pt)?;
    regs.rip = ip;
    ptrace::set_regs(t, &regs).map_err(pt)
}

/// Collect one frozen thread. `leader` decides where the sigmask goes (the leader's is in
/// task_core, as CRIU writes it); `rseq` is its [`rseq_state`], read before anything ran in it.
pub fn collect_thread(
    pid: i32,
    tid: i32,
    leader: bool,
    rseq_state: RseqState,
    remote: &mut dyn TaskRemote,
) -> Result<ThreadState, DumpError> {
    let t = Pid::from_raw(tid);
    let pt = |e| DumpError::ptrace(pid, "threads", e);
    let mut regs = ptrace::get_regs(t).map_err(pt)?;
    fixup_syscall_restart(&mut regs);
    let xs = ptrace::get_xsave(t).map_err(pt)?;
    let tls = tls_entries(pid, t)?;
    let sigmask = ptrace::get_sigmask(t).map_err(pt)?;
    let pending = ptrace::peek_siginfo(t, SigQueue::Thread).map_err(pt)?;
    let (rseq, rseq_fix) = (rseq_state.config, rseq_state.fix);
    if let Some(ip) = rseq_fix.ip {
        regs.rip = ip;
    }

    let clear_tid = remote_ops::prctl_get_ptr(remote, tid, kabi::PR_GET_TID_ADDRESS, 8)?;
    let (ss_sp, ss_flags, ss_size) = remote_ops::sigaltstack(remote, tid)?;
    let (rla, rla_len) = remote_ops::robust_list(remote, tid)?;
    let secbits = remote_ops::prctl_get(remote, tid, libc::PR_GET_SECUREBITS)? as u32;
    let pdeath = remote_ops::prctl_get_ptr(remote, tid, libc::PR_GET_PDEATHSIG, 4)? as u32;

    let st =
        status::read_thread_status(pid, tid).map_err(|e| DumpError::proc(pid, "threads", e))?;
    let comm = misc::read_comm(pid, tid).map_err(|e| DumpError::proc(pid, "threads", e))?;
    let chain = if st.seccomp == 2 {
        seccomp_chain(pid, tid)?
    } else {
        Vec::new()
    };
    // sched_getscheduler from outside, as CRIU: /proc's stat has no SCHED_RESET_ON_FORK.
    let sp =
        crate::sys::remote::sched_params(t).map_err(|e| DumpError::Remote { pid, source: e })?;
    let rt = sp.policy == libc::SCHED_FIFO || sp.policy == libc::SCHED_RR;
    let reset = if sp.reset_on_fork {
        libc::SCHED_RESET_ON_FORK
    } else {
        0
    };
    let core = ThreadCoreEntry {
        futex_rla: rla,
        futex_rla_len: rla_len as u32,
        sched_nice: Some(sp.nice),
        sched_policy: Some((sp.policy | reset) as u32),
        sched_prio: rt.then_some(sp.priority as u32),
        blk_sigset: (!leader).then_some(sigmask),
        sas: Some(ThreadSasEntry {
            ss_sp,
            ss_size,
            ss_flags,
        }),
        pdeath_sig: (pdeath != 0).then_some(pdeath),
        signals_p: Some(signal_queue(&pending)),
        creds: Some(creds_entry(&st, secbits)),
        seccomp_mode: (st.seccomp != 0).then_some(st.seccomp as i32),
        seccomp_filter: None,
        comm: Some(comm),
        blk_sigset_extended: None,
        rseq_entry: (!rseq.is_unregistered()).then_some(RseqEntry {
            rseq_abi_pointer: rseq.rseq_abi_pointer,
            rseq_abi_size: rseq.rseq_abi_size,
            signature: rseq.signature,
            rseq_cs_pointer: rseq_fix.cs_pointer,
        }),
        cg_set: None,
    };
    let mut fpregs = fpregs_entry(&xs);
    // CRIU's place for the shadow stack: user_x86_xsave_entry.cet (features and SSP).
    if let Some(cet) = crate::shstk::x86_64::dump_thread(pid, tid)?
        && let Some(x) = fpregs.xsave.as_mut()
    {
        x.cet = Some(cet);
    }
    let info = ThreadInfoX86 {
        clear_tid_addr: clear_tid,
        gpregs: gpregs_entry(&regs),
        fpregs,
        tls,
    };
    Ok(ThreadState {
        tid,
        info,
        core,
        seccomp_chain: chain,
    })
}

/// The leader's signal mask (goes to task_core.blk_sigset).
pub fn sigmask(pid: i32, tid: i32) -> Result<u64, DumpError> {
    ptrace::get_sigmask(Pid::from_raw(tid)).map_err(|e| DumpError::ptrace(pid, "task", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regs() -> Regs {
        let mut r: Regs = Regs {
            r15: 0,
            r14: 0,
            r13: 0,
            r12: 0,
            rbp: 0,
            rbx: 0,
            r11: 0,
            r10: 0,
            r9: 0,
            r8: 0,
            rax: 0,
            rcx: 0,
            rdx: 0,
            rsi: 0,
            rdi: 0,
            orig_rax: 0,
            rip: 0,
            cs: 0,
            eflags: 0,
            rsp: 0,
            ss: 0,
            fs_base: 0,
            gs_base: 0,
            ds: 0,
            es: 0,
            fs: 0,
            gs: 0,
        };
        r.rip = 0x1002;
        r
    }

    #[test]
    fn restart_fixup() {
        let mut r = regs();
        r.orig_rax = 34;
        r.rax = (-ERESTARTNOHAND) as u64;
        fixup_syscall_restart(&mut r);
        assert_eq!((r.rax, r.rip), (34, 0x1000));

        let mut r = regs();
        r.orig_rax = 35;
        r.rax = (-ERESTART_RESTARTBLOCK) as u64;
        fixup_syscall_restart(&mut r);
        assert_eq!((r.rax as i64, r.rip), (-4, 0x1002));

        let mut r = regs();
        r.orig_rax = u64::MAX;
        r.rax = (-ERESTARTSYS) as u64;
        fixup_syscall_restart(&mut r);
        assert_eq!(r.rip, 0x1002);

        let mut r = regs();
        r.orig_rax = 0;
        r.rax = 5;
        fixup_syscall_restart(&mut r);
        assert_eq!((r.rax, r.rip), (5, 0x1002));
    }

    #[test]
    fn caps_split() {
        assert_eq!(cap_words(0x1fffeffffff), vec![4278190079, 511]);
    }

    #[test]
    fn fpregs_layout() {
        let mut b = vec![0u8; 4096];
        b[0..2].copy_from_slice(&0x37fu16.to_le_bytes());
        b[24..28].copy_from_slice(&0x1f80u32.to_le_bytes());
        b[160..164].copy_from_slice(&7u32.to_le_bytes());
        b[512..520].copy_from_slice(&0xa2u64.to_le_bytes());
        // Kernel-enabled features: x87, SSE, AVX only.
        b[464..468].copy_from_slice(&FP_XSTATE_MAGIC1.to_le_bytes());
        b[472..480].copy_from_slice(&7u64.to_le_bytes());
        let xs = XSave::from_bytes(b).unwrap();
        let f = fpregs_entry(&xs);
        assert_eq!(f.cwd, 0x37f);
        assert_eq!(f.mxcsr, 8064);
        assert_eq!(f.st_space.len(), 32);
        assert_eq!(f.xmm_space.len(), 64);
        assert_eq!(f.xmm_space[0], 7);
        let x = f.xsave.unwrap();
        assert_eq!(x.xstate_bv, 0xa2);
        if crate::sys::ptrace::xsave_component(2).is_some() {
            assert_eq!(x.ymmh_space.len(), 64);
        }
        assert!(x.opmask_reg.is_empty() && x.pkru.is_empty() && x.bndreg_state.is_empty());
    }
}
