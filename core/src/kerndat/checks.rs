//! The checks this implementation cannot work without (plus their ptrace neighbours).

use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::FileExt;

use nix::unistd::Pid;

use super::{Check, KernelFeatures, Need};
use crate::sys::probe::{self, ChildSetup};
use crate::sys::ptrace::{self, Options};
use crate::sys::{pidfd, remote, vm};

type Outcome = Result<Option<String>, String>;

/// An error with its whole source chain, for a Missing reason.
pub(super) fn why(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// Runs `f` on a frozen idle child and flattens both error layers.
fn frozen<T, E: std::error::Error + 'static>(
    options: Options,
    f: impl FnOnce(Pid) -> Result<T, E>,
) -> Result<T, String> {
    probe::with_frozen_child(ChildSetup::Idle, options, f)
        .map_err(|e| why(&e))?
        .map_err(|e| why(&e))
}

pub(super) static CHECKS: &[Check] = &[
    Check {
        name: "ptrace_seize",
        criu_feature: false,
        what: "PTRACE_SEIZE + PTRACE_INTERRUPT of a child, GETREGSET NT_PRSTATUS/NT_PRFPREG",
        need: Need::DumpAndRestore,
        hint: "ptrace must be allowed: kernel.yama.ptrace_scope <= 1 (or CAP_SYS_PTRACE) and no \
               LSM denial",
        probe: ptrace_seize,
    },
    Check {
        name: "ptrace_peeksiginfo",
        criu_feature: false,
        what: "PTRACE_PEEKSIGINFO (thread and shared queues) and PTRACE_GETSIGMASK",
        need: Need::Dump,
        hint: "needs Linux 3.10 or newer",
        probe: ptrace_peeksiginfo,
    },
    Check {
        name: "xsave",
        criu_feature: false,
        what: "PTRACE_GETREGSET NT_X86_XSTATE (full FPU/AVX state)",
        need: Need::DumpAndRestore,
        hint: "needs an x86_64 CPU with XSAVE and a kernel exporting NT_X86_XSTATE",
        probe: xsave,
    },
    Check {
        name: "remote_syscall",
        criu_feature: false,
        what: "a getpid() and an mmap/munmap injected into a frozen child via PTRACE_SYSCALL",
        need: Need::DumpAndRestore,
        hint: "PTRACE_SYSCALL and PTRACE_GET_SYSCALL_INFO must work (Linux 5.3+); seccomp or \
               an LSM may be blocking it",
        probe: remote_syscall,
    },
    Check {
        name: "process_vm_readv",
        criu_feature: false,
        what: "process_vm_readv of a frozen child's stack, compared with PTRACE_PEEKDATA",
        need: Need::Dump,
        hint: "needs CONFIG_CROSS_MEMORY_ATTACH=y",
        probe: process_vm_readv,
    },
    Check {
        name: "get_rseq_conf",
        criu_feature: true,
        what: "PTRACE_GET_RSEQ_CONFIGURATION of a child (glibc 2.35+ registers rseq in every \
               thread)",
        need: Need::Dump,
        hint: "needs Linux 5.13 or newer",
        probe: get_rseq_conf,
    },
    Check {
        name: "pidfd_store",
        criu_feature: true,
        what: "pidfd_open and pidfd_getfd (how fds are taken from a frozen task)",
        need: Need::Dump,
        hint: "needs Linux 5.6 or newer",
        probe: pidfd_store,
    },
    Check {
        name: "map_files",
        criu_feature: false,
        what: "/proc/self/map_files links readable",
        need: Need::Dump,
        hint: "needs CONFIG_CHECKPOINT_RESTORE=y",
        probe: map_files,
    },
    Check {
        name: "kcmp",
        criu_feature: false,
        what: "kcmp(KCMP_VM) on ourselves",
        need: Need::Dump,
        hint: "needs CONFIG_KCMP=y (selected by CONFIG_CHECKPOINT_RESTORE)",
        probe: kcmp,
    },
    Check {
        name: "proc_pagemap",
        criu_feature: false,
        what: "/proc/self/pagemap entry of a touched page: present bit (and PFN)",
        need: Need::Dump,
        hint: "needs CONFIG_PROC_PAGE_MONITOR=y",
        probe: proc_pagemap,
    },
    Check {
        name: "prctl_tid_address",
        criu_feature: false,
        what: "prctl(PR_GET_TID_ADDRESS) (the clear_child_tid pointer of a thread)",
        need: Need::Dump,
        hint: "needs CONFIG_CHECKPOINT_RESTORE=y",
        probe: prctl_tid_address,
    },
    Check {
        name: "sigqueueinfo",
        criu_feature: false,
        what: "rt_sigqueueinfo with a positive si_code to oneself (in a child)",
        need: Need::Restore,
        hint: "needs Linux 3.9 or newer",
        probe: sigqueueinfo,
    },
    Check {
        name: "clone3_set_tid",
        criu_feature: true,
        what: "clone3 with set_tid (probed with an unreadable set_tid array: EFAULT, no child)",
        need: Need::Restore,
        hint: "needs Linux 5.5 or newer (and CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN to use it)",
        probe: clone3_set_tid,
    },
    Check {
        name: "prctl_mm_map",
        criu_feature: false,
        what: "prctl(PR_SET_MM, PR_SET_MM_MAP_SIZE)",
        need: Need::Restore,
        hint: "needs CONFIG_CHECKPOINT_RESTORE=y",
        probe: prctl_mm_map,
    },
    Check {
        name: "can_map_vdso",
        criu_feature: true,
        what: "arch_prctl(ARCH_MAP_VDSO_64) in a child whose vDSO was unmapped",
        need: Need::Restore,
        hint: "needs CONFIG_CHECKPOINT_RESTORE=y and a 64-bit vDSO",
        probe: can_map_vdso,
    },
];

