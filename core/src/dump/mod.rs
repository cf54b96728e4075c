//! The dump orchestration: `criu dump -t PID -D DIR`.
//!
//! Steps (one module each): [`freeze`] the tree (root, then its children recursively), every
//! thread with PTRACE_SEIZE + PTRACE_INTERRUPT; then per process, parents first: per-thread
//! state ([`thread`]: registers, FPU/xsave, sigmask, pending signals, rseq, robust list,
//! TLS, seccomp chain) and per-process state ([`task`]: sigactions, timers, rlimits, creds,
//! personality, comm) through ptrace and remote syscalls ([`remote_ops`]); [`memory`]: VMAs
//! from smaps; [`files`]: exe, mapped files, fds (pidfd_getfd, open file descriptions
//! grouped across the whole tree with kcmp KCMP_FILE), cwd/root, each dumped by the plugin
//! that claims it; [`ids`]: kobj ids (kcmp) and namespace ids; [`pages`] via pagemap +
//! process_vm_readv and [`shmem`] objects; then pstree, seccomp, timens, stats and the
//! inventory (last). The tasks are then killed (default), resumed (`leave_running`) or left
//! stopped (`leave_stopped`).
//!
//! On failure every task is resumed exactly as it was and every image written so far is
//! removed; the error names the pid and the step.
//!
//! # Where our images differ from CRIU 4.2's
//! - `[vvar]` and the following `[vvar_vclock]` (kernel 6.13+) are written as ONE vma_entry
//!   with `VMA_AREA_VVAR` covering both, as CRIU 4.2 does (its sample images show a 6-page
//!   VVAR area). Restore maps the whole vDSO area at that start.
//! - `reg_file_entry.build_id` is left to the files plugin (CRIU fills it for ELF files).
//! - `pagemap_entry`s are split only at VMA boundaries and at changes of the lazy flag, not at
//!   CRIU's page-pipe sizes. `PE_LAZY` is set where CRIU sets it (anonymous private, not
//!   locked, not vDSO).
//! - `cgroup.img` ([`crate::cgroup`]): as CRIU's, without `cgns_prefix` (a root in a cgroup
//!   namespace of its own is refused).
//! - A thread interrupted inside a restartable syscall is saved the way CRIU saves it:
//!   ip moved back over `syscall`, ax = orig_ax; `-ERESTART_RESTARTBLOCK` becomes `-EINTR`.
//! - Anonymous shared memory (MAP_SHARED|MAP_ANONYMOUS) is dumped like CRIU's
//!   `pagemap-shmem-<shmid>.img` + `pages-<n>.img` (offsets inside the object, data segments
//!   only). SysV shm attachments are recorded by segment id without their contents (the
//!   segment stays in the host's IPC namespace, as CRIU does without an IPC namespace dump;
//!   a removed one is refused). A memfd mapping is a file VMA whose file the fd plugins
//!   dump (the memfd plugin: a MEMFD entry); it is marked `VMA_AREA_MEMFD`, `shmid` its file
//!   id, and the memfd's contents go to `pagemap-shmem-<inode>.img` once per inode, as CRIU.
//! - seccomp.img: filters are shared between threads and processes when their code and
//!   their older chain are the same (CRIU shares them too, its positions may differ);
//!   `seccomp_filter.flags` is not recorded (needs PTRACE_SECCOMP_GET_METADATA, not wrapped
//!   yet).
//! - Zombies in the tree get a pstree entry and a core image with only comm, task_state
//!   TASK_DEAD (2) and exit_code, like CRIU's; no other image.
//! - A process sharing its parent's address space (clone with CLONE_VM, with or without
//!   CLONE_SIGHAND) gets copies of the mm and pagemap images of the first process of its
//!   vm id (ids-PID.img): the pages are written once. Sharing an address space, signal handlers, an fd table
//!   or an fs_struct with a process other than the parent is refused, as is a root sharing
//!   one with its (undumped) parent, and a thread waiting in vfork() (no ptrace stop reaches
//!   it until the child execs or exits).
//! - Namespaces ([`ns`]): the root's own UTS and IPC namespaces are dumped (every task must
//!   share the root's); other kinds of its own, or a task in another namespace than the
//!   root's, are refused. Refused loudly for now too: VM_IO/PFNMAP mappings,
//!   non-regular mapped files.
//! - `--shell-job` is accepted but not enforced: CRIU refuses to dump a root that is not a
//!   session leader without it; we dump it and record its real sid/pgid in pstree.img.
//! - `timens-0.img` holds CLOCK_MONOTONIC/CLOCK_BOOTTIME at dump time, as in CRIU's sample.

pub mod aio;
mod ctx;
mod deadproc;
mod fdaccess;
pub mod files;
pub mod freeze;
pub mod guards;
pub mod ids;
mod inflight;
pub mod memory;
pub mod ns;
pub mod pages;
mod process;
pub mod remote_ops;
pub mod rseq;
pub mod seccomp;
pub mod shmem;
pub mod task;
pub mod thread;

