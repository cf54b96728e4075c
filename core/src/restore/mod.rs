//! Restore: recreate the dumped process tree at its PIDs and TIDs, each task continuing
//! where it stopped.
//!
//! Choreography (tasks in pstree order, parents first; see [`plan`] for what is validated
//! before anything is created):
//! 1. [`spawn`] (root) / `children` (others): open the task's files here through the plugins;
//!    the root is created with `clone3(set_tid)` by us, moves its fds to their numbers, makes
//!    us its tracer and stops; every other task is forked by its restored parent with a
//!    remote `clone3(set_tid)` and fetches its fds with `pidfd_getfd`. Signals are blocked,
//!    the inherited rseq area dropped, and a gadget page holding `syscall; int3` is mapped
//!    where neither the restorer nor any dumped layout has anything.
//! 2. [`rebuild`]: from the gadget, unmap everything else, map the dumped VMAs ([`shmem`]
//!    for anonymous shared memory), have the task `pread64` its pages from `pages-N.img`,
//!    set protections/advice, map the vDSO at the dumped address, `PR_SET_MM_MAP`.
//! 3. [`state`]: sigactions, itimers, personality, umask, cwd/root, rlimits (never raising a
//!    hard limit), prctl bits, oom_score_adj; POSIX timers with their ids.
//! 4. [`threads`]: `clone3(set_tid)` each thread from the gadget; per-thread state (robust
//!    list, clear_tid, sigaltstack, rseq, name, scheduling, pending signals); [`seccomp`]
//!    filter chains.
//! 5. Once every task exists, children first: [`creds`] (the last privileged step), FPU
//!    state, final registers ([`regs`]: interrupted syscalls restarted as the kernel would)
//!    and blocked masks; each leader runs `munmap(gadget)` as its last syscall and gets its
//!    registers in the syscall-exit stop after it. Then every thread is detached.
//!
//!
//! Trees: a child joins a session or group it led, inherited, or whose leader (alive or a
//! zombie) was created before it; a group whose leader is in no image (it died) is led for a
//! moment by a helper task forked by the member's parent, which exits and is reaped by that
//! parent once every task exists (CRIU's TASK_HELPER). Zombies ([`zombie`]) are forked like
//! any child, stay stopped until the tree is complete, then die with their dumped status.
//! Tasks dumped stopped are sent their stop signal before detaching. A session whose leader
//! is dead gets a helper too, which forks its members (`helpers`). A task that forked
//! children and then called `setsid()` is forked into its old session, forks them, and calls
//! `setsid()` only before its first child of the new session (`sessions`, which also orders
//! the tasks); a zombie session leader forks its members (re-parented to a child subreaper)
//! before it dies.
//!
//! A process that shared its parent's address space (CLONE_VM, and CLONE_SIGHAND when it
//! shared the handlers too) is forked with those flags once the parent's memory is rebuilt,
//! and rebuilds none itself; it gets its final registers without a last syscall, and the
//! first task of the address space (finished after all its sharers) unmaps the gadget.
//!
//! Any failure kills and reaps every task created so far; images are only read.

mod aio;
mod cgroups;
mod children;
mod cow;
pub mod creds;
mod error;
mod fd_install;
mod fd_lender;
pub mod files;
mod guards;
mod helpers;
pub mod imgread;
mod kobj;
mod loginuid;
pub mod mem;
pub mod ns;
mod pagecheck;
pub mod plan;
pub mod plugins;
pub mod rebuild;
pub mod regs;
pub mod rexec;
mod rseq_cs;
pub mod seccomp;
mod sessions;
pub mod shmem;
pub mod spawn;
pub mod state;
pub mod sysv;
pub mod threads;
pub mod zombie;

use std::path::PathBuf;

use criu_plugin_api::RestoreStage;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use ns::pid::TaskPids;

use crate::sys::ptrace as pt;

pub use error::{RestoreError, Result};
pub use files::{FileOpener, RegOpener};
pub use plan::{RestorePlan, TaskPlan};

