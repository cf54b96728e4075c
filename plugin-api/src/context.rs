//! What the core offers a plugin while dumping ([`DumpContext`]) and restoring
//! ([`RestoreContext`]). The core implements both traits; plugins only call them.
//!
//! Images are named by [`ImageRef`] and exchanged as bytes: entries go out as encoded
//! protobuf messages (the core adds CRIU's framing and the image header), images come back as
//! their body (everything after the magic) which [`crate::ImageCursor`] walks. That keeps
//! this contract free of core types and of generics.

use std::any::Any;
use std::os::fd::{BorrowedFd, OwnedFd};

use crate::{PluginError, PluginImageKind};

/// One task of the tree: its pid and its thread ids (the leader, `pid` itself, first).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskIds {
    /// The process id (thread-group leader).
    pub pid: i32,
    /// Every thread id, the leader first.
    pub tids: Vec<i32>,
}

fn unavailable(service: &'static str) -> PluginError {
    PluginError::Unavailable {
        service,
        why: "this context does not offer it (a test context, or an older criu)".into(),
    }
}

/// One fd of a task as the images list it (`fdinfo-<files_id>.img`), for
/// [`RestoreContext::task_fds`]. (API 0.4)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TaskFd {
    /// The fd number in the task.
    pub fd: i32,
    /// The `files.img` id of its open file description.
    pub id: u32,
    /// Its `fd_types` value (`FdTypes::Eventpoll as i32`, ...).
    pub fd_type: i32,
    /// Close-on-exec.
    pub cloexec: bool,
}

/// Default for [`DumpOptions::ghost_limit`]: CRIU's `--ghost-limit` default, 1 MiB.
pub const DEFAULT_GHOST_LIMIT: u64 = 1 << 20;

/// One image file: its kind and, for kinds with a number in the file name
/// (`ghost-file-%x.img`, `fdinfo-%u.img`), that number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ImageRef {
    /// The image kind (fixes the magic and the file name pattern).
    pub kind: PluginImageKind,
    /// The number in the file name, for kinds that have one.
    pub id: Option<u64>,
}

impl ImageRef {
    /// An image kind with a single file (`files.img`, `pipes-data.img`, ...).
    pub const fn single(kind: PluginImageKind) -> Self {
        ImageRef { kind, id: None }
    }

    /// A per-id image (`ghost-file-<id>.img`, ...).
    pub const fn numbered(kind: PluginImageKind, id: u64) -> Self {
        ImageRef { kind, id: Some(id) }
    }

    /// `files.img`.
    pub const FILES: ImageRef = ImageRef::single(PluginImageKind::Files);
    /// `pipes-data.img`.
    pub const PIPES_DATA: ImageRef = ImageRef::single(PluginImageKind::PipesData);
    /// `fifo-data.img`.
    pub const FIFO_DATA: ImageRef = ImageRef::single(PluginImageKind::FifoData);
    /// `remap-fpath.img`.
    pub const REMAP_FPATH: ImageRef = ImageRef::single(PluginImageKind::RemapFpath);

    /// `ghost-file-<id in hex>.img`.
    pub const fn ghost_file(id: u32) -> Self {
        ImageRef::numbered(PluginImageKind::GhostFile, id as u64)
    }
}

impl std::fmt::Display for ImageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The file name when it can be formed, else the kind name (a numbered kind without id).
        match self.kind.file_name(self.id) {
            Some(name) => f.write_str(&name),
            None => f.write_str(self.kind.criu_name()),
        }
    }
}