fn ptrace_seize(kf: &mut KernelFeatures) -> Outcome {
    let cs = frozen(Options::PTRACE_O_TRACESYSGOOD, |pid| {
        let r = ptrace::get_regs(pid)?;
        ptrace::get_fpregs(pid)?;
        Ok::<_, ptrace::PtraceError>(r.cs)
    })?;
    if cs != 0x33 {
        return Err(format!("child runs with cs={cs:#x}, not 64-bit code"));
    }
    kf.ptrace = true;
    Ok(None)
}

fn ptrace_peeksiginfo(_: &mut KernelFeatures) -> Outcome {
    frozen(Options::empty(), |pid| {
        ptrace::peek_siginfo(pid, ptrace::SigQueue::Thread)?;
        ptrace::peek_siginfo(pid, ptrace::SigQueue::Shared)?;
        ptrace::get_sigmask(pid)
    })?;
    Ok(None)
}

fn xsave(kf: &mut KernelFeatures) -> Outcome {
    let xs = frozen(Options::empty(), ptrace::get_xsave)?;
    kf.xsave_size = Some(xs.as_bytes().len());
    Ok(Some(format!(
        "{} bytes, xstate_bv {:#x}",
        xs.as_bytes().len(),
        xs.xstate_bv()
    )))
}

fn remote_syscall(kf: &mut KernelFeatures) -> Outcome {
    let (got, pid, gadget) = frozen(Options::empty(), |pid| {
        let mut rt = remote::RemoteTask::new(pid, pid)?;
        let got = rt.getpid()?;
        rt.scratch(4096)?;
        let gadget = rt.gadget();
        rt.finish()?;
        Ok::<_, remote::RemoteError>((got, pid.as_raw(), gadget))
    })?;
    if got != pid {
        return Err(format!(
            "remote getpid() returned {got}, the child is {pid}"
        ));
    }
    kf.remote_syscall = true;
    Ok(Some(match gadget {
        remote::Gadget::At(_) => "syscall instruction found in the vDSO".into(),
        remote::Gadget::PokeAtIp => "no vDSO: syscall instruction poked at ip".into(),
    }))
}

fn process_vm_readv(_: &mut KernelFeatures) -> Outcome {
    let (a, b) = frozen(Options::empty(), |pid| {
        let sp = ptrace::get_regs(pid).map_err(|e| why(&e))?.rsp;
        let mut buf = [0u8; 8];
        vm::read_exact(pid, sp, &mut buf).map_err(|e| why(&e))?;
        let word = ptrace::peek(pid, sp).map_err(|e| why(&e))?;
        Ok::<_, StrError>((u64::from_ne_bytes(buf), word))
    })?;
    if a != b {
        return Err(format!("read {a:#x}, PTRACE_PEEKDATA says {b:#x}"));
    }
    Ok(None)
}

fn get_rseq_conf(kf: &mut KernelFeatures) -> Outcome {
    let c = frozen(Options::empty(), ptrace::get_rseq_config)?;
    kf.ptrace_get_rseq_conf = true;
    Ok(Some(if c.is_unregistered() {
        "child has no rseq area".into()
    } else {
        format!("child rseq area of {} bytes", c.rseq_abi_size)
    }))
}