use imgread::Images;
use rexec::RemoteThread;
use spawn::{GADGET_DATA, GADGET_SIZE};

/// What `criu restore` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// `-D`: the images directory.
    pub images_dir: PathBuf,
    /// `-d`: return as soon as the tree runs instead of waiting for the root to exit.
    pub detach: bool,
    /// `-s`: leave the restored tasks stopped (SIGSTOP) instead of running.
    pub leave_stopped: bool,
    /// `--pidfile`: write the root's PID there.
    pub pidfile: Option<PathBuf>,
    /// `--shell-job`: the root may stay in our session/process group.
    pub shell_job: bool,
    /// `--verify-pages`: check the pages files against `criu-rs-pages-digest.bin` on a second
    /// thread while the tasks read them, and resume none unless they match; images without
    /// the digest (CRIU's) are then refused. Off by default: it cost 3-9% of a 1 GiB restore
    /// on a 2-core machine (README, Performance).
    pub verify_pages: bool,
    /// `--secret-key FILE`: the key file that decrypts images plugins encrypted at dump.
    pub secret_key: Option<PathBuf>,
    /// `--tcp-established`, `--tcp-close`, `--file-locks`, `--ext-unix-sk`,
    /// `--network-lock` and `--external`: for the plugins
    /// ([`RestoreOptions::plugin_options`]).
    pub tcp_established: bool,
    pub tcp_close: bool,
    pub file_locks: bool,
    pub ext_unix_sk: bool,
    pub network_lock: criu_plugin_api::NetworkLock,
    pub external: Vec<String>,
    /// `-r/--root`: the root mount of the tree's own mount namespace is a bind of this
    /// directory instead of what the image says (as CRIU's `--root`; [`crate::mnt`]).
    pub root: Option<PathBuf>,
    /// `--manage-cgroups`, `--cgroup-root`, `--cgroup-yard` ([`crate::cgroup`]).
    pub cgroups: crate::cgroup::CgroupOptions,
}

impl RestoreOptions {
    /// The options plugins see ([`criu_plugin_api::RestoreOptions`]).
    pub fn plugin_options(&self) -> criu_plugin_api::RestoreOptions {
        let mut o = criu_plugin_api::RestoreOptions::default();
        o.shell_job = self.shell_job;
        o.secret_key = self.secret_key.clone();
        o.tcp_established = self.tcp_established;
        o.tcp_close = self.tcp_close;
        o.file_locks = self.file_locks;
        o.ext_unix_sk = self.ext_unix_sk;
        o.network_lock = self.network_lock;
        o.external = self.external.clone();
        o
    }
}

/// How a restore ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreOutcome {
    /// `detach`: the tree runs (or is stopped, with `leave_stopped`); the root's PID.
    Detached { root: i32 },
    /// Without `detach`: the root exited with this code...
    Exited { root: i32, code: i32 },
    /// ...or was killed by this signal.
    Killed { root: i32, signal: i32 },
}