/// Dump-time options a plugin may consult. `#[non_exhaustive]`: build with `default()`
/// and set fields.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DumpOptions {
    /// Largest unlinked ("ghost") file carried in the images, in bytes (`--ghost-limit`).
    pub ghost_limit: u64,
    /// `--shell-job`: the tree may share its session and terminal with the shell it ran in
    /// (a terminal of a session outside the tree is dumped as such, not refused).
    pub shell_job: bool,
    /// `--secret-key FILE`: the key file with which plugins encrypt the images that hold
    /// secrets (memfd_secret contents); `None`: they are stored in clear. (API 0.6)
    pub secret_key: Option<std::path::PathBuf>,
    /// `--tcp-established`: established TCP connections are dumped (in repair mode) instead
    /// of refused. (API 0.7)
    pub tcp_established: bool,
    /// `--skip-in-flight`: connections not yet accepted by a listening socket are left out
    /// instead of refused. (API 0.7)
    pub skip_in_flight: bool,
    /// `--file-locks`: file locks and leases held by the tree are dumped instead of
    /// refused. (API 0.7)
    pub file_locks: bool,
    /// `--ext-unix-sk`: unix sockets connected to peers outside the tree are dumped as
    /// external instead of refused. (API 0.7)
    pub ext_unix_sk: bool,
    /// `-R/--leave-running`: the tree runs on after the dump, so what a plugin changed in
    /// it (repair mode, a network lock) is undone at [`crate::DumpStage::AfterDump`].
    /// (API 0.7)
    pub leave_running: bool,
    /// `--network-lock`: how connections are kept quiet between dump and restore. (API 0.7)
    pub network_lock: NetworkLock,
    /// `--external` values, as given (`unix[INO]`, `mnt[KEY]:VAL`, ...), in order. (API 0.7)
    pub external: Vec<String>,
    /// `--link-remap`: an open file whose name was removed while other names of it remain
    /// gets a temporary hard link (CRIU's link remap) instead of being refused. (API 0.7)
    pub link_remap: bool,
    /// `--tcp-close` at dump: connected TCP sockets are dumped without their connection
    /// (no repair mode, no stream image, not locked), to be restored closed, as CRIU.
    /// (API 0.7)
    pub tcp_close: bool,
}

impl Default for DumpOptions {
    fn default() -> Self {
        DumpOptions {
            ghost_limit: DEFAULT_GHOST_LIMIT,
            shell_job: false,
            secret_key: None,
            tcp_established: false,
            skip_in_flight: false,
            file_locks: false,
            ext_unix_sk: false,
            leave_running: false,
            network_lock: NetworkLock::default(),
            external: Vec::new(),
            link_remap: false,
            tcp_close: false,
        }
    }
}

/// How the network is locked while TCP connections are between dump and restore
/// (`--network-lock`). (API 0.7)
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NetworkLock {
    /// eBPF programs loaded by criu itself (no external tool): the default.
    #[default]
    Ebpf,
    /// CRIU's way: rules loaded with the `iptables-restore` binary.
    Iptables,
    /// CRIU's way: a table loaded with the `nft` binary.
    Nftables,
    /// No lock: the caller keeps the network quiet itself.
    Skip,
}

impl NetworkLock {
    /// Every method, in CRIU's order of the option's help.
    pub const ALL: [NetworkLock; 4] = [
        NetworkLock::Ebpf,
        NetworkLock::Iptables,
        NetworkLock::Nftables,
        NetworkLock::Skip,
    ];

    /// The option's value naming this method (`"ebpf"`).
    pub const fn name(self) -> &'static str {
        match self {
            NetworkLock::Ebpf => "ebpf",
            NetworkLock::Iptables => "iptables",
            NetworkLock::Nftables => "nftables",
            NetworkLock::Skip => "skip",
        }
    }

    /// The method an option's value names.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }
}

impl std::fmt::Display for NetworkLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Restore-time options a plugin may consult. `#[non_exhaustive]`: build with `default()`
/// and set fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RestoreOptions {
    /// Skip the "file changed since the dump" checks (size, mode). Off by default.
    pub skip_file_checks: bool,
    /// `--shell-job`: the tree joins the restorer's session; a terminal of the session the
    /// tree was dumped in becomes the restorer's own terminal.
    pub shell_job: bool,
    /// `--secret-key FILE`: the key file that decrypts images a dump encrypted with it
    /// (API 0.6).
    pub secret_key: Option<std::path::PathBuf>,
    /// `--tcp-established`: established TCP connections in the images are restored (CRIU
    /// asks for the option at restore too). (API 0.7)
    pub tcp_established: bool,
    /// `--tcp-close`: established TCP connections are restored closed. (API 0.7)
    pub tcp_close: bool,
    /// `--file-locks`: file locks and leases in the images are restored. (API 0.7)
    pub file_locks: bool,
    /// `--ext-unix-sk`: unix sockets dumped as external are restored. (API 0.7)
    pub ext_unix_sk: bool,
    /// `--network-lock`: the method the dump locked the network with. (API 0.7)
    pub network_lock: NetworkLock,
    /// `--external` values, as given, in order. (API 0.7)
    pub external: Vec<String>,
}

