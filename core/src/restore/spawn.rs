//! Creating a task at its PID with its fds, and taking it over: the child stops itself under
//! our ptrace; we block its signals, drop the rseq area it inherited from us and install the
//! syscall gadget from which the rest of the restore runs.

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;
use nix::unistd::Pid;

use crate::sys::clone3::{self, ChildSetup, FdMove, PidState, SessionOp};
use crate::sys::ptrace::{self as pt, Options, Stop};

use super::error::{RestoreError, Result};
use super::files::{self, FileOpener};
use super::imgread::Images;
use super::mem::{VmaKind, VmaPlan};
use super::ns::pid::TaskPids;
use super::plan::{RestorePlan, TaskPlan};
use super::rexec::RemoteThread;

/// The gadget area: one code page (`syscall; int3`), ten data pages for syscall arguments
/// (large enough for a 4096-instruction seccomp filter), one page used as the (never
/// executed) stack of new threads.
pub const GADGET_SIZE: u64 = 12 * 4096;
pub const GADGET_DATA: u64 = 4096;
pub const GADGET_DATA_SIZE: u64 = 10 * 4096;
pub const GADGET_STACK: u64 = 11 * 4096;
/// `syscall` (0f 05) then int3 padding, as one little-endian word.
const GADGET_CODE: u64 = 0xcccc_cccc_cccc_050f;

/// Temporary fds installed in the child besides the dumped ones (all above them).
#[derive(Debug, Default)]
pub struct TempFds {
    pub first: RawFd,
    /// None for a task sharing its parent's address space (it rebuilds no memory).
    pub pages: Option<RawFd>,
    pub exe: Option<RawFd>,
    /// By (file id, writable).
    pub vma_files: BTreeMap<(u32, bool), RawFd>,
    pub cwd: Option<RawFd>,
    pub root: Option<RawFd>,
}

fn open_err(pid: i32, id: u32, fd: i32, what: &str, reason: String) -> RestoreError {
    RestoreError::OpenFile {
        pid,
        id,
        fd,
        what: what.to_string(),
        reason,
    }
}

/// Opens every fd the task will have (in this process) and plans their numbers in the child.
/// A task sharing its parent's fd table (`share_files`) gets only the restore-only fds: its
/// dumped ones are already there.
pub(crate) fn prepare_fds(
    plan: &RestorePlan,
    t: &TaskPlan,
    images: &Images,
    opener: &mut dyn FileOpener,
) -> Result<(Vec<OwnedFd>, Vec<FdMove>, TempFds)> {
    let mut owned: Vec<OwnedFd> = Vec::new();
    let mut moves = Vec::new();
    let mut by_id: BTreeMap<u32, RawFd> = BTreeMap::new();
    opener.begin_task(t.pid);
    let dumped: &[_] = if t.share_files { &[] } else { &t.fds };
    for f in dumped {
        let src = match by_id.get(&f.id) {
            Some(&raw) => raw,
            None => {
                let entry = &plan.files[&f.id];
                let fd = opener
                    .open(entry)
                    .map_err(|r| open_err(t.pid, f.id, f.fd as i32, "fd", r))?;
                let raw = fd.as_raw_fd();
                owned.push(fd);
                by_id.insert(f.id, raw);
                raw
            }
        };
        moves.push(FdMove {
            src,
            dst: f.fd as RawFd,
            cloexec: f.flags & libc::FD_CLOEXEC as u32 != 0,
        });
    }
    let first = t
        .fds
        .iter()
        .map(|f| f.fd as RawFd + 1)
        .max()
        .unwrap_or(0)
        .max(3);
    let mut next = first;
    let mut add = |fd: OwnedFd, owned: &mut Vec<OwnedFd>, moves: &mut Vec<FdMove>| -> RawFd {
        let dst = next;
        next += 1;
        moves.push(FdMove {
            src: fd.as_raw_fd(),
            dst,
            cloexec: true,
        });
        owned.push(fd);
        dst
    };
    let mut temp = TempFds {
        first,
        ..TempFds::default()
    };
    // A task sharing its parent's address space (CLONE_VM) finds its memory rebuilt.
    if !t.share_vm {
        open_memory_files(plan, t, images, opener, &mut temp, &mut |fd| {
            add(fd, &mut owned, &mut moves)
        })?;
    }
    if let Some(fs) = &t.fs
        && let Some((cwd, root)) = files::fs_paths(&plan.files, fs)
    {
        for (path, slot, id) in [
            (cwd, &mut temp.cwd, fs.cwd_id),
            (root, &mut temp.root, fs.root_id),
        ] {
            let fd = match plan.files.get(&id) {
                // A removed directory: its plugin recreates it (a ghost directory).
                Some(entry) if plan.remapped.contains(&id) => opener.open(entry),
                _ => crate::mnt::build::in_tree(|| {
                    open(
                        path.as_str(),
                        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                        Mode::empty(),
                    )
                })
                .and_then(|r| r.map_err(|e| format!("{path}: {e}"))),
            }
            .map_err(|r| open_err(t.pid, id, -1, "cwd/root", r))?;
            *slot = Some(add(fd, &mut owned, &mut moves));
        }
    }
    Ok((owned, moves, temp))
}

