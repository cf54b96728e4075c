//! The core's services and a plugin's restore state as `#[sabi_trait]` objects, with the
//! adapters on both sides: the host wraps its `&mut dyn DumpContext` into a
//! [`FfiDumpContext`]; the plugin wraps that back into a `&mut dyn DumpContext`.

use std::any::Any;
use std::os::fd::{BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

use abi_stable::sabi_trait;
use abi_stable::std_types::{
    RErr, RNone, ROk, ROption, RResult, RSlice, RSliceMut, RStr, RString, RVec,
};

use super::options_text;
use super::types::{FfiError, FfiImageRef, FfiInstalledFd, FfiSyscallArgs, FfiTaskFd, FfiTaskIds};
use super::{DumpCtx, FfiStateBox, RestoreCtx};
use crate::{
    DumpContext, DumpOptions, FileRestorer, ImageRef, InstalledFd, PluginError, PluginState,
    RestoreContext, RestoreOptions, TaskFd, TaskIds,
};

/// [`DumpContext`] across the boundary (implemented by the host).
#[sabi_trait]
pub trait FfiDumpContext {
    /// [`DumpContext::write_entry`].
    fn write_entry(
        &mut self,
        image: FfiImageRef,
        entry: RSlice<'_, u8>,
        extra: RSlice<'_, u8>,
    ) -> RResult<(), FfiError>;
    /// [`DumpContext::write_plugin_file`].
    fn write_plugin_file(&mut self, name: RStr<'_>, data: RSlice<'_, u8>) -> RResult<(), FfiError>;
    /// [`DumpContext::new_file_id`].
    fn new_file_id(&mut self) -> u32;
    /// [`DumpContext::memo`].
    fn memo(&self, key: RStr<'_>) -> ROption<u64>;
    /// [`DumpContext::set_memo`].
    fn set_memo(&mut self, key: RStr<'_>, value: u64);
    /// [`DumpOptions::ghost_limit`].
    #[sabi(last_prefix_field)]
    fn ghost_limit(&self) -> u64;
    /// [`DumpOptions::shell_job`] (API 0.2).
    fn dump_shell_job(&self) -> bool;
    /// [`DumpContext::tasks`] (API 0.3).
    fn dump_tasks(&self) -> RVec<FfiTaskIds>;
    /// [`DumpContext::read_task_memory`] (API 0.3).
    fn dump_read_memory(
        &mut self,
        pid: i32,
        addr: u64,
        buf: RSliceMut<'_, u8>,
    ) -> RResult<(), FfiError>;
    /// [`DumpContext::write_task_memory`] (API 0.3).
    fn dump_write_memory(
        &mut self,
        pid: i32,
        addr: u64,
        data: RSlice<'_, u8>,
    ) -> RResult<(), FfiError>;
    /// [`DumpContext::remote_syscall`] (API 0.3).
    fn dump_remote_syscall(
        &mut self,
        tid: i32,
        nr: i64,
        args: FfiSyscallArgs,
    ) -> RResult<i64, FfiError>;
    /// [`DumpContext::dup_task_fd`] (API 0.3): the returned fd is owned by the caller.
    fn dump_dup_task_fd(&mut self, pid: i32, fd: i32) -> RResult<i32, FfiError>;
    /// [`DumpContext::file_id_of`] (API 0.4).
    fn dump_file_id_of(&self, pid: i32, fd: i32) -> ROption<u32>;
    /// [`DumpContext::epoll_target_is`] (API 0.4).
    fn dump_epoll_target_is(
        &mut self,
        pid: i32,
        epfd: i32,
        tfd: i32,
        toff: u32,
        fd: i32,
    ) -> RResult<bool, FfiError>;
    /// [`DumpContext::dump_shmem`] (API 0.4): `fd` is borrowed for the call.
    fn dump_shmem(&mut self, shmid: u64, fd: i32) -> RResult<(), FfiError>;
    /// [`DumpContext::plugin_state`] (API 0.5): the handle the plugin's own `new_state`
    /// entry created, lent for the call.
    fn dump_plugin_state(&mut self) -> ROption<&mut FfiStateBox> {
        RNone
    }
    /// [`DumpOptions::secret_key`] (API 0.6). An older host has none: no key.
    fn dump_secret_key(&self) -> ROption<RString> {
        RNone
    }
    /// [`DumpContext::dump_file_in_flight`] (API 0.6): `fd` is borrowed for the call.
    /// Absent in an older criu: this default answers that the service is unavailable.
    fn dump_file_in_flight(&mut self, owner_pid: i32, fd: i32) -> RResult<u32, FfiError> {
        let _ = (owner_pid, fd);
        RErr(FfiError::from(&older_criu("dump_file_in_flight")))
    }
    /// A [`DumpOptions`] field added after API 0.6, by name, as text ([`options_text`]).
    /// An older host has none: the field keeps its default.
    fn dump_option(&self, name: RStr<'_>) -> ROption<RString> {
        let _ = name;
        RNone
    }
}

/// [`RestoreContext`] across the boundary (implemented by the host).
#[sabi_trait]
pub trait FfiRestoreContext {
    /// [`RestoreContext::read_image`].
    fn read_image(&mut self, image: FfiImageRef) -> RResult<ROption<RVec<u8>>, FfiError>;
    /// [`RestoreContext::read_plugin_file`].
    fn read_plugin_file(&mut self, name: RStr<'_>) -> RResult<ROption<RVec<u8>>, FfiError>;
    /// [`RestoreContext::current_pid`].
    fn current_pid(&self) -> i32;
    /// [`RestoreContext::restored_pid`].
    fn restored_pid(&self, old: i32) -> ROption<i32>;
    /// [`RestoreContext::keep_fd`]: `fd` is owned by the callee from now on, also on error.
    fn keep_fd(&mut self, key: RStr<'_>, fd: i32) -> RResult<(), FfiError>;
    /// [`RestoreContext::kept_fd`]: borrowed, valid while the context lives.
    fn kept_fd(&self, key: RStr<'_>) -> ROption<i32>;
    /// [`RestoreOptions::skip_file_checks`].
    #[sabi(last_prefix_field)]
    fn skip_file_checks(&self) -> bool;
    /// [`RestoreOptions::shell_job`] (API 0.2).
    fn restore_shell_job(&self) -> bool;
    /// [`RestoreContext::tasks`] (API 0.3).
    fn restore_tasks(&self) -> RVec<FfiTaskIds>;
    /// [`RestoreContext::read_task_memory`] (API 0.3).
    fn restore_read_memory(
        &mut self,
        pid: i32,
        addr: u64,
        buf: RSliceMut<'_, u8>,
    ) -> RResult<(), FfiError>;
    /// [`RestoreContext::write_task_memory`] (API 0.3).
    fn restore_write_memory(
        &mut self,
        pid: i32,
        addr: u64,
        data: RSlice<'_, u8>,
    ) -> RResult<(), FfiError>;
    /// [`RestoreContext::remote_syscall`] (API 0.3).
    fn restore_remote_syscall(
        &mut self,
        tid: i32,
        nr: i64,
        args: FfiSyscallArgs,
    ) -> RResult<i64, FfiError>;
    /// [`RestoreContext::dup_task_fd`] (API 0.3): the returned fd is owned by the caller.
    fn restore_dup_task_fd(&mut self, pid: i32, fd: i32) -> RResult<i32, FfiError>;
    /// [`RestoreContext::install_fd`] (API 0.3): `fd` is borrowed for the call.
    fn restore_install_fd(
        &mut self,
        pid: i32,
        fd: i32,
        target: i32,
        cloexec: bool,
    ) -> RResult<(), FfiError>;
    /// [`RestoreContext::task_fds`] (API 0.4).
    fn restore_task_fds(&self, pid: i32) -> RResult<RVec<FfiTaskFd>, FfiError>;
    /// [`RestoreContext::restore_shmem`] (API 0.4): `fd` is borrowed for the call.
    fn restore_shmem(&mut self, shmid: u64, size: u64, fd: i32) -> RResult<(), FfiError>;
    /// [`RestoreContext::plugin_state`] (API 0.5): the handle the plugin's own `new_state`
    /// entry created, lent for the call.
    fn restore_plugin_state(&mut self) -> ROption<&mut FfiStateBox> {
        RNone
    }
    /// [`RestoreOptions::secret_key`] (API 0.6). An older host has none: no key.
    fn restore_secret_key(&self) -> ROption<RString> {
        RNone
    }
    /// [`RestoreContext::open_file_by_id`] (API 0.6): the returned fd is owned by the
    /// caller. Absent in an older criu: this default answers that the service is
    /// unavailable.
    fn restore_open_file_by_id(&mut self, id: u32) -> RResult<i32, FfiError> {
        let _ = id;
        RErr(FfiError::from(&older_criu("open_file_by_id")))
    }
    /// A [`RestoreOptions`] field added after API 0.6, by name, as text
    /// ([`options_text`]). An older host has none: the field keeps its default.
    fn restore_option(&self, name: RStr<'_>) -> ROption<RString> {
        let _ = name;
        RNone
    }
    /// [`RestoreContext::host_pid`] (API 0.8). An older criu has none: no pid known.
    fn restore_host_pid(&self, image_pid: i32) -> ROption<i32> {
        let _ = image_pid;
        RNone
    }
    /// [`RestoreContext::anon_shmem`] (API 0.8): the returned fd is owned by the caller.
    /// Absent in an older criu: this default answers that the service is unavailable.
    fn restore_anon_shmem(&mut self, shmid: u64, size: u64) -> RResult<i32, FfiError> {
        let _ = (shmid, size);
        RErr(FfiError::from(&older_criu("anon_shmem")))
    }
}

/// The answer of a service this criu's context does not have (it predates it).
fn older_criu(service: &'static str) -> PluginError {
    PluginError::Unavailable {
        service,
        why: "this criu is older than the plugin (upgrade criu)".into(),
    }
}

/// [`FileRestorer`] across the boundary (implemented by the plugin, owned by the host).
#[sabi_trait]
pub trait FfiRestorer: Send {
    /// [`FileRestorer::open_file`]: the entry encoded; the returned fd is owned by the caller.
    #[sabi(last_prefix_field)]
    fn open_file(&mut self, ctx: RestoreCtx<'_>, entry: RSlice<'_, u8>) -> RResult<i32, FfiError>;
    /// [`FileRestorer::finish`] (API 0.5). Absent in the restorer of an older plugin: this
    /// default (nothing to do) runs instead.
    fn finish(
        &mut self,
        ctx: RestoreCtx<'_>,
        installed: RSlice<'_, FfiInstalledFd>,
    ) -> RResult<(), FfiError> {
        let _ = (ctx, installed);
        ROk(())
    }
}

/// A plugin's [`PluginState`] across the boundary (API 0.5): created and dropped by the
/// plugin's own code, held by the host as an opaque handle and lent back to the plugin only
/// (the plugin checks the type when it looks inside).
#[sabi_trait]
pub trait FfiState: Send {
    /// The name of the plugin that created it (for messages).
    #[sabi(last_prefix_field)]
    fn plugin(&self) -> RStr<'_>;
}

fn to_ffi<T>(r: Result<T, PluginError>) -> RResult<T, FfiError> {
    match r {
        Ok(v) => ROk(v),
        Err(e) => RErr(FfiError::from(&e)),
    }
}

// ----- host side: the core's contexts offered to a plugin -----

/// The host's dump context seen through the FFI trait.
pub(crate) struct HostDump<'a>(pub &'a mut dyn DumpContext);

impl FfiDumpContext for HostDump<'_> {
    fn write_entry(
        &mut self,
        image: FfiImageRef,
        entry: RSlice<'_, u8>,
        extra: RSlice<'_, u8>,
    ) -> RResult<(), FfiError> {
        to_ffi(
            image
                .to_image_ref()
                .and_then(|r| self.0.write_entry(r, &entry, &extra)),
        )
    }
    fn write_plugin_file(&mut self, name: RStr<'_>, data: RSlice<'_, u8>) -> RResult<(), FfiError> {
        to_ffi(self.0.write_plugin_file(name.as_str(), &data))
    }
    fn new_file_id(&mut self) -> u32 {
        self.0.new_file_id()
    }
    fn memo(&self, key: RStr<'_>) -> ROption<u64> {
        self.0.memo(key.as_str()).into()
    }
    fn set_memo(&mut self, key: RStr<'_>, value: u64) {
        self.0.set_memo(key.as_str(), value)
    }
    fn ghost_limit(&self) -> u64 {
        self.0.options().ghost_limit
    }
    fn dump_shell_job(&self) -> bool {
        self.0.options().shell_job
    }
    fn dump_tasks(&self) -> RVec<FfiTaskIds> {
        self.0.tasks().iter().map(FfiTaskIds::from).collect()
    }
    fn dump_read_memory(
        &mut self,
        pid: i32,
        addr: u64,
        mut buf: RSliceMut<'_, u8>,
    ) -> RResult<(), FfiError> {
        to_ffi(self.0.read_task_memory(pid, addr, &mut buf))
    }
    fn dump_write_memory(
        &mut self,
        pid: i32,
        addr: u64,
        data: RSlice<'_, u8>,
    ) -> RResult<(), FfiError> {
        to_ffi(self.0.write_task_memory(pid, addr, &data))
    }
    fn dump_remote_syscall(
        &mut self,
        tid: i32,
        nr: i64,
        args: FfiSyscallArgs,
    ) -> RResult<i64, FfiError> {
        to_ffi(self.0.remote_syscall(tid, nr, args.args))
    }
    fn dump_dup_task_fd(&mut self, pid: i32, fd: i32) -> RResult<i32, FfiError> {
        to_ffi(self.0.dup_task_fd(pid, fd).map(IntoRawFd::into_raw_fd))
    }
    fn dump_file_id_of(&self, pid: i32, fd: i32) -> ROption<u32> {
        self.0.file_id_of(pid, fd).into()
    }
    fn dump_epoll_target_is(
        &mut self,
        pid: i32,
        epfd: i32,
        tfd: i32,
        toff: u32,
        fd: i32,
    ) -> RResult<bool, FfiError> {
        to_ffi(self.0.epoll_target_is(pid, epfd, tfd, toff, fd))
    }

    fn dump_shmem(&mut self, shmid: u64, fd: i32) -> RResult<(), FfiError> {
        to_ffi(self.0.dump_shmem(shmid, borrow_fd(fd)))
    }
    fn dump_plugin_state(&mut self) -> ROption<&mut FfiStateBox> {
        host_handle(self.0.plugin_state()).into()
    }
    fn dump_secret_key(&self) -> ROption<RString> {
        key_path(self.0.options().secret_key.as_deref())
    }
    fn dump_file_in_flight(&mut self, owner_pid: i32, fd: i32) -> RResult<u32, FfiError> {
        to_ffi(self.0.dump_file_in_flight(owner_pid, borrow_fd(fd)))
    }
    fn dump_option(&self, name: RStr<'_>) -> ROption<RString> {
        options_text::dump(self.0.options(), name.as_str())
            .map(RString::from)
            .into()
    }
}

/// The handle inside a loaded plugin's state as the host keeps it.
fn host_handle(state: Option<&mut (dyn Any + Send)>) -> Option<&mut FfiStateBox> {
    state?.downcast_mut::<HostState>().map(|h| &mut h.0)
}

/// How the host keeps a loaded plugin's state: the plugin's handle in a [`PluginState`]
/// box. Dropping it runs the plugin's own drop.
pub(crate) struct HostState(pub FfiStateBox);

/// The host's restore context seen through the FFI trait.
pub(crate) struct HostRestore<'a>(pub &'a mut dyn RestoreContext);

impl FfiRestoreContext for HostRestore<'_> {
    fn read_image(&mut self, image: FfiImageRef) -> RResult<ROption<RVec<u8>>, FfiError> {
        to_ffi(
            image
                .to_image_ref()
                .and_then(|r| self.0.read_image(r))
                .map(|o| o.map(RVec::from).into()),
        )
    }
    fn read_plugin_file(&mut self, name: RStr<'_>) -> RResult<ROption<RVec<u8>>, FfiError> {
        to_ffi(
            self.0
                .read_plugin_file(name.as_str())
                .map(|o| o.map(RVec::from).into()),
        )
    }
    fn current_pid(&self) -> i32 {
        self.0.current_pid()
    }
    fn restored_pid(&self, old: i32) -> ROption<i32> {
        self.0.restored_pid(old).into()
    }
    fn keep_fd(&mut self, key: RStr<'_>, fd: i32) -> RResult<(), FfiError> {
        to_ffi(self.0.keep_fd(key.as_str(), take_fd(fd)))
    }
    fn kept_fd(&self, key: RStr<'_>) -> ROption<i32> {
        use std::os::fd::AsRawFd;
        self.0.kept_fd(key.as_str()).map(|fd| fd.as_raw_fd()).into()
    }
    fn skip_file_checks(&self) -> bool {
        self.0.options().skip_file_checks
    }
    fn restore_shell_job(&self) -> bool {
        self.0.options().shell_job
    }
    fn restore_tasks(&self) -> RVec<FfiTaskIds> {
        self.0.tasks().iter().map(FfiTaskIds::from).collect()
    }
    fn restore_read_memory(
        &mut self,
        pid: i32,
        addr: u64,
        mut buf: RSliceMut<'_, u8>,
    ) -> RResult<(), FfiError> {
        to_ffi(self.0.read_task_memory(pid, addr, &mut buf))
    }
    fn restore_write_memory(
        &mut self,
        pid: i32,
        addr: u64,
        data: RSlice<'_, u8>,
    ) -> RResult<(), FfiError> {
        to_ffi(self.0.write_task_memory(pid, addr, &data))
    }
    fn restore_remote_syscall(
        &mut self,
        tid: i32,
        nr: i64,
        args: FfiSyscallArgs,
    ) -> RResult<i64, FfiError> {
        to_ffi(self.0.remote_syscall(tid, nr, args.args))
    }
    fn restore_dup_task_fd(&mut self, pid: i32, fd: i32) -> RResult<i32, FfiError> {
        to_ffi(self.0.dup_task_fd(pid, fd).map(IntoRawFd::into_raw_fd))
    }
    fn restore_install_fd(
        &mut self,
        pid: i32,
        fd: i32,
        target: i32,
        cloexec: bool,
    ) -> RResult<(), FfiError> {
        to_ffi(self.0.install_fd(pid, borrow_fd(fd), target, cloexec))
    }
    fn restore_task_fds(&self, pid: i32) -> RResult<RVec<FfiTaskFd>, FfiError> {
        to_ffi(
            self.0
                .task_fds(pid)
                .map(|fds| fds.iter().map(FfiTaskFd::from).collect()),
        )
    }

    fn restore_shmem(&mut self, shmid: u64, size: u64, fd: i32) -> RResult<(), FfiError> {
        to_ffi(self.0.restore_shmem(shmid, size, borrow_fd(fd)))
    }
    fn restore_plugin_state(&mut self) -> ROption<&mut FfiStateBox> {
        host_handle(self.0.plugin_state()).into()
    }
    fn restore_open_file_by_id(&mut self, id: u32) -> RResult<i32, FfiError> {
        to_ffi(self.0.open_file_by_id(id).map(IntoRawFd::into_raw_fd))
    }
    fn restore_secret_key(&self) -> ROption<RString> {
        key_path(self.0.options().secret_key.as_deref())
    }
    fn restore_option(&self, name: RStr<'_>) -> ROption<RString> {
        options_text::restore(self.0.options(), name.as_str())
            .map(RString::from)
            .into()
    }
    fn restore_host_pid(&self, image_pid: i32) -> ROption<i32> {
        self.0.host_pid(image_pid).into()
    }
    fn restore_anon_shmem(&mut self, shmid: u64, size: u64) -> RResult<i32, FfiError> {
        to_ffi(self.0.anon_shmem(shmid, size).map(IntoRawFd::into_raw_fd))
    }
}

/// A key file's path across the boundary (criu's command line gives UTF-8 paths).
fn key_path(p: Option<&std::path::Path>) -> ROption<RString> {
    p.map(|p| RString::from(p.to_string_lossy().into_owned()))
        .into()
}

// ----- plugin side: the FFI objects seen as the Rust traits -----

/// An FFI dump context as a [`DumpContext`].
pub(crate) struct GuestDump<'a> {
    pub ctx: DumpCtx<'a>,
    pub options: DumpOptions,
}

impl<'a> GuestDump<'a> {
    pub fn new(ctx: DumpCtx<'a>) -> Self {
        let options = DumpOptions {
            ghost_limit: ctx.ghost_limit(),
            shell_job: ctx.dump_shell_job(),
            secret_key: ctx
                .dump_secret_key()
                .into_option()
                .map(|p| p.as_str().into()),
            ..DumpOptions::default()
        };
        let mut options = options;
        options_text::fill_dump(&mut options, |name| {
            ctx.dump_option(RStr::from(name))
                .into_option()
                .map(String::from)
        });
        GuestDump { ctx, options }
    }
}

fn from_ffi<T>(r: RResult<T, FfiError>) -> Result<T, PluginError> {
    r.into_result().map_err(|e| e.into_plugin_error("criu"))
}

impl DumpContext for GuestDump<'_> {
    fn write_entry(
        &mut self,
        image: ImageRef,
        entry: &[u8],
        extra: &[u8],
    ) -> Result<(), PluginError> {
        from_ffi(
            self.ctx
                .write_entry(image.into(), entry.into(), extra.into()),
        )
    }
    fn write_plugin_file(&mut self, name: &str, data: &[u8]) -> Result<(), PluginError> {
        from_ffi(self.ctx.write_plugin_file(name.into(), data.into()))
    }
    fn new_file_id(&mut self) -> u32 {
        self.ctx.new_file_id()
    }
    fn memo(&self, key: &str) -> Option<u64> {
        self.ctx.memo(key.into()).into_option()
    }
    fn set_memo(&mut self, key: &str, value: u64) {
        self.ctx.set_memo(key.into(), value)
    }
    fn options(&self) -> &DumpOptions {
        &self.options
    }
    fn tasks(&self) -> Vec<TaskIds> {
        self.ctx.dump_tasks().iter().map(TaskIds::from).collect()
    }
    fn read_task_memory(&mut self, pid: i32, addr: u64, buf: &mut [u8]) -> Result<(), PluginError> {
        from_ffi(self.ctx.dump_read_memory(pid, addr, buf.into()))
    }
    fn write_task_memory(&mut self, pid: i32, addr: u64, data: &[u8]) -> Result<(), PluginError> {
        from_ffi(self.ctx.dump_write_memory(pid, addr, data.into()))
    }
    fn remote_syscall(&mut self, tid: i32, nr: i64, args: [u64; 6]) -> Result<i64, PluginError> {
        from_ffi(
            self.ctx
                .dump_remote_syscall(tid, nr, FfiSyscallArgs { args }),
        )
    }
    fn dup_task_fd(&mut self, pid: i32, fd: i32) -> Result<OwnedFd, PluginError> {
        from_ffi(self.ctx.dump_dup_task_fd(pid, fd)).map(take_fd)
    }
    fn file_id_of(&self, pid: i32, fd: i32) -> Option<u32> {
        self.ctx.dump_file_id_of(pid, fd).into_option()
    }
    fn epoll_target_is(
        &mut self,
        pid: i32,
        epfd: i32,
        tfd: i32,
        toff: u32,
        fd: i32,
    ) -> Result<bool, PluginError> {
        from_ffi(self.ctx.dump_epoll_target_is(pid, epfd, tfd, toff, fd))
    }

    fn dump_shmem(&mut self, shmid: u64, file: BorrowedFd<'_>) -> Result<(), PluginError> {
        use std::os::fd::AsRawFd;
        from_ffi(self.ctx.dump_shmem(shmid, file.as_raw_fd()))
    }

    fn plugin_state(&mut self) -> Option<&mut (dyn Any + Send)> {
        guest_state(self.ctx.dump_plugin_state().into_option()?)
    }

    fn dump_file_in_flight(
        &mut self,
        owner_pid: i32,
        file: BorrowedFd<'_>,
    ) -> Result<u32, PluginError> {
        use std::os::fd::AsRawFd;
        from_ffi(self.ctx.dump_file_in_flight(owner_pid, file.as_raw_fd()))
    }
}