/// Services of the core during a dump.
///
/// The core hands one context to every hook of one dump; it lives as long as the dump. Each
/// plugin sees it with its own state ([`DumpContext::plugin_state`]), which spans all tasks
/// and fds of the dump.
pub trait DumpContext {
    /// Appends one entry to an image: `entry` is the encoded protobuf message, `extra` raw
    /// bytes written right after it (pipe data, ghost file contents; may be empty). The
    /// image is created (mode 0600, with its header) on first use.
    fn write_entry(
        &mut self,
        image: ImageRef,
        entry: &[u8],
        extra: &[u8],
    ) -> Result<(), PluginError>;

    /// Writes a whole file owned by a plugin (its own format), `name` relative to the images
    /// directory, no `/` in it. Replaces an existing file of that name.
    fn write_plugin_file(&mut self, name: &str, data: &[u8]) -> Result<(), PluginError>;

    /// A fresh file id for an extra `files.img` entry the plugin writes itself (CRIU's FIFO
    /// writes a REG entry for its path under such an id), unique within the dump.
    fn new_file_id(&mut self) -> u32;

    /// A value remembered for this dump under `key` (set with [`DumpContext::set_memo`]).
    /// Keys start with the plugin name (`"pipes:data:1234"`).
    ///
    /// Deprecated since API 0.5: keep per-dump state in the plugin's own typed state
    /// ([`crate::Plugin::new_state`], `ctx.state::<T>()`). Still served for plugins built
    /// against 0.3 and 0.4.
    fn memo(&self, key: &str) -> Option<u64>;

    /// Remembers `value` under `key` for the rest of this dump. Deprecated since API 0.5,
    /// as [`DumpContext::memo`].
    fn set_memo(&mut self, key: &str, value: u64);

    /// The dump options.
    fn options(&self) -> &DumpOptions;

    /// Every task of the dumped tree with its threads, parents before children, once it is
    /// frozen ([`crate::DumpStage::AfterFreeze`] on); empty before. (API 0.3)
    fn tasks(&self) -> Vec<TaskIds> {
        Vec::new()
    }

    /// Reads `buf.len()` bytes at `addr` of frozen task `pid` (`process_vm_readv`: the pages
    /// must be readable by their protection; memfd_secret pages are not, use
    /// [`DumpContext::remote_syscall`]). [`PluginError::Unavailable`] before the freeze or
    /// for a pid outside the tree. (API 0.3)
    fn read_task_memory(&mut self, pid: i32, addr: u64, buf: &mut [u8]) -> Result<(), PluginError> {
        let _ = (pid, addr, buf);
        Err(unavailable("read_task_memory"))
    }

    /// Writes `data` at `addr` of frozen task `pid` (`process_vm_writev`: the pages must be
    /// writable). Undo it before the dump ends if the task is to keep running. (API 0.3)
    fn write_task_memory(&mut self, pid: i32, addr: u64, data: &[u8]) -> Result<(), PluginError> {
        let _ = (pid, addr, data);
        Err(unavailable("write_task_memory"))
    }

    /// Runs system call `nr(args)` in frozen thread `tid` (registers and signal mask put
    /// back afterwards) and returns its raw result: `-4095..=-1` is `-errno`. Pointer
    /// arguments refer to the task's memory. (API 0.3)
    fn remote_syscall(&mut self, tid: i32, nr: i64, args: [u64; 6]) -> Result<i64, PluginError> {
        let _ = (tid, nr, args);
        Err(unavailable("remote_syscall"))
    }

    /// A duplicate of fd `fd` of task `pid` (`pidfd_getfd`: the same open file description),
    /// e.g. an fd found inside a queued `SCM_RIGHTS` message after a remote `recvmsg`
    /// installed it. (API 0.3)
    fn dup_task_fd(&mut self, pid: i32, fd: i32) -> Result<OwnedFd, PluginError> {
        let _ = (pid, fd);
        Err(unavailable("dup_task_fd"))
    }