mod run;

use std::path::PathBuf;

pub use run::dump;

use crate::proc::ProcError;
use crate::sys::ptrace::PtraceError;

/// Options of one dump (the CLI and the RPC server fill these). The dump asks
/// [`crate::plugins::all`]: the built-in plugin crates the binary links
/// (`use criu_plugin_files as _;` ...) and the plugins loaded with `--plugin-dir` before.
#[derive(Debug, Clone)]
pub struct DumpOptions {
    /// Root of the tree to dump (`-t/--tree`).
    pub pid: i32,
    /// Images directory (`-D/--images-dir`); must exist.
    pub images_dir: PathBuf,
    /// `-R/--leave-running`: detach and let the tasks run on.
    pub leave_running: bool,
    /// `-s/--leave-stopped`: leave the tasks stopped (SIGSTOP) after the dump.
    pub leave_stopped: bool,
    /// `--shell-job`: the tree may share criu's session/terminal.
    pub shell_job: bool,
    /// `--ghost-limit`: largest unlinked file carried in the images (bytes).
    pub ghost_limit: u64,
    /// `--timeout`: give up freezing after this many seconds.
    pub freeze_timeout: Option<u64>,
    /// `--secret-key FILE`: plugins encrypt the images holding secrets with this key file.
    pub secret_key: Option<PathBuf>,
    /// `--compress lz4|zstd[:LEVEL]`: pages files compressed (`None`: raw, as CRIU).
    pub compress: Option<crate::image::compress::Compression>,
    /// `--tcp-established`, `--skip-in-flight`, `--file-locks`, `--ext-unix-sk`,
    /// `--network-lock` and `--external`: for the plugins ([`DumpOptions::plugin_options`]).
    pub tcp_established: bool,
    pub skip_in_flight: bool,
    pub file_locks: bool,
    pub ext_unix_sk: bool,
    pub network_lock: criu_plugin_api::NetworkLock,
    pub external: Vec<String>,
    /// `--link-remap`: for the files plugin ([`DumpOptions::plugin_options`]).
    pub link_remap: bool,
    /// `--manage-cgroups`, `--cgroup-root`, `--cgroup-yard`, `--cgroup-dump-controller`.
    pub cgroups: crate::cgroup::CgroupOptions,
    /// `--tcp-close`: connected TCP sockets dumped without their connection (inet plugin).
    pub tcp_close: bool,
    /// Test hook: fail right after the named step ("freeze", "threads", "task", "memory",
    /// "files", "ids", "images") to exercise the failure path.
    pub fail_after: Option<&'static str>,
}

impl DumpOptions {
    pub fn new(pid: i32, images_dir: impl Into<PathBuf>) -> Self {
        DumpOptions {
            pid,
            images_dir: images_dir.into(),
            leave_running: false,
            leave_stopped: false,
            shell_job: false,
            ghost_limit: criu_plugin_api::DEFAULT_GHOST_LIMIT,
            fail_after: None,
            freeze_timeout: None,
            secret_key: None,
            compress: None,
            tcp_established: false,
            skip_in_flight: false,
            file_locks: false,
            ext_unix_sk: false,
            network_lock: criu_plugin_api::NetworkLock::default(),
            external: Vec::new(),
            link_remap: false,
            cgroups: Default::default(),
            tcp_close: false,
        }
    }

    /// The options plugins see ([`criu_plugin_api::DumpOptions`]).
    pub fn plugin_options(&self) -> criu_plugin_api::DumpOptions {
        let mut o = criu_plugin_api::DumpOptions::default();
        o.ghost_limit = self.ghost_limit;
        o.shell_job = self.shell_job;
        o.secret_key = self.secret_key.clone();
        o.tcp_established = self.tcp_established;
        o.skip_in_flight = self.skip_in_flight;
        o.file_locks = self.file_locks;
        o.ext_unix_sk = self.ext_unix_sk;
        o.leave_running = self.leave_running;
        o.network_lock = self.network_lock;
        o.external = self.external.clone();
        o.link_remap = self.link_remap;
        o.tcp_close = self.tcp_close;
        o
    }
}

/// What a successful dump did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DumpReport {
    /// Every pid dumped (the tree; one entry for a single process).
    pub pids: Vec<i32>,
    /// Threads dumped, over all processes.
    pub threads: usize,
    pub pages_scanned: u64,
    pub pages_written: u64,
    /// Open file descriptions written to files.img (fds, exe, cwd/root, mapped files).
    pub files: usize,
    /// Microseconds the tasks were frozen.
    pub frozen_time_us: u64,
}