/// The plugin's state inside a handle its own `new_state` entry made.
pub(crate) struct GuestState {
    pub plugin: &'static str,
    pub inner: PluginState,
}

impl FfiState for GuestState {
    fn plugin(&self) -> RStr<'_> {
        self.plugin.into()
    }
}

/// The state inside `handle`, if this plugin's code created it (a type check, not a cast).
fn guest_state(handle: &mut FfiStateBox) -> Option<&mut (dyn Any + Send)> {
    let g = handle.obj.downcast_as_mut::<GuestState>().ok()?;
    Some(g.inner.as_mut())
}

/// An FFI restore context as a [`RestoreContext`].
pub(crate) struct GuestRestore<'a> {
    pub ctx: RestoreCtx<'a>,
    pub options: RestoreOptions,
}

impl<'a> GuestRestore<'a> {
    pub fn new(ctx: RestoreCtx<'a>) -> Self {
        let options = RestoreOptions {
            skip_file_checks: ctx.skip_file_checks(),
            shell_job: ctx.restore_shell_job(),
            secret_key: ctx
                .restore_secret_key()
                .into_option()
                .map(|p| p.as_str().into()),
            ..RestoreOptions::default()
        };
        let mut options = options;
        options_text::fill_restore(&mut options, |name| {
            ctx.restore_option(RStr::from(name))
                .into_option()
                .map(String::from)
        });
        GuestRestore { ctx, options }
    }
}

