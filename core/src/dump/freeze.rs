//! Freezing: PTRACE_SEIZE + PTRACE_INTERRUPT on every thread of a process, repeated until the
//! thread list stops growing, and the way back (resume, leave stopped, or kill).

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::proc::{misc, status};
use crate::sys::ptrace::{self, FrozenState, Options};

use super::DumpError;

/// One frozen thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrozenThread {
    pub tid: i32,
    pub state: FrozenState,
}

/// A process whose threads are all held in ptrace stops. Dropping it without calling
/// [`Frozen::release`] resumes every thread (the failure path).
#[derive(Debug)]
pub struct Frozen {
    pub pid: i32,
    /// Leader first, then the other threads in tid order.
    pub threads: Vec<FrozenThread>,
    released: bool,
}

/// What to do with the frozen tasks at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// Detach; the task runs on (or stays in the group-stop it was in).
    Resume,
    /// Send SIGSTOP, then detach: the task is left stopped.
    Stop,
    /// SIGKILL and wait for every thread to be gone.
    Kill,
}

/// Refuse tasks that someone else traces: we could not seize them, and the error would be
/// a bare EPERM.
fn check_not_traced(pid: i32, tid: i32) -> Result<(), DumpError> {
    let st = status::read_thread_status(pid, tid).map_err(|e| DumpError::proc(pid, "freeze", e))?;
    if st.tracer_pid != 0 && st.tracer_pid != std::process::id() as i32 {
        return Err(DumpError::AlreadyTraced {
            pid,
            tid,
            tracer: st.tracer_pid,
        });
    }
    Ok(())
}

/// Whether thread `tid` of `pid` disappears (or is a zombie) within a short while.
fn thread_exits(pid: i32, tid: i32) -> bool {
    for _ in 0..100 {
        match status::read_thread_status(pid, tid) {
            Err(e) if e.is_gone() => return true,
            Ok(st) if st.state == 'Z' || st.state == 'X' => return true,
            _ => std::thread::sleep(std::time::Duration::from_millis(1)),
        }
    }
    false
}

/// Why thread `tid` of `pid` cannot be frozen, if it waits inside vfork() (or a clone with
/// CLONE_VFORK) for its child to exec or exit: the kernel holds it in a killable sleep that
/// no ptrace stop interrupts.
fn vfork_wait(pid: i32, tid: i32) -> Option<String> {
    let Ok(misc::TaskSyscall::In { nr, args }) = misc::read_syscall(pid, tid) else {
        return None;
    };
    let vfork = match nr {
        libc::SYS_vfork => true,
        libc::SYS_clone => args[0] & libc::CLONE_VFORK as u64 != 0,
        libc::SYS_clone3 => {
            // The flags are the first word of its struct clone_args.
            use std::os::unix::fs::FileExt;
            let mut flags = [0u8; 8];
            std::fs::File::open(format!("/proc/{pid}/mem"))
                .and_then(|m| m.read_exact_at(&mut flags, args[0]))
                .is_ok_and(|()| u64::from_ne_bytes(flags) & libc::CLONE_VFORK as u64 != 0)
        }
        _ => false,
    };
    if !vfork {
        return None;
    }
    let child = misc::read_children(pid, tid)
        .unwrap_or_default()
        .into_iter()
        .rev()
        .find(|&c| {
            crate::sys::kcmp::kcmp(
                Pid::from_raw(pid),
                Pid::from_raw(c),
                crate::sys::kcmp::KcmpType::Vm,
            )
            .is_ok_and(|o| o.is_equal())
        });
    let child = child.map_or_else(|| "its child".to_string(), |c| format!("child {c}"));
    Some(format!(
        "thread {tid} waiting in vfork() until {child} calls exec or exits (a sleep no ptrace stop interrupts)"
    ))
}