    /// The `files.img` id of fd `fd` of task `pid`. The core gives ids to every fd of a task
    /// before it dumps the first of them, so while an fd handler dumps fd N it can learn the
    /// ids of all other fds of the same task (an epoll's targets), and of every fd of tasks
    /// dumped earlier. `None`: no such fd, or that task's fds are not reached yet. (API 0.4)
    fn file_id_of(&self, pid: i32, fd: i32) -> Option<u32> {
        let _ = (pid, fd);
        None
    }

    /// Whether fd `fd` of frozen task `pid` is the very file registered in that task's epoll
    /// fd `epfd` as the `toff`-th registration under target number `tfd` (`kcmp`
    /// `KCMP_EPOLL_TFD`; `toff` counts registrations of the same number, in fdinfo order).
    /// `Ok(false)` when the task has no fd `fd` or it is another file (the target was
    /// closed, its number reused). (API 0.4)
    fn epoll_target_is(
        &mut self,
        pid: i32,
        epfd: i32,
        tfd: i32,
        toff: u32,
        fd: i32,
    ) -> Result<bool, PluginError> {
        let _ = (pid, epfd, tfd, toff, fd);
        Err(unavailable("epoll_target_is"))
    }

    /// Writes the contents of `file`, a shmem-backed file (a memfd), as CRIU stores shared
    /// memory: `pagemap-shmem-<shmid>.img` (offsets in the file) and its `pages-<n>.img`,
    /// data segments only (holes come back as zeros). `shmid` is the file's inode number,
    /// the key anonymous shared mappings of the same object use too: the contents are
    /// written once per `shmid` and dump, later calls do nothing. (API 0.4)
    fn dump_shmem(&mut self, shmid: u64, file: BorrowedFd<'_>) -> Result<(), PluginError> {
        let _ = (shmid, file);
        Err(unavailable("dump_shmem"))
    }

    /// The calling plugin's own state for this dump, created by its
    /// [`crate::Plugin::new_state`]; `None` when it has none. Use the typed
    /// `ctx.state::<T>()` (on `dyn DumpContext`). The core lends each plugin its own: no
    /// plugin sees another's. (API 0.5)
    fn plugin_state(&mut self) -> Option<&mut (dyn Any + Send)> {
        None
    }

    /// Dumps a file that no task holds as an fd but criu does: one found in flight, inside
    /// a queued `SCM_RIGHTS` message that the calling plugin received into criu with a peek
    /// (`file`, borrowed for the call; the core keeps its own duplicate for the rest of the
    /// dump). `owner_pid` is the task whose resource carries it (a socket's holder), named
    /// in messages and handed to the claiming handler as [`crate::FdDesc::pid`]. Returns
    /// the file's `files.img` id. (API 0.6)
    ///
    /// The core builds its [`crate::FdDesc`] from criu's own `/proc/self/fd` and `fdinfo`
    /// ([`crate::FdDesc::fd`] is [`crate::FdDesc::IN_FLIGHT`]) and asks the fd handlers
    /// which one claims it, exactly as for a task's fd; the same open file description
    /// reached twice (in flight twice, or also held by a task as an fd, before or after)
    /// gets one id and one entry (`kcmp(KCMP_FILE)`). The id is given at once; the
    /// claiming handler's [`crate::FdHandler::dump_file`] runs right after the calling
    /// plugin's current call returns, so it may call this in turn (a socket in flight with
    /// its own queue), and a socket that carries itself gets its own id back (no cycle).
    /// A chain of nested in-flight files deeper than [`MAX_IN_FLIGHT_DEPTH`] is refused.
    fn dump_file_in_flight(
        &mut self,
        owner_pid: i32,
        file: BorrowedFd<'_>,
    ) -> Result<u32, PluginError> {
        let _ = (owner_pid, file);
        Err(unavailable("dump_file_in_flight"))
    }
}

/// How deep files in flight may nest (a socket in flight carrying a socket in flight...)
/// before [`DumpContext::dump_file_in_flight`] refuses: well above the kernel's own limit on
/// sending unix sockets that carry sockets. (API 0.6)
pub const MAX_IN_FLIGHT_DEPTH: u32 = 16;