impl RestoreContext for GuestRestore<'_> {
    fn read_image(&mut self, image: ImageRef) -> Result<Option<Vec<u8>>, PluginError> {
        from_ffi(self.ctx.read_image(image.into())).map(|o| o.into_option().map(Vec::from))
    }
    fn read_plugin_file(&mut self, name: &str) -> Result<Option<Vec<u8>>, PluginError> {
        from_ffi(self.ctx.read_plugin_file(name.into())).map(|o| o.into_option().map(Vec::from))
    }
    fn current_pid(&self) -> i32 {
        self.ctx.current_pid()
    }
    fn restored_pid(&self, old: i32) -> Option<i32> {
        self.ctx.restored_pid(old).into_option()
    }
    fn keep_fd(&mut self, key: &str, fd: OwnedFd) -> Result<(), PluginError> {
        from_ffi(self.ctx.keep_fd(key.into(), fd.into_raw_fd()))
    }
    fn kept_fd(&self, key: &str) -> Option<BorrowedFd<'_>> {
        let raw = self.ctx.kept_fd(key.into()).into_option()?;
        Some(borrow_fd(raw))
    }
    fn options(&self) -> &RestoreOptions {
        &self.options
    }
    fn tasks(&self) -> Vec<TaskIds> {
        self.ctx.restore_tasks().iter().map(TaskIds::from).collect()
    }
    fn read_task_memory(&mut self, pid: i32, addr: u64, buf: &mut [u8]) -> Result<(), PluginError> {
        from_ffi(self.ctx.restore_read_memory(pid, addr, buf.into()))
    }
    fn write_task_memory(&mut self, pid: i32, addr: u64, data: &[u8]) -> Result<(), PluginError> {
        from_ffi(self.ctx.restore_write_memory(pid, addr, data.into()))
    }
    fn remote_syscall(&mut self, tid: i32, nr: i64, args: [u64; 6]) -> Result<i64, PluginError> {
        from_ffi(
            self.ctx
                .restore_remote_syscall(tid, nr, FfiSyscallArgs { args }),
        )
    }
    fn dup_task_fd(&mut self, pid: i32, fd: i32) -> Result<OwnedFd, PluginError> {
        from_ffi(self.ctx.restore_dup_task_fd(pid, fd)).map(take_fd)
    }
    fn install_fd(
        &mut self,
        pid: i32,
        fd: BorrowedFd<'_>,
        target: i32,
        cloexec: bool,
    ) -> Result<(), PluginError> {
        use std::os::fd::AsRawFd;
        from_ffi(
            self.ctx
                .restore_install_fd(pid, fd.as_raw_fd(), target, cloexec),
        )
    }
    fn task_fds(&self, pid: i32) -> Result<Vec<TaskFd>, PluginError> {
        from_ffi(self.ctx.restore_task_fds(pid)).map(|v| v.iter().map(TaskFd::from).collect())
    }

    fn restore_shmem(
        &mut self,
        shmid: u64,
        size: u64,
        file: BorrowedFd<'_>,
    ) -> Result<(), PluginError> {
        use std::os::fd::AsRawFd;
        from_ffi(self.ctx.restore_shmem(shmid, size, file.as_raw_fd()))
    }

    fn plugin_state(&mut self) -> Option<&mut (dyn Any + Send)> {
        guest_state(self.ctx.restore_plugin_state().into_option()?)
    }

    fn open_file_by_id(&mut self, id: u32) -> Result<OwnedFd, PluginError> {
        from_ffi(self.ctx.restore_open_file_by_id(id)).map(take_fd)
    }

    fn host_pid(&self, image_pid: i32) -> Option<i32> {
        self.ctx.restore_host_pid(image_pid).into_option()
    }
    fn anon_shmem(&mut self, shmid: u64, size: u64) -> Result<OwnedFd, PluginError> {
        from_ffi(self.ctx.restore_anon_shmem(shmid, size)).map(take_fd)
    }
}