fn pidfd_store(kf: &mut KernelFeatures) -> Outcome {
    let me = nix::unistd::getpid();
    let pfd = pidfd::pidfd_open(me, 0).map_err(|e| why(&e))?;
    let copy = pidfd::pidfd_getfd(pfd.as_fd(), pfd.as_raw_fd()).map_err(|e| why(&e))?;
    let link = std::fs::read_link(format!("/proc/self/fd/{}", copy.as_raw_fd()))
        .map_err(|e| format!("readlink of the copied fd: {e}"))?;
    if link.as_os_str() != "anon_inode:[pidfd]" {
        return Err(format!("pidfd_getfd gave a copy linking to {link:?}"));
    }
    kf.pidfd_getfd = true;
    Ok(None)
}

fn map_files(_: &mut KernelFeatures) -> Outcome {
    let dir = std::fs::read_dir("/proc/self/map_files")
        .map_err(|e| format!("/proc/self/map_files: {e}"))?;
    let first = dir
        .filter_map(|e| e.ok())
        .next()
        .ok_or("/proc/self/map_files is empty")?;
    std::fs::read_link(first.path()).map_err(|e| format!("{}: {e}", first.path().display()))?;
    Ok(None)
}

fn kcmp(_: &mut KernelFeatures) -> Outcome {
    use crate::sys::kcmp::{KcmpType, kcmp};
    let me = nix::unistd::getpid();
    let order = kcmp(me, me, KcmpType::Vm).map_err(|e| why(&e))?;
    if order.is_equal() {
        Ok(None)
    } else {
        Err(format!("kcmp says our mm differs from itself ({order:?})"))
    }
}

fn proc_pagemap(kf: &mut KernelFeatures) -> Outcome {
    let m = probe::AnonMap::new(1).map_err(|e| e.to_string())?;
    let f = std::fs::File::open("/proc/self/pagemap").map_err(|e| format!("open: {e}"))?;
    let mut b = [0u8; 8];
    f.read_exact_at(&mut b, m.addr() / 4096 * 8)
        .map_err(|e| format!("read /proc/self/pagemap: {e}"))?;
    let e = u64::from_le_bytes(b);
    if e & (1 << 63) == 0 {
        return Err(format!("touched page not reported present (entry {e:#x})"));
    }
    kf.pagemap_pfn = e & ((1 << 55) - 1) != 0;
    Ok(Some(
        if kf.pagemap_pfn {
            "with PFNs"
        } else {
            "PFNs hidden"
        }
        .into(),
    ))
}

fn prctl_tid_address(_: &mut KernelFeatures) -> Outcome {
    match probe::prctl_get_tid_address() {
        Ok(0) => Err("PR_GET_TID_ADDRESS returned a null pointer for a glibc thread".into()),
        Ok(_) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

fn sigqueueinfo(_: &mut KernelFeatures) -> Outcome {
    probe::sigqueueinfo_in_child().map_err(|e| e.to_string())?;
    Ok(None)
}

fn clone3_set_tid(kf: &mut KernelFeatures) -> Outcome {
    match probe::clone3_probe().map_err(|e| e.to_string())? {
        probe::Clone3Support::SetTid => {
            kf.clone3_set_tid = true;
            Ok(None)
        }
        probe::Clone3Support::NoSetTid => Err("clone3 exists but has no set_tid".into()),
        probe::Clone3Support::Missing => Err("no clone3 syscall (ENOSYS)".into()),
    }
}

fn prctl_mm_map(kf: &mut KernelFeatures) -> Outcome {
    let size = probe::prctl_mm_map_size().map_err(|e| e.to_string())?;
    kf.mm_map_size = Some(size);
    Ok(Some(format!("struct prctl_mm_map is {size} bytes")))
}

fn can_map_vdso(kf: &mut KernelFeatures) -> Outcome {
    let (lo, hi) = vdso_area().ok_or("this process has no vDSO to test with")?;
    probe::map_vdso_in_child(lo, hi).map_err(|e| e.to_string())?;
    kf.can_map_vdso = true;
    Ok(None)
}

/// The `[vvar]`..`[vdso]` span of this process.
fn vdso_area() -> Option<(u64, u64)> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let mut span: Option<(u64, u64)> = None;
    for l in maps.lines() {
        if !(l.ends_with("[vvar]") || l.ends_with("[vvar_vclock]") || l.ends_with("[vdso]")) {
            continue;
        }
        let (a, b) = l.split(' ').next()?.split_once('-')?;
        let (a, b) = (
            u64::from_str_radix(a, 16).ok()?,
            u64::from_str_radix(b, 16).ok()?,
        );
        span = Some(span.map_or((a, b), |(x, y)| (x.min(a), y.max(b))));
    }
    span
}

/// A plain-string error for probes that build their own reasons.
#[derive(Debug)]
struct StrError(String);

impl std::fmt::Display for StrError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StrError {}

impl From<String> for StrError {
    fn from(s: String) -> StrError {
        StrError(s)
    }
}