/// Services of the core during a restore.
///
/// Hooks run in the restorer, in the process that will become a restored task (or in an
/// ancestor that opens files its children inherit). The context's memory, kept fds
/// included, is inherited by children forked afterwards.
pub trait RestoreContext {
    /// The body of an image (everything after its magic numbers), `None` when the file does
    /// not exist. Walk it with [`crate::ImageCursor`].
    fn read_image(&mut self, image: ImageRef) -> Result<Option<Vec<u8>>, PluginError>;

    /// A whole plugin-owned file written by [`DumpContext::write_plugin_file`], `None` when
    /// absent.
    fn read_plugin_file(&mut self, name: &str) -> Result<Option<Vec<u8>>, PluginError>;

    /// The pid of the task whose files are being opened (its pid in the images).
    fn current_pid(&self) -> i32;

    /// The pid a dumped task got on restore (`None` when not part of the restored tree).
    /// With `clone3(set_tid)` it usually equals `old`.
    fn restored_pid(&self, old: i32) -> Option<i32>;

    /// The pid in criu's own pid namespace of restored task or thread `image_pid`: the one
    /// to name it by when criu itself talks to the kernel about it (`pidfd_open`, the pid of
    /// an `SCM_CREDENTIALS` message criu sends, `/proc/PID`). It differs from the image pid
    /// when the tree's root was restored into a pid namespace of its own; every other
    /// method of this context takes image pids. Known once every task exists
    /// ([`crate::RestoreStage::AfterTasksExist`] on: its hooks, task and VMA handlers,
    /// [`crate::FileRestorer::finish`], and files opened then through
    /// [`RestoreContext::open_file_by_id`]); `None` before, and for a pid outside the
    /// restored tree. (API 0.8)
    fn host_pid(&self, image_pid: i32) -> Option<i32> {
        let _ = image_pid;
        None
    }

    /// Keeps `fd` under `key` for later calls (and for children forked later): e.g. the
    /// other end of a pipe. The core moves it to an fd number out of the way of the numbers
    /// it installs restored fds at, and closes it when the task's fd table is final.
    fn keep_fd(&mut self, key: &str, fd: OwnedFd) -> Result<(), PluginError>;

    /// An fd kept with [`RestoreContext::keep_fd`].
    fn kept_fd(&self, key: &str) -> Option<BorrowedFd<'_>>;

    /// The restore options.
    fn options(&self) -> &RestoreOptions;

    /// Every task of the restored tree with its threads (restored pids and tids, parents
    /// before children), as the images list them. (API 0.3)
    fn tasks(&self) -> Vec<TaskIds> {
        Vec::new()
    }

    /// Reads memory of restored task `pid` (`process_vm_readv`). Available while the tasks
    /// are under the restorer's control ([`crate::RestoreStage::AfterTasksExist`],
    /// [`crate::RestoreStage::BeforeResume`], VMA restore calls); else
    /// [`PluginError::Unavailable`]. (API 0.3)
    fn read_task_memory(&mut self, pid: i32, addr: u64, buf: &mut [u8]) -> Result<(), PluginError> {
        let _ = (pid, addr, buf);
        Err(unavailable("read_task_memory"))
    }

    /// Writes memory of restored task `pid` (`process_vm_writev`: the pages must be
    /// writable). Same availability as [`RestoreContext::read_task_memory`]. (API 0.3)
    fn write_task_memory(&mut self, pid: i32, addr: u64, data: &[u8]) -> Result<(), PluginError> {
        let _ = (pid, addr, data);
        Err(unavailable("write_task_memory"))
    }

    /// Runs system call `nr(args)` in restored thread `tid`, still stopped under the
    /// restorer (registers and signal mask put back afterwards); returns the raw result
    /// (`-4095..=-1` is `-errno`). (API 0.3)
    fn remote_syscall(&mut self, tid: i32, nr: i64, args: [u64; 6]) -> Result<i64, PluginError> {
        let _ = (tid, nr, args);
        Err(unavailable("remote_syscall"))
    }