/// Refuses, before any task exists, images whose plugins are not all here: a plugin
/// `inventory.img` records (as CRIU does), or none restoring a file some fd refers to.
fn check_plugins(
    plan: &RestorePlan,
    plugins: &[&'static dyn criu_plugin_api::Plugin],
) -> Result<()> {
    let missing = crate::plugins::missing_plugins(&plan.plugins, plugins);
    if !missing.is_empty() {
        return Err(RestoreError::MissingPlugins {
            names: missing,
            searched: crate::plugins::searched_dirs(),
        });
    }
    for t in &plan.tasks {
        for f in &t.fds {
            let Some(entry) = plan.files.get(&f.id) else {
                continue; // reported with its image by the restore itself
            };
            if criu_plugin_api::find_restore_handler(plugins, entry).is_err() {
                return Err(RestoreError::NoRestorer {
                    pid: t.pid,
                    fd: Some(f.fd as i32),
                    id: f.id,
                    fd_type: criu_plugin_api::fd_type_name(entry.r#type),
                    recorded: plan.plugins.clone(),
                    searched: crate::plugins::searched_dirs(),
                });
            }
        }
    }
    Ok(())
}

/// Images with file locks (written by the `filelocks` plugin with `--file-locks`) are not
/// restored without a plugin to take the locks again: the tree would run unlocked.
fn check_file_locks(
    images: &Images,
    plan: &RestorePlan,
    plugins: &[&'static dyn criu_plugin_api::Plugin],
) -> Result<()> {
    let kind = criu_proto::ImageKind::FileLocks;
    let name = kind.file_name(0);
    if !images.exists(&name) || plugins.iter().any(|p| p.info().name == FILE_LOCKS_PLUGIN) {
        return Ok(());
    }
    // An empty image (no lock) needs no plugin.
    let locks: Vec<criu_proto::images::FileLockEntry> = images.entries(&name, kind.magic())?;
    if locks.is_empty() {
        return Ok(());
    }
    Err(RestoreError::Unsupported {
        pid: plan.tasks[0].pid,
        what: format!("the file locks of {name}"),
        hint: "no loaded plugin restores file locks: load the filelocks plugin \
               (libcriu_filelocks.so) with --plugin-dir",
    })
}

/// The plugin that dumps and restores file locks (`plugins/filelocks`).
const FILE_LOCKS_PLUGIN: &str = "filelocks";

/// The VMAs a plugin dumped, from the mm image of each address space's first task (its
/// sharers' are copies).
fn vma_claims(plan: &RestorePlan) -> Vec<crate::plugins::services::VmaClaim> {
    plan.tasks
        .iter()
        .filter(|t| t.vm_owner == t.pid)
        .flat_map(|t| crate::plugins::services::VmaClaim::from_mm(t.pid, &t.mm.vmas))
        .collect()
}

/// Restores the tree in `opts.images_dir`, opening its files with every plugin
/// ([`crate::plugins::all`]: the built-in ones linked into the binary, then those loaded
/// with `--plugin-dir`).
///
/// Call it from one thread: that thread becomes the tracer of every restored task during the
/// restore and the parent of the root (with `detach` the caller should reap it later, or
/// exit so init does). Needs root (clone3 `set_tid`, ptrace, `PR_SET_MM_MAP`,
/// `/proc/PID/map_files`); works without CAP_SYS_RESOURCE.
pub fn restore(opts: &RestoreOptions) -> Result<RestoreOutcome> {
    let images = Images::open(&opts.images_dir)?;
    let mut plan = RestorePlan::load(&images)?;
    plan.check_options(opts.tcp_close)?;
    place_sessions(&mut plan, opts)?;
    let plugins = crate::plugins::all(); // built-in and loaded with --plugin-dir
    check_plugins(&plan, &plugins)?;
    check_file_locks(&images, &plan, &plugins)?;
    let entries: Vec<_> = plan.files.values().cloned().collect();
    let tasks = plan
        .tasks
        .iter()
        .map(|t| criu_plugin_api::TaskIds {
            pid: t.pid,
            tids: if t.is_zombie() {
                Vec::new()
            } else {
                t.threads.iter().map(|th| th.tid).collect()
            },
        })
        .collect();
    let fds = plan
        .tasks
        .iter()
        .map(|t| {
            let fds = t.fds.iter().map(|f| criu_plugin_api::TaskFd {
                fd: f.fd as i32,
                id: f.id,
                fd_type: f.r#type,
                cloexec: f.flags & libc::FD_CLOEXEC as u32 != 0,
            });
            (t.pid, fds.collect())
        })
        .collect();
    let mut opener = plugins::PluginOpener::start(
        &plugins,
        opts.images_dir.clone(),
        tasks,
        fds,
        &entries,
        vma_claims(&plan),
        opts.plugin_options(),
    )
    .map_err(|reason| RestoreError::OpenFile {
        pid: plan.tasks[0].pid,
        id: 0,
        fd: -1,
        what: "plugin restore start".into(),
        reason,
    })?;
    if let Err(e) = stage(&mut opener, RestoreStage::BeforeRestore, false, &plan) {
        let _ = stage(&mut opener, RestoreStage::Failed, false, &plan);
        return Err(e);
    }
    restore_plan(opts, &images, &plan, &mut opener)
}

/// Runs the plugins' hooks at `stage` (through the opener); a failure names the plugin.
fn stage(
    opener: &mut dyn FileOpener,
    stage: RestoreStage,
    live: bool,
    plan: &RestorePlan,
) -> Result<()> {
    opener
        .stage(stage, live)
        .map_err(|(plugin, source)| RestoreError::Hook {
            pid: plan.tasks[0].pid,
            plugin,
            stage: stage.name(),
            source,
        })
}

/// The failure hooks (errors only logged), the end of the plugins' restore, then every
/// created task is killed.
fn fail(opener: &mut dyn FileOpener, plan: &RestorePlan, created: &mut TaskPids) {
    let _ = stage(opener, RestoreStage::Failed, false, plan);
    opener.end();
    created.stop_relay();
    kill_all(&created.hosts());
}

/// Restores with `opener` opening the files of `files.img` (e.g. [`RegOpener`]).
pub fn restore_with(opts: &RestoreOptions, opener: &mut dyn FileOpener) -> Result<RestoreOutcome> {
    let images = Images::open(&opts.images_dir)?;
    let mut plan = RestorePlan::load(&images)?;
    plan.check_options(opts.tcp_close)?;
    place_sessions(&mut plan, opts)?;
    restore_plan(opts, &images, &plan, opener)
}

/// Puts the tree's outside session and group (see [`RestorePlan::place_sessions`]) into ours.
fn place_sessions(plan: &mut RestorePlan, opts: &RestoreOptions) -> Result<()> {
    let sid = nix::unistd::getsid(None).map_or(0, |p| p.as_raw());
    let pgid = nix::unistd::getpgrp().as_raw();
    plan.place_sessions(opts.shell_job, sid, pgid)?;
    sessions::plan(&mut plan.tasks)
}

fn restore_plan(
    opts: &RestoreOptions,
    images: &Images,
    plan: &RestorePlan,
    opener: &mut dyn FileOpener,
) -> Result<RestoreOutcome> {
    let root = plan.tasks[0].pid;
    let mut created = TaskPids::default();
    // The root's network namespace, made now: the root is cloned into it and every socket
    // is opened in it; this thread leaves it when the guard drops.
    let _net = match ns::net::NetRestore::load(images, plan, &opts.external)
        .and_then(|n| n.map(|n| n.create()).transpose())
    {
        Ok(n) => n,
        Err(e) => {
            fail(opener, plan, &mut created);
            return Err(e);
        }
    };
    // The root's mount namespace, built now: the root is cloned into it and the tree's
    // paths are opened inside it; pivoted into once every task exists (`crate::mnt`).
    let mut mntns = match crate::mnt::restore::MntRestore::load(images, plan, opts.root.as_deref())
        .and_then(|m| {
            m.map(|m| m.create(images, &opts.external, opts.root.as_deref()))
                .transpose()
        }) {
        Ok(m) => m,
        Err(e) => {
            fail(opener, plan, &mut created);
            return Err(e);
        }
    };
    // Runs beside the restore; stopped and joined if the restore fails first.
    let check = opts
        .verify_pages
        .then(|| pagecheck::PageCheck::start(images.dir()));
    // Directories made before any task exists; removed again (drop) unless finished.
    let mut cg = match cgroups::load(images, plan, &opts.cgroups).and_then(|mut c| {
        if let Some(c) = c.as_mut() {
            c.prepare()
                .map_err(|source| RestoreError::Cgroup { source })?;
        }
        Ok(c)
    }) {
        Ok(c) => c,
        Err(e) => {
            fail(opener, plan, &mut created);
            return Err(e);
        }
    };
    let mut shared = files::SharedDescriptions::new(opener);
    let result =
        restore_tree(plan, images, &mut shared, opts, &mut created, &mut cg).and_then(|t| {
            shared
                .apply_owners(&plan.files)
                .map_err(|(id, call, source)| RestoreError::Local {
                    pid: root,
                    step: format!("{call} on file id {id} (its SIGIO owner)"),
                    source,
                })?;
            Ok(t)
        });
    drop(shared);
    let (threads, zombies) = match result {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "restore failed, killing created tasks");
            fail(opener, plan, &mut created);
            return Err(e);
        }
    };
    // Every page is in place but no task has run a dumped instruction yet: damaged pages
    // stop the restore here.
    if let Some(Err(e)) = check.map(|c| c.finish(images.dir(), root)) {
        tracing::error!(error = %e, "pages digest mismatch, killing created tasks");
        fail(opener, plan, &mut created);
        return Err(e);
    }
    // Zombies die first, so their parents find them dead when they next run.
    for z in zombies {
        if let Err(e) = zombie::release(z) {
            fail(opener, plan, &mut created);
            return Err(e);
        }
    }
    // The root's pid in our namespace (its pid 1 of a new one has another here): what the
    // pidfile, `-d` and the RPC report, as CRIU does.
    let host_root = created.host(root).map_or(root, Pid::as_raw);
    // Before anything runs, as CRIU: a caller that cannot learn the root's pid would
    // believe the restore failed while the tree runs on.
    if let Err(e) = write_pidfile(opts, host_root) {
        fail(opener, plan, &mut created);
        return Err(e);
    }
    // Every task is in its cgroups: the properties left for now.
    if let Some(Err(source)) = cg.as_mut().map(|c| c.finish()) {
        fail(opener, plan, &mut created);
        return Err(RestoreError::Cgroup { source });
    }
    if let Err(e) = stage(opener, RestoreStage::BeforeResume, true, plan) {
        fail(opener, plan, &mut created);
        return Err(e);
    }
    // The restorers' last step, right before the tasks run (time-based state: timers).
    if let Err((plugin, source)) = opener.finish() {
        fail(opener, plan, &mut created);
        return Err(RestoreError::Hook {
            pid: root,
            plugin,
            stage: "finish",
            source,
        });
    }
    if let Err(e) = rseq_cs::restore_cs_pointers(plan, &created) {
        fail(opener, plan, &mut created);
        return Err(e);
    }
    if let Some(Err(e)) = mntns.as_mut().map(|m| m.pivot()) {
        fail(opener, plan, &mut created);
        return Err(e);
    }
    // Nothing of criu stays inside the tree's pid namespace.
    created.stop_relay();
    // Pending before detach: such tasks stop before running a single instruction. Tasks
    // dumped stopped (task_state 3) stop again with the signal that stopped them.
    for t in plan.tasks.iter().filter(|t| !t.is_zombie()) {
        let sig = if opts.leave_stopped {
            Some(Signal::SIGSTOP)
        } else if t.tc.task_state == plan::TASK_STOPPED {
            let signo = t.tc.stop_signo.unwrap_or(libc::SIGSTOP as u32) as i32;
            Some(Signal::try_from(signo).unwrap_or(Signal::SIGSTOP))
        } else {
            None
        };
        if let (Some(sig), Some(host)) = (sig, created.host(t.pid)) {
            let _ = kill(host, sig);
        }
    }
    for rt in threads.iter().rev() {
        if let Err(e) = pt::detach(rt.tid, 0) {
            let err = rt.ptrace_err(e);
            fail(opener, plan, &mut created);
            return Err(err);
        }
    }
    if let Err(e) = stage(opener, RestoreStage::AfterResume, false, plan) {
        fail(opener, plan, &mut created);
        return Err(e);
    }
    // Nothing of the plugins' restore stays open while we wait for the root.
    opener.end();
    tracing::info!(pid = root, host_pid = host_root, "restored");
    if opts.detach {
        return Ok(RestoreOutcome::Detached { root: host_root });
    }
    wait_root(host_root)
}

/// `--pidfile`: the root's pid.
fn write_pidfile(opts: &RestoreOptions, root: i32) -> Result<()> {
    let Some(path) = &opts.pidfile else {
        return Ok(());
    };
    std::fs::write(path, format!("{root}")).map_err(|source| RestoreError::Pidfile {
        pid: root,
        path: path.clone(),
        source,
    })
}

fn wait_root(root: i32) -> Result<RestoreOutcome> {
    use nix::sys::wait::{WaitStatus, waitpid};
    loop {
        match waitpid(Pid::from_raw(root), None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(RestoreOutcome::Exited { root, code }),
            Ok(WaitStatus::Signaled(_, sig, _)) => {
                return Ok(RestoreOutcome::Killed {
                    root,
                    signal: sig as i32,
                });
            }
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(source) => {
                return Err(RestoreError::Local {
                    pid: root,
                    step: "waiting for the restored root to exit".into(),
                    source,
                });
            }
        }
    }
}

/// SIGKILL every created task and reap it (and its traced threads).
fn kill_all(created: &[Pid]) {
    for &p in created {
        let _ = kill(p, Signal::SIGKILL);
    }
    for &p in created.iter().rev() {
        // Threads and leaders alike: __WALL collects traced threads' exits too.
        loop {
            match pt::wait_stop(p) {
                Ok(s) if s.is_gone() => break,
                Ok(_) => continue,
                Err(_) => break,
            }
        }
    }
}

/// A task restored up to its last privileged step, waiting for the tree to be complete.
struct Prepared<'p> {
    t: &'p TaskPlan,
    sp: spawn::Spawned,
    others: Vec<RemoteThread>,
    /// Its session and group now (see `sessions`: a leader may call setsid() late).
    ids: children::Ids,
}