/// How long a vfork parent may take to be released (its child's exec, as in posix_spawn)
/// before it is refused.
const VFORK_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// [`vfork_wait`] once thread `tid` has waited in vfork() for [`VFORK_GRACE`]; `None` as
/// soon as it is out of it.
fn vfork_wait_persisting(pid: i32, tid: i32) -> Option<String> {
    let since = std::time::Instant::now();
    loop {
        let why = vfork_wait(pid, tid)?;
        if since.elapsed() >= VFORK_GRACE {
            return Some(why);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

fn vfork_refused(pid: i32, why: String) -> DumpError {
    DumpError::Unsupported {
        pid,
        step: "freeze",
        what: why,
        hint: "dump once the vfork child has called exec or exited",
    }
}

/// Freeze every thread of `pid`.
pub fn freeze_process(pid: i32) -> Result<Frozen, DumpError> {
    freeze_process_within(pid, None)
}

/// When a `--timeout` runs out: its deadline and its length in seconds.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    at: std::time::Instant,
    secs: u64,
}

impl Deadline {
    /// `secs` seconds from now.
    pub fn after(secs: u64) -> Self {
        Deadline {
            at: std::time::Instant::now() + std::time::Duration::from_secs(secs),
            secs,
        }
    }

    fn check(deadline: Option<Deadline>, pid: i32, tid: i32) -> Result<(), DumpError> {
        match deadline {
            Some(d) if std::time::Instant::now() >= d.at => Err(DumpError::FreezeTimeout {
                pid,
                tid,
                secs: d.secs,
            }),
            _ => Ok(()),
        }
    }
}

/// A thread with seccomp filters of its own (installed without TSYNC: the leader's status
/// does not show them) must not judge our injected syscalls either. Checked once the thread
/// is stopped, so a filter installed between seizing and the stop counts too.
fn suspend_thread_seccomp(pid: i32, tid: i32, opts: Options) -> Result<(), DumpError> {
    let suspend = ptrace::suspend_seccomp_option();
    if opts.contains(suspend) {
        return Ok(());
    }
    let st = status::read_thread_status(pid, tid).map_err(|e| DumpError::proc(pid, "freeze", e))?;
    if st.seccomp == 0 {
        return Ok(());
    }
    ptrace::set_options(Pid::from_raw(tid), opts | suspend).map_err(|e| DumpError::Ptrace {
        pid,
        step: "freeze",
        source: e,
    })
}

/// [`freeze_process`], giving up with [`DumpError::FreezeTimeout`] at `deadline`.
fn freeze_process_within(pid: i32, deadline: Option<Deadline>) -> Result<Frozen, DumpError> {
    let st = status::read_status(pid).map_err(|e| DumpError::proc(pid, "freeze", e))?;
    if st.tgid != pid {
        return Err(DumpError::NotAProcess { pid, tgid: st.tgid });
    }
    if st.state == 'Z' || st.state == 'X' {
        return Err(DumpError::Zombie { pid });
    }
    let mut opts = Options::PTRACE_O_TRACESYSGOOD;
    if st.seccomp != 0 {
        // Injected syscalls must not be filtered (needs CAP_SYS_ADMIN, which we have).
        opts |= ptrace::suspend_seccomp_option();
    }
    let mut frozen = Frozen {
        pid,
        threads: Vec::new(),
        released: false,
    };
    loop {
        let tids = misc::read_tasks(pid).map_err(|e| DumpError::proc(pid, "freeze", e))?;
        let mut new = 0;
        for tid in tids {
            if frozen.threads.iter().any(|t| t.tid == tid) {
                continue;
            }
            Deadline::check(deadline, pid, tid)?;
            match check_not_traced(pid, tid) {
                Ok(()) => {}
                // The thread exited between listing and looking: nothing to freeze.
                Err(DumpError::Proc { ref source, .. }) if tid != pid && source.is_gone() => {
                    continue;
                }
                Err(e) => return Err(e),
            }
            // Refused before seizing: a seized thread that never stops cannot be detached.
            if let Some(why) = vfork_wait_persisting(pid, tid) {
                return Err(vfork_refused(pid, why));
            }
            // It may have entered vfork() just before our interrupt.
            let mut in_vfork_since = None;
            let mut timed_out = false;
            let mut stuck = || {
                if Deadline::check(deadline, pid, tid).is_err() {
                    timed_out = true;
                    return Some("timed out".to_string());
                }
                match vfork_wait(pid, tid) {
                    None => {
                        in_vfork_since = None;
                        None
                    }
                    Some(why) => {
                        let since = *in_vfork_since.get_or_insert_with(std::time::Instant::now);
                        (since.elapsed() >= VFORK_GRACE).then_some(why)
                    }
                }
            };
            match ptrace::freeze_checked(Pid::from_raw(tid), opts, &mut stuck) {
                Ok(state) => {
                    tracing::debug!(pid, tid, ?state, "thread frozen");
                    frozen.threads.push(FrozenThread { tid, state });
                    new += 1;
                    suspend_thread_seccomp(pid, tid, opts)?;
                }
                // The thread exited between listing and seizing: nothing to freeze.
                Err(e) if e.errno() == Some(nix::errno::Errno::ESRCH) && tid != pid => {}
                Err(ptrace::PtraceError::Gone { .. }) if tid != pid => {}
                // The kernel refuses to attach to a thread that is already exiting (EPERM
                // for PF_EXITING): nothing to freeze once it is gone.
                Err(e)
                    if e.errno() == Some(nix::errno::Errno::EPERM)
                        && tid != pid
                        && thread_exits(pid, tid) => {}
                Err(ptrace::PtraceError::Unstoppable { .. }) if timed_out => {
                    Deadline::check(deadline, pid, tid)?;
                }
                Err(ptrace::PtraceError::Unstoppable { why, .. }) => {
                    return Err(vfork_refused(pid, why));
                }
                Err(e) if e.errno() == Some(nix::errno::Errno::EPERM) && is_criu(pid) => {
                    return Err(DumpError::CriuInTree {
                        pid,
                        criu: std::process::id() as i32,
                    });
                }
                Err(e) => {
                    return Err(DumpError::Ptrace {
                        pid,
                        step: "freeze",
                        source: e,
                    });
                }
            }
        }
        if new == 0 {
            break;
        }
    }
    if !frozen.threads.iter().any(|t| t.tid == pid) {
        return Err(DumpError::Zombie { pid });
    }
    frozen.threads.sort_by_key(|t| (t.tid != pid, t.tid));
    // A thread that exited after we froze it would leave a stale entry; re-list to be sure
    // the set is exactly the live one.
    let live = misc::read_tasks(pid).map_err(|e| DumpError::proc(pid, "freeze", e))?;
    frozen.threads.retain(|t| live.contains(&t.tid));
    Ok(frozen)
}

/// One process of the tree and its parent's pid (0 for the root): frozen, or a zombie
/// (nothing to freeze: it only has an exit code left).
#[derive(Debug)]
pub struct TreeMember {
    pub pid: i32,
    pub ppid: i32,
    /// `None` for a zombie.
    pub frozen: Option<Frozen>,
}

/// Every process of the tree rooted at `root`, frozen, in CRIU's pstree order (pre-order:
/// a parent before its children, children in pid order). Dropping it resumes them all.
#[derive(Debug, Default)]
pub struct FrozenTree {
    pub procs: Vec<TreeMember>,
}

impl FrozenTree {
    pub fn pids(&self) -> impl Iterator<Item = i32> + '_ {
        self.procs.iter().map(|m| m.pid)
    }

    /// Release every process (children first, so a killed parent never waits on them).
    pub fn release(mut self, how: Release) {
        while let Some(m) = self.procs.pop() {
            if let Some(f) = m.frozen {
                f.release(how);
            }
        }
    }
}

/// Children of every thread of a frozen process (a frozen process cannot fork, so the list
/// is final).
fn children_of(f: &Frozen) -> Result<Vec<i32>, DumpError> {
    let mut out = Vec::new();
    for t in &f.threads {
        let kids =
            misc::read_children(f.pid, t.tid).map_err(|e| DumpError::proc(f.pid, "freeze", e))?;
        out.extend(kids);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Whether `pid` is this process or one of its ancestors: criu cannot freeze itself, and
/// freezing an ancestor (the shell that runs criu) would leave criu inside the tree.
fn is_criu(pid: i32) -> bool {
    let mut p = std::process::id() as i32;
    for _ in 0..4096 {
        if p == pid {
            return true;
        }
        match status::read_status(p) {
            Ok(st) if st.ppid > 0 => p = st.ppid,
            _ => return false,
        }
    }
    false
}

/// Freeze `root` and, recursively, all its descendants (parents first: once a parent is
/// frozen its list of children cannot change).
pub fn freeze_tree(root: i32) -> Result<FrozenTree, DumpError> {
    freeze_tree_within(root, None)
}

/// [`freeze_tree`], giving up with [`DumpError::FreezeTimeout`] at `deadline` (`--timeout`).
/// A tree that contains criu (`root` is criu or one of its ancestors) is refused before
/// anything is frozen.
pub fn freeze_tree_within(root: i32, deadline: Option<Deadline>) -> Result<FrozenTree, DumpError> {
    if is_criu(root) {
        return Err(DumpError::CriuInTree {
            pid: root,
            criu: std::process::id() as i32,
        });
    }
    let mut tree = FrozenTree::default();
    let mut stack = vec![(root, 0)];
    while let Some((pid, ppid)) = stack.pop() {
        if pid != root {
            let st = match status::read_status(pid) {
                Ok(st) => st,
                // Reaped at once (its parent ignores SIGCHLD): nothing left to dump.
                Err(e) if e.is_gone() => continue,
                Err(e) => return Err(DumpError::proc(pid, "freeze", e)),
            };
            if st.state == 'Z' {
                tree.procs.push(TreeMember {
                    pid,
                    ppid,
                    frozen: None,
                });
                continue;
            }
        }
        let frozen = match freeze_process_within(pid, deadline) {
            Ok(f) => f,
            // A child exiting under our feet: a zombie now, or already reaped.
            Err(e) if pid != root => match status::read_status(pid) {
                Err(re) if re.is_gone() => continue,
                Ok(st) if st.state == 'Z' || st.state == 'X' => {
                    tree.procs.push(TreeMember {
                        pid,
                        ppid,
                        frozen: None,
                    });
                    continue;
                }
                _ => return Err(e),
            },
            Err(e) => return Err(e),
        };
        let kids = children_of(&frozen)?;
        tree.procs.push(TreeMember {
            pid,
            ppid,
            frozen: Some(frozen),
        });
        // Reverse so the smallest pid is visited first (pre-order, pid order).
        for k in kids.into_iter().rev() {
            stack.push((k, pid));
        }
    }
    Ok(tree)
}

impl Frozen {
    pub fn tids(&self) -> impl Iterator<Item = i32> + '_ {
        self.threads.iter().map(|t| t.tid)
    }

    /// The group-stop signal when the process was stopped before we came.
    pub fn stop_signo(&self) -> Option<i32> {
        match self.threads.first().map(|t| t.state) {
            Some(FrozenState::Stopped { sig }) => Some(sig),
            _ => None,
        }
    }

    /// Let the tasks go as `how` says. Errors are logged, not returned: each thread is
    /// handled whatever happened to the others.
    pub fn release(mut self, how: Release) {
        self.released = true;
        self.do_release(how);
    }

    fn do_release(&mut self, how: Release) {
        let pid = Pid::from_raw(self.pid);
        match how {
            Release::Resume => self.detach_all(),
            Release::Stop => {
                if let Err(e) = kill(pid, Signal::SIGSTOP) {
                    tracing::warn!(pid = self.pid, error = %e, "SIGSTOP failed");
                }
                self.detach_all();
            }
            Release::Kill => {
                if let Err(e) = kill(pid, Signal::SIGKILL) {
                    tracing::warn!(pid = self.pid, error = %e, "SIGKILL failed");
                }
                // As the tracer we get each thread's death; the parent reaps the process.
                // The leader's exit is reported only after every other thread is reaped, so
                // it goes last.
                for t in self.threads.iter().rev() {
                    let tid = Pid::from_raw(t.tid);
                    loop {
                        match ptrace::wait_stop(tid) {
                            Ok(s) if s.is_gone() => break,
                            Ok(_) => {
                                let _ = ptrace::cont(tid, 0);
                            }
                            Err(_) => break,
                        }
                    }
                }
            }
        }
    }

    fn detach_all(&self) {
        for t in &self.threads {
            if let Err(e) = ptrace::detach(Pid::from_raw(t.tid), 0) {
                tracing::warn!(pid = self.pid, tid = t.tid, error = %e, "detach failed");
            }
        }
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        if !self.released {
            self.released = true;
            self.do_release(Release::Resume);
        }
    }
}