    /// A duplicate of fd `fd` of restored task `pid` (`pidfd_getfd`). (API 0.3)
    fn dup_task_fd(&mut self, pid: i32, fd: i32) -> Result<OwnedFd, PluginError> {
        let _ = (pid, fd);
        Err(unavailable("dup_task_fd"))
    }

    /// Installs a duplicate of `fd` (an fd of the restorer) into restored task `pid` at fd
    /// number `target` (replacing what is there), close-on-exec when `cloexec`. (API 0.3)
    fn install_fd(
        &mut self,
        pid: i32,
        fd: BorrowedFd<'_>,
        target: i32,
        cloexec: bool,
    ) -> Result<(), PluginError> {
        let _ = (pid, fd, target, cloexec);
        Err(unavailable("install_fd"))
    }

    /// The fds task `pid` (its restored pid) gets, as the images list them, by fd number.
    /// [`PluginError::Unavailable`] for a pid outside the tree. (API 0.4)
    fn task_fds(&self, pid: i32) -> Result<Vec<TaskFd>, PluginError> {
        let _ = pid;
        Err(unavailable("task_fds"))
    }

    /// Writes the pages [`DumpContext::dump_shmem`] stored under `shmid` into `file` at
    /// their offsets; `size` is the object's size (pages beyond it are a corrupt image).
    /// Nothing to write (no `pagemap-shmem-<shmid>.img`: all holes) is not an error. The
    /// file is not resized. (API 0.4)
    fn restore_shmem(
        &mut self,
        shmid: u64,
        size: u64,
        file: BorrowedFd<'_>,
    ) -> Result<(), PluginError> {
        let _ = (shmid, size, file);
        Err(unavailable("restore_shmem"))
    }

    /// The calling plugin's own state for this restore, created by its
    /// [`crate::Plugin::new_state`]; `None` when it has none. Use the typed
    /// `ctx.state::<T>()` (on `dyn RestoreContext`). It is the same object in every call of
    /// the plugin during the restore: stage hooks, VMA and task handlers, and its
    /// [`crate::FileRestorer`]. (API 0.5)
    fn plugin_state(&mut self) -> Option<&mut (dyn Any + Send)> {
        None
    }

    /// A duplicate of the restored open file description of `files.img` entry `id`, for
    /// sending it with `SCM_RIGHTS` (a file in flight) or any other use by the calling
    /// restorer. The description is the one every task holding that id gets: opened once
    /// per restore through the same path the core uses for tasks' fds (the restoring
    /// plugin's [`crate::FileRestorer::open_file`]), now if nothing opened it yet, so an
    /// entry that only travels in flight (no task holds it) is opened here. (API 0.6)
    ///
    /// Offered to [`crate::FileRestorer::open_file`] and [`crate::FileRestorer::finish`]
    /// (elsewhere [`PluginError::Unavailable`]). An entry restored by the calling plugin
    /// itself cannot be opened through the core while that plugin's restorer is running
    /// ([`PluginError::Unavailable`] naming the id): open it in the plugin's own code, as it
    /// does a socketpair's other end. An id missing from `files.img` is
    /// [`PluginError::BadImage`].
    fn open_file_by_id(&mut self, id: u32) -> Result<OwnedFd, PluginError> {
        let _ = id;
        Err(unavailable("open_file_by_id"))
    }

    /// A file of the anonymous shared memory object `shmid` (`MAP_SHARED|MAP_ANONYMOUS`
    /// memory, `/dev/zero (deleted)` in `/proc/PID/maps`), as the core restores it: created
    /// once per restore with at least `size` bytes and filled from
    /// `pagemap-shmem-<shmid>.img`; the tree's anonymous shared mappings of `shmid` map
    /// that very object. For a plugin that restores something else made of the same object
    /// (the memfd plugin: an fd opened on `/proc/PID/map_files`, a private mapping of it),
    /// so that it stays one object with the shared mappings. Offered to
    /// [`crate::FileRestorer::open_file`] (elsewhere [`PluginError::Unavailable`]).
    /// (API 0.8)
    fn anon_shmem(&mut self, shmid: u64, size: u64) -> Result<OwnedFd, PluginError> {
        let _ = (shmid, size);
        Err(unavailable("anon_shmem"))
    }
}