impl Prepared<'_> {
    /// The deferred `setsid()` of a leader, if still due.
    fn lead_session(&mut self) -> Result<()> {
        if self.t.sid == self.t.pid && self.ids.sid != self.t.pid {
            self.ids = children::lead_session(&mut self.sp.leader, self.t)?;
        }
        Ok(())
    }
}

/// Creates and restores every task (parents first, each forking its children), then
/// finishes them children first (credentials, final registers, gadget unmapped). Returns
/// every thread, ready to be detached.
fn restore_tree(
    plan: &RestorePlan,
    images: &Images,
    opener: &mut dyn FileOpener,
    opts: &RestoreOptions,
    created: &mut TaskPids,
    cg: &mut Option<crate::cgroup::restore::CgroupRestore>,
) -> Result<(Vec<RemoteThread>, Vec<zombie::PendingZombie>)> {
    let root = &plan.tasks[0];
    let gadget =
        spawn::choose_gadget(plan.tasks.iter().flat_map(|t| t.vmas.iter())).ok_or_else(|| {
            RestoreError::Task {
                pid: root.pid,
                tid: root.pid,
                step: "placing the syscall gadget".into(),
                reason: "no free range in the restorer's and every dumped layout".into(),
            }
        })?;
    let mut shm = shmem::ShmemCtx {
        plans: &plan.shmem,
        images,
        objects: shmem::SharedObjects::new(images.dir().to_path_buf(), &plan.shmem),
        relay: None,
    };
    // Before any file is opened: the memfd plugin may restore an fd of one of them.
    opener.set_shmem(shm.objects.clone());
    // Checked before any task exists.
    let namespaces = ns::NsRestore::load(images, plan)?;
    created.set_pidns(namespaces.new_pid_ns());
    let mut done: Vec<Prepared> = Vec::with_capacity(plan.tasks.len());
    let mut helpers = helpers::Helpers::new(plan, gadget);
    for (i, t) in plan.tasks.iter().enumerate() {
        let span = tracing::info_span!("restore_task", pid = t.pid);
        let _g = span.enter();
        let (sp, ids) = if i == 0 {
            let flags = namespaces.clone_flags();
            let mut sp = spawn::spawn(
                plan,
                t,
                images,
                opener,
                opts.shell_job,
                gadget,
                flags,
                created,
            )?;
            // Its namespaces' state, before anything of the tree runs.
            namespaces.apply(t.pid, sp.leader.tid.as_raw())?;
            namespaces.enter_time(&mut sp.leader, gadget + GADGET_DATA)?;
            if namespaces.new_pid_ns() {
                created.start_relay(sp.leader.tid, plan)?;
                shm.relay = created.relay();
            }
            let ids = children::Ids {
                sid: t.sid,
                pgid: t.pgid,
            };
            (sp, ids)
        } else {
            let parent = done.iter_mut().find(|p| p.t.pid == t.ppid).ok_or_else(|| {
                error::bad(
                    "pstree.img",
                    None,
                    format!("parent {} of {} not restored first", t.ppid, t.pid),
                )
            })?;
            // A child of its new session: the parent is done with its old one.
            if sessions::fork_sid(t) == Some(parent.t.pid) {
                parent.lead_session()?;
            }
            helpers.spawn(
                children::Parent {
                    rt: &mut parent.sp.leader,
                    task: parent.t,
                    ids: parent.ids,
                },
                plan,
                t,
                images,
                opener,
                created,
            )?
        };
        tracing::debug!(gadget, "task created");
        // Before anything of it runs; the children it forks inherit it.
        cgroups::enter_task(cg, plan, t, created)?;
        if t.is_zombie() {
            helpers.add_zombie(zombie::PendingZombie {
                rt: sp.leader,
                exit_code: t.tc.exit_code,
                comm: t.tc.comm.clone(),
                data: gadget + GADGET_DATA,
            });
            continue;
        }
        // Its memory is a copy of its parent's (also through a session helper); a parent
        // sharing another task's address space has that task's plan of it.
        let parent = done
            .iter()
            .find(|p| p.t.pid == t.ppid)
            .map(|p| p.t.vm_owner)
            .and_then(|owner| done.iter().find(|p| p.t.pid == owner))
            .map(|p| p.t);
        done.push(prepare_task(sp, ids, t, parent, &mut shm, created)?);
        cgroups::enter_threads(cg, t, created)?;
    }
    // Leaders whose children all stayed in the old session.
    for p in &mut done {
        p.lead_session()?;
    }
    // Every member has joined: helpers exit and their parents (still at the gadget) reap them.
    let mut reapers: Vec<_> = done
        .iter_mut()
        .map(|p| (p.t.pid, &mut p.sp.leader))
        .collect();
    let zombies = helpers.release(&mut reapers, created)?;
    opener.set_task_pids(&created.pairs(), created.relay());
    stage(opener, RestoreStage::AfterTasksExist, true, plan)?;
    let mut all = Vec::new();
    while let Some(p) = done.pop() {
        all.extend(finish_task(p, &plan.seccomp, namespaces.user())?);
    }
    Ok((all, zombies))
}