/// Why a dump failed. Every variant names the pid and the step.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error("pid {pid}: {step}: reading /proc failed")]
    Proc {
        pid: i32,
        step: &'static str,
        #[source]
        source: ProcError,
    },
    #[error("pid {pid}: {step}: ptrace failed")]
    Ptrace {
        pid: i32,
        step: &'static str,
        #[source]
        source: PtraceError,
    },
    #[error("pid {pid}: {step}: {what} failed")]
    Sys {
        pid: i32,
        step: &'static str,
        what: String,
        #[source]
        source: nix::errno::Errno,
    },
    #[error("pid {pid}: {step}: reading task memory failed")]
    Memory {
        pid: i32,
        step: &'static str,
        #[source]
        source: crate::sys::vm::VmError,
    },
    #[error("pid {pid}: {step}: writing images failed")]
    Image {
        pid: i32,
        step: &'static str,
        #[source]
        source: crate::image::ImageError,
    },
    #[error("pid {pid}: remote syscall failed")]
    Remote {
        pid: i32,
        #[source]
        source: crate::sys::remote::RemoteError,
    },
    #[error("pid {pid}: files: {what}")]
    Plugin {
        pid: i32,
        what: String,
        #[source]
        source: criu_plugin_api::PluginError,
    },
    #[error(
        "pid {pid}: no plugin handles fd {fd} ({link}); {searched}; load one with --plugin-dir/-L"
    )]
    NoPlugin {
        pid: i32,
        fd: i32,
        link: String,
        searched: String,
    },
    #[error("pid {pid}: plugin {plugin} failed at stage {stage}")]
    Hook {
        pid: i32,
        plugin: &'static str,
        stage: &'static str,
        #[source]
        source: criu_plugin_api::PluginError,
    },
    #[error("pid {pid} (thread {tid}) is already traced by pid {tracer}; detach that tracer first")]
    AlreadyTraced { pid: i32, tid: i32, tracer: i32 },
    #[error("pid {pid} is a thread of process {tgid}; dump the process (-t {tgid})")]
    NotAProcess { pid: i32, tgid: i32 },
    #[error(
        "the tree of pid {pid} contains criu itself (pid {criu}): criu cannot freeze \
         itself; run criu from outside the tree it dumps"
    )]
    CriuInTree { pid: i32, criu: i32 },
    #[error("pid {pid} (thread {tid}) was not frozen within --timeout {secs} s")]
    FreezeTimeout { pid: i32, tid: i32, secs: u64 },
    #[error("pid {pid} is a zombie or exiting; nothing to dump")]
    Zombie { pid: i32 },
    #[error("pid {pid}: {step}: {what} is not supported yet ({hint})")]
    Unsupported {
        pid: i32,
        step: &'static str,
        what: String,
        hint: &'static str,
    },
    #[error(
        "pid {pid}: fd {fd} ({path}) holds a {lock}; file locks and leases are dumped only \
         with --file-locks (then restore with --file-locks too), or release the lock before \
         the dump"
    )]
    FileLock {
        pid: i32,
        fd: i32,
        path: String,
        lock: crate::proc::locks::FdLock,
    },
    #[error(
        "the tree holds file locks ({first}) and --file-locks was given, but no loaded plugin \
         dumped them (no filelocks.img): load the filelocks plugin (libcriu_filelocks.so) \
         with --plugin-dir"
    )]
    FileLocksNotDumped { first: Box<DumpError> },
    #[error("pid {pid}: {step}: unexpected state: {what}")]
    Unexpected {
        pid: i32,
        step: &'static str,
        what: String,
    },
    #[error("pid {pid}: namespaces: entering the task's namespaces failed")]
    Namespace {
        pid: i32,
        #[source]
        source: crate::sys::nsenter::NsEnterError,
    },
    #[error("pid {pid}: failure injected after step {step}")]
    Injected { pid: i32, step: &'static str },
    /// The dump ran inside the root's pid namespace (`pid` is the root's pid in criu's);
    /// `message` is that process's error, with the pids it names as the tree sees them.
    #[error("pid {pid}: dump inside its pid namespace: {message}")]
    InPidNs { pid: i32, message: String },
    #[error("pid {pid}: mount namespace")]
    Mount {
        pid: i32,
        #[source]
        source: crate::mnt::dump::MntDumpError,
    },
    #[error("pid {pid}: cgroups: {source}")]
    Cgroup {
        pid: i32,
        #[source]
        source: crate::cgroup::CgroupError,
    },
}

impl DumpError {
    pub(crate) fn proc(pid: i32, step: &'static str, source: ProcError) -> Self {
        DumpError::Proc { pid, step, source }
    }

    pub(crate) fn ptrace(pid: i32, step: &'static str, source: PtraceError) -> Self {
        DumpError::Ptrace { pid, step, source }
    }

    pub(crate) fn sys(
        pid: i32,
        step: &'static str,
        what: impl Into<String>,
        source: nix::errno::Errno,
    ) -> Self {
        DumpError::Sys {
            pid,
            step,
            what: what.into(),
            source,
        }
    }
}