/// A plugin's [`FileRestorer`] as the FFI trait.
pub(crate) struct GuestRestorer {
    pub plugin: &'static str,
    pub inner: Box<dyn FileRestorer>,
}

impl FfiRestorer for GuestRestorer {
    fn open_file(&mut self, ctx: RestoreCtx<'_>, entry: RSlice<'_, u8>) -> RResult<i32, FfiError> {
        let inner = &mut self.inner;
        super::guest::guarded(self.plugin, move || {
            let entry = super::guest::decode_entry(&entry)?;
            let mut ctx = GuestRestore::new(ctx);
            inner
                .open_file(&mut ctx, &entry)
                .map(IntoRawFd::into_raw_fd)
        })
    }

    fn finish(
        &mut self,
        ctx: RestoreCtx<'_>,
        installed: RSlice<'_, FfiInstalledFd>,
    ) -> RResult<(), FfiError> {
        let inner = &mut self.inner;
        super::guest::guarded(self.plugin, move || {
            let installed: Vec<InstalledFd> = installed.iter().map(InstalledFd::from).collect();
            let mut ctx = GuestRestore::new(ctx);
            inner.finish(&mut ctx, &installed)
        })
    }
}

// ----- raw fds: the only place they become owned or borrowed -----

/// Takes ownership of an fd number handed over the boundary with ownership.
pub(crate) fn take_fd(raw: RawFd) -> OwnedFd {
    // SAFETY: the boundary contract (keep_fd, open_file, dup_task_fd, open_file_by_id, anon_shmem) transfers ownership of `raw`, an
    // open fd of this process, to the receiver; the sender gave it up with into_raw_fd.
    unsafe { OwnedFd::from_raw_fd(raw) }
}

/// Borrows an fd number the other side keeps open for at least `'a` (the call, or the
/// context's life for kept fds).
pub(crate) fn borrow_fd<'a>(raw: RawFd) -> BorrowedFd<'a> {
    // SAFETY: the boundary contract (FfiFdDesc::file, kept_fd, install_fd, the shmem calls,
    // dump_file_in_flight) guarantees `raw` stays open
    // while the borrow is in use: the call for a desc, the context's life for a kept fd.
    unsafe { BorrowedFd::borrow_raw(raw) }
}