/// Memory, process state, threads and their state: everything but credentials and the final
/// registers (the task may still have to fork children).
fn prepare_task<'p>(
    mut sp: spawn::Spawned,
    ids: children::Ids,
    t: &'p TaskPlan,
    parent: Option<&TaskPlan>,
    shm: &mut shmem::ShmemCtx<'_>,
    created: &mut TaskPids,
) -> Result<Prepared<'p>> {
    if t.share_vm {
        tracing::debug!(
            owner = t.vm_owner,
            "memory shared with the parent (CLONE_VM)"
        );
    } else {
        rebuild::rebuild_mm(&mut sp, t, parent, shm)?;
        tracing::debug!(vmas = t.vmas.len(), runs = t.pages.len(), "memory restored");
    }
    state::restore_process_state(&mut sp, t)?;
    let mut others = threads::create_threads(&mut sp, t, created)?;
    let data = sp.gadget + GADGET_DATA;
    state::restore_posix_timers(&mut sp.leader, t, data)?;
    threads::restore_thread_state(&mut sp.leader, &t.threads[0], t, data)?;
    for (rt, th) in others.iter_mut().zip(&t.threads[1..]) {
        threads::restore_thread_state(rt, th, t, data)?;
    }
    threads::queue_shared_signals(&mut sp.leader, t, data)?;
    Ok(Prepared { t, sp, others, ids })
}