/// The pages image, the exe file and the files behind mappings, each given to `add` (which
/// plans its number in the child).
fn open_memory_files(
    plan: &RestorePlan,
    t: &TaskPlan,
    images: &Images,
    opener: &mut dyn FileOpener,
    temp: &mut TempFds,
    add: &mut dyn FnMut(OwnedFd) -> RawFd,
) -> Result<()> {
    // A compressed pages file comes back decompressed into a memfd the task reads instead.
    let pages =
        crate::image::compress_read::open_pages(&images.path(&t.pages_image)).map_err(|e| {
            open_err(
                t.pid,
                0,
                -1,
                &t.pages_image,
                crate::plugins::error_chain(&e),
            )
        })?;
    temp.pages = Some(add(OwnedFd::from(pages)));
    if t.mm.exe_file_id != 0 {
        let (fd, _) = files::open_for_mapping(&plan.files, t.mm.exe_file_id, false)
            .map_err(|r| open_err(t.pid, t.mm.exe_file_id, -1, "exe", r))?;
        temp.exe = Some(add(fd));
    }
    for v in &t.vmas {
        let (id, write) = match v.kind {
            VmaKind::FilePrivate { file_id } => (file_id, false),
            VmaKind::FileShared { file_id } => (file_id, v.maps_file_writable()),
            _ => continue,
        };
        if temp.vma_files.contains_key(&(id, write)) {
            continue;
        }
        let what = format!("mapping at {:#x}", v.start);
        let entry = plan
            .files
            .get(&id)
            .ok_or_else(|| open_err(t.pid, id, -1, &what, "not in files.img".into()))?;
        let fd = if entry.reg.is_some() && !plan.remapped.contains(&id) {
            files::open_for_mapping(&plan.files, id, write).map(|(fd, _)| fd)
        } else {
            // Another kind of file (a memfd) or an unlinked one (a ghost): its plugin opens
            // the description, mapped through a reopen with the access the mapping needs.
            let entry = if write {
                files::writable_memfd_twin(&plan.files, entry).unwrap_or(entry)
            } else {
                entry
            };
            opener
                .open(entry)
                .and_then(|fd| files::reopen_for_mapping(&fd, write))
        }
        .map_err(|r| open_err(t.pid, id, -1, &what, r))?;
        let n = add(fd);
        temp.vma_files.insert((id, write), n);
    }
    Ok(())
}

/// The child installs fds up to the highest number it needs: our soft RLIMIT_NOFILE (which
/// it inherits until its own limits are restored) must allow it. Raising the soft limit up
/// to the hard one needs no privilege.
fn raise_nofile_soft(moves: &[FdMove], pid: i32) -> Result<()> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let need =
        moves.iter().map(|m| m.src.max(m.dst)).max().unwrap_or(0) as u64 + moves.len() as u64 + 2;
    let err = |step: &str, source| RestoreError::Local {
        pid,
        step: step.to_string(),
        source,
    };
    let (soft, hard) =
        getrlimit(Resource::RLIMIT_NOFILE).map_err(|e| err("getrlimit(RLIMIT_NOFILE)", e))?;
    if need <= soft {
        return Ok(());
    }
    if need > hard {
        return Err(RestoreError::Unsupported {
            pid,
            what: format!("fd numbers up to {need} with a hard RLIMIT_NOFILE of {hard}"),
            hint: "raise the restorer's hard limit (needs CAP_SYS_RESOURCE)",
        });
    }
    setrlimit(Resource::RLIMIT_NOFILE, need.max(soft), hard)
        .map_err(|e| err("setrlimit(RLIMIT_NOFILE)", e))
}