/// FPU, final registers and blocked signals of a thread that runs no syscall after them.
fn final_state(rt: &mut RemoteThread, th: &plan::ThreadPlan, t: &TaskPlan) -> Result<()> {
    rt.step = "final registers".into();
    threads::restore_fpu(rt, th)?;
    pt::set_regs(rt.tid, &regs::final_regs(&th.regs)).map_err(|e| rt.ptrace_err(e))?;
    pt::set_sigmask(rt.tid, threads::blocked_mask(th, t)).map_err(|e| rt.ptrace_err(e))?;
    Ok(())
}

/// Credentials, FPU and final registers of every thread; the leader unmaps the gadget as its
/// last syscall and gets its registers in the syscall-exit stop after it.
fn finish_task(
    p: Prepared,
    filters: &[criu_proto::images::SeccompFilter],
    userns: Option<&ns::user::UserState>,
) -> Result<Vec<RemoteThread>> {
    let Prepared {
        t,
        mut sp,
        mut others,
        ..
    } = p;
    let data = sp.gadget + GADGET_DATA;
    // Shadow stacks: every thread exists and no filter or credential change can forbid the
    // calls yet.
    if !t.shstk_steps.is_empty() {
        let host = sp.leader.tid.as_raw();
        let mut threads = vec![&mut sp.leader];
        threads.extend(others.iter_mut());
        crate::shstk::x86_64::restore::restore_task(host, threads, &t.shstk_steps)?;
    }
    // After every thread and child exists (they would inherit the filters), before the
    // credentials (installing needs CAP_SYS_ADMIN or no_new_privs).
    seccomp::install_task(&mut sp.leader, &mut others, filters, t, data)?;

    // Last privileged step of each thread: after it the leader cannot clone3(set_tid).
    for (rt, th) in others.iter_mut().zip(&t.threads[1..]) {
        if let Some(c) = &th.tc.creds {
            creds::restore_creds(rt, c, data, userns)?;
        }
        threads::restore_pdeath_sig(rt, th)?;
    }
    if let Some(c) = &t.threads[0].tc.creds {
        creds::restore_creds(&mut sp.leader, c, data, userns)?;
    }
    // What a change of credentials resets.
    threads::restore_pdeath_sig(&mut sp.leader, &t.threads[0])?;
    state::restore_dumpable(&mut sp.leader, t)?;
    for (rt, th) in others.iter_mut().zip(&t.threads[1..]) {
        final_state(rt, th, t)?;
    }
    let leader = &t.threads[0];
    let rt = &mut sp.leader;
    if t.share_vm {
        // The gadget is in the address space it shares: the task that owns it (finished
        // after every sharer, which all descend from it) unmaps it.
        final_state(rt, leader, t)?;
        let mut all = vec![sp.leader];
        all.append(&mut others);
        return Ok(all);
    }
    rt.step = "unmapping the gadget and setting final registers".into();
    threads::restore_fpu(rt, leader)?;
    rt.last_call_then_regs(
        libc::SYS_munmap,
        [sp.gadget, GADGET_SIZE, 0, 0, 0, 0],
        &regs::final_regs(&leader.regs),
    )?;
    pt::set_sigmask(rt.tid, threads::blocked_mask(leader, t)).map_err(|e| rt.ptrace_err(e))?;
    let mut all = vec![sp.leader];
    all.append(&mut others);
    Ok(all)
}