/// How long a PID whose task has just been reaped may still be reported in use.
const PID_RELEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// `spawn_traced`, retrying while the kernel still holds a PID no task shows any more (it
/// is released a moment after the task disappears from /proc).
fn spawn_retrying(pid: Pid, setup: &mut ChildSetup) -> Result<Pid> {
    let deadline = std::time::Instant::now() + PID_RELEASE_WAIT;
    loop {
        match clone3::spawn_traced(pid, setup) {
            Ok(c) => return Ok(c),
            Err(nix::errno::Errno::EEXIST) => {
                if let Some(holder) = holder_of(pid) {
                    return Err(RestoreError::PidTaken {
                        pid: pid.as_raw(),
                        holder,
                    });
                }
                if std::time::Instant::now() >= deadline {
                    return Err(RestoreError::PidTaken {
                        pid: pid.as_raw(),
                        holder: "a task that exited but whose PID the kernel has not released"
                            .into(),
                    });
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(source) => {
                return Err(RestoreError::Clone {
                    pid: pid.as_raw(),
                    source,
                });
            }
        }
    }
}

/// Who holds `pid`, in words, or None when it is free.
pub(crate) fn holder_of(pid: Pid) -> Option<String> {
    match clone3::pid_state(pid) {
        PidState::Free => None,
        PidState::Alive { comm } => Some(format!("the running task {comm:?}")),
        PidState::Zombie { comm, ppid } => Some(format!(
            "a zombie ({comm:?}) that its parent {ppid} has not reaped yet"
        )),
    }
}

fn session_op(t: &TaskPlan, shell_job: bool) -> Result<SessionOp> {
    if t.sid == t.pid {
        return Ok(SessionOp::NewSession);
    }
    if !shell_job {
        return Err(RestoreError::Unsupported {
            pid: t.pid,
            what: format!("session {} (not a restored task)", t.sid),
            hint: "restore with --shell-job to join the current session",
        });
    }
    Ok(if t.pgid == t.pid {
        SessionOp::NewGroup
    } else {
        SessionOp::Inherit
    })
}

/// A task under our control, in a syscall stop, with signals blocked and the gadget mapped.
#[derive(Debug)]
pub struct Spawned {
    pub leader: RemoteThread,
    pub gadget: u64,
    pub temp: TempFds,
}

/// Creates task `t` (see module docs) in new namespaces per `clone_flags` (0: criu's; with
/// CLONE_NEWPID, `t.pid` is 1 and its pid in ours is free). `created` receives its pid as
/// soon as it exists so the caller can kill it on any later failure.
#[allow(clippy::too_many_arguments)]
pub fn spawn(
    plan: &RestorePlan,
    t: &TaskPlan,
    images: &Images,
    opener: &mut dyn FileOpener,
    shell_job: bool,
    gadget: u64,
    clone_flags: u64,
    created: &mut TaskPids,
) -> Result<Spawned> {
    let pid = Pid::from_raw(t.pid);
    let session = session_op(t, shell_job)?;
    let (owned, moves, temp) = prepare_fds(plan, t, images, opener)?;
    if let Some(holder) = created.holder(t.pid) {
        return Err(RestoreError::PidTaken { pid: t.pid, holder });
    }
    raise_nofile_soft(&moves, t.pid)?;
    let mut setup = ChildSetup::new(session, moves);
    setup.clone_flags = clone_flags;
    let child = spawn_retrying(pid, &mut setup)?;
    created.add(t.pid, child);
    drop(owned);
    let step_err = |step: &str, source| RestoreError::Ptrace {
        pid: t.pid,
        tid: t.pid,
        step: step.to_string(),
        source,
    };
    match pt::wait_stop(child).map_err(|e| step_err("waiting for the new task to stop", e))? {
        Stop::Signal { sig } if sig == libc::SIGSTOP => {}
        other => {
            return Err(RestoreError::Task {
                pid: t.pid,
                tid: t.pid,
                step: "new task setup (session, fds, PTRACE_TRACEME)".into(),
                reason: format!(
                    "it did not stop: {other:?} (exit codes 120-123 = session/fds/traceme/resumed)"
                ),
            });
        }
    }
    // SUSPEND_SECCOMP: restored filters must not judge our remote syscalls.
    let opts = pt::suspend_seccomp_option()
        | Options::PTRACE_O_TRACESYSGOOD
        | Options::PTRACE_O_TRACECLONE
        | Options::PTRACE_O_TRACEFORK
        | Options::PTRACE_O_EXITKILL;
    pt::set_options(child, opts).map_err(|e| step_err("PTRACE_SETOPTIONS", e))?;
    pt::set_sigmask(child, !0).map_err(|e| step_err("blocking signals", e))?;
    let regs = pt::get_regs(child).map_err(|e| step_err("reading registers", e))?;
    // The child stopped right after the `syscall` instruction of kill(): reuse it.
    let insn = regs.rip.wrapping_sub(2);
    let word = pt::peek(child, insn).map_err(|e| step_err("reading the syscall instruction", e))?;
    if word & 0xffff != 0x050f {
        return Err(RestoreError::Task {
            pid: t.pid,
            tid: t.pid,
            step: "finding a syscall instruction".into(),
            reason: format!("no syscall at {insn:#x} ({word:#x})"),
        });
    }
    let mut leader = RemoteThread::new(t.pid, child, insn, regs);
    install_gadget(&mut leader, gadget)?;
    Ok(Spawned {
        leader,
        gadget,
        temp,
    })
}

/// Drops the rseq area a new task inherited from its creator: that memory is about to be
/// replaced, and the kernel would fault (SIGSEGV) updating it.
pub(crate) fn unregister_rseq(rt: &mut RemoteThread) -> Result<()> {
    rt.step = "unregistering inherited rseq".into();
    let cfg = pt::get_rseq_config(rt.tid).map_err(|e| rt.ptrace_err(e))?;
    if !cfg.is_unregistered() {
        rt.call(
            "rseq",
            libc::SYS_rseq,
            [
                cfg.rseq_abi_pointer,
                cfg.rseq_abi_size as u64,
                1,
                cfg.signature as u64,
                0,
                0,
            ],
        )?;
    }
    Ok(())
}

fn install_gadget(rt: &mut RemoteThread, gadget: u64) -> Result<()> {
    unregister_rseq(rt)?;
    rt.step = "mapping the syscall gadget".into();
    let prot = (libc::PROT_READ | libc::PROT_WRITE) as u64;
    let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE) as u64;
    let got = rt.call(
        "mmap",
        libc::SYS_mmap,
        [gadget, GADGET_SIZE, prot, flags, u64::MAX, 0],
    )?;
    if got != gadget {
        return Err(RestoreError::Task {
            pid: rt.pid,
            tid: rt.tid.as_raw(),
            step: rt.step.clone(),
            reason: format!("mmap placed it at {got:#x}, not {gadget:#x}"),
        });
    }
    pt::poke(rt.tid, gadget, GADGET_CODE).map_err(|e| rt.ptrace_err(e))?;
    rt.call(
        "mprotect",
        libc::SYS_mprotect,
        [
            gadget,
            4096,
            (libc::PROT_READ | libc::PROT_EXEC) as u64,
            0,
            0,
            0,
        ],
    )?;
    rt.set_syscall_ip(gadget);
    Ok(())
}

/// A range for the gadget free in our own layout (which the child inherits) and in the
/// dumped one.
pub fn choose_gadget<'a>(vmas: impl IntoIterator<Item = &'a VmaPlan>) -> Option<u64> {
    let own = std::fs::read_to_string("/proc/self/maps").ok()?;
    let mut taken: Vec<(u64, u64)> = own
        .lines()
        .filter_map(|l| {
            let range = l.split_whitespace().next()?;
            let (a, b) = range.split_once('-')?;
            Some((
                u64::from_str_radix(a, 16).ok()?,
                u64::from_str_radix(b, 16).ok()?,
            ))
        })
        .collect();
    taken.extend(vmas.into_iter().map(|v| (v.start, v.end)));
    let mut cand: u64 = 0x1000_0000;
    while cand + GADGET_SIZE < 0x7000_0000_0000 {
        let end = cand + GADGET_SIZE;
        match taken.iter().find(|(s, e)| *s < end && cand < *e) {
            None => return Some(cand),
            Some(&(_, e)) => cand = (e + 0xffff) & !0xffff,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gadget_avoids_both_layouts() {
        let v = VmaPlan {
            start: 0x1000_0000,
            end: 0x1002_0000,
            pgoff: 0,
            prot: 3,
            flags: 0x22,
            kind: VmaKind::AnonPrivate,
            madv: 0,
            fdflags: 0,
            stack: false,
            heap: false,
        };
        let g = choose_gadget(std::slice::from_ref(&v)).unwrap();
        assert!(g >= v.end || g + GADGET_SIZE <= v.start);
    }
}
