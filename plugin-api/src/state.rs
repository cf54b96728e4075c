//! A plugin's own state for one dump or one restore (API 0.5).
//!
//! A plugin is a `Sync` static and sees many calls per run: one per fd, per VMA, per task,
//! per stage. What it learns on the way (the pipes whose data it wrote, the peers of a
//! socket graph, the fds in flight) lives in a typed object of its own: the host asks
//! [`Plugin::new_state`] for it when the run starts, hands it back through the context to
//! every call of that plugin ([`DumpContext::plugin_state`], [`RestoreContext::plugin_state`],
//! typed with `ctx.state::<T>()`), and drops it when the run ends. No other plugin sees it.
//! Across the stable ABI the object stays inside the plugin's `.so` (the host holds an
//! opaque handle and calls the plugin's own drop).

use std::any::Any;
use std::os::fd::{BorrowedFd, OwnedFd};

use crate::{
    DumpContext, DumpOptions, ImageRef, Plugin, PluginError, RestoreContext, RestoreOptions,
    TaskFd, TaskIds, catch_hook_panic,
};

/// A plugin's state for one run: any type of the plugin's, boxed.
pub type PluginState = Box<dyn Any + Send>;

/// Which run a [`PluginState`] is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunKind {
    /// One `criu dump`: from before the freeze to the release of the tree.
    Dump,
    /// One `criu restore`: from the start of the plugins' restores (before
    /// [`crate::RestoreStage::BeforeRestore`]) to after the last stage hook.
    Restore,
}

impl RunKind {
    /// `"dump"` or `"restore"` (how it crosses the stable ABI).
    pub const fn name(self) -> &'static str {
        match self {
            RunKind::Dump => "dump",
            RunKind::Restore => "restore",
        }
    }

    /// The kind of a [`RunKind::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        [RunKind::Dump, RunKind::Restore]
            .into_iter()
            .find(|k| k.name() == name)
    }
}

fn no_state(why: String) -> PluginError {
    PluginError::Unavailable {
        service: "plugin state",
        why,
    }
}

impl dyn DumpContext + '_ {
    /// This plugin's state for the dump, as the `T` its [`Plugin::new_state`] created.
    /// [`PluginError::Unavailable`] when it created none or one of another type.
    pub fn state<T: Any>(&mut self) -> Result<&mut T, PluginError> {
        downcast(self.plugin_state())
    }
}

impl dyn RestoreContext + '_ {
    /// This plugin's state for the restore, as the `T` its [`Plugin::new_state`] created.
    /// [`PluginError::Unavailable`] when it created none or one of another type.
    pub fn state<T: Any>(&mut self) -> Result<&mut T, PluginError> {
        downcast(self.plugin_state())
    }
}

fn downcast<T: Any>(state: Option<&mut (dyn Any + Send)>) -> Result<&mut T, PluginError> {
    let want = std::any::type_name::<T>();
    let state = state.ok_or_else(|| {
        no_state(format!(
            "this plugin has no state in this run (its new_state returned none), wanted {want}"
        ))
    })?;
    state
        .downcast_mut::<T>()
        .ok_or_else(|| no_state(format!("this plugin's state is not a {want}")))
}

/// Every plugin's state for one run, kept by the host (criu-core) and lent to each plugin
/// call through [`PluginStates::dump_scope`] / [`PluginStates::restore_scope`]. Dropping it
/// drops every state.
#[derive(Default)]
pub struct PluginStates {
    states: Vec<(&'static str, Option<PluginState>)>,
}

impl std::fmt::Debug for PluginStates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(
                self.states
                    .iter()
                    .filter(|(_, s)| s.is_some())
                    .map(|(n, _)| n),
            )
            .finish()
    }
}

impl PluginStates {
    /// Creates every plugin's state for a run of `kind` ([`Plugin::new_state`], panics
    /// caught). The first failure is returned with the plugin's name.
    pub fn start(
        plugins: &[&dyn Plugin],
        kind: RunKind,
    ) -> Result<Self, (&'static str, PluginError)> {
        let mut states = Vec::with_capacity(plugins.len());
        for p in plugins {
            let name = p.info().name;
            let state = catch_hook_panic(name, || p.new_state(kind)).map_err(|e| (name, e))?;
            states.push((name, state));
        }
        Ok(PluginStates { states })
    }

    /// Whether `plugin` has a state in this run.
    pub fn has(&self, plugin: &str) -> bool {
        self.states.iter().any(|(n, s)| *n == plugin && s.is_some())
    }

    fn slot(&mut self, plugin: &str) -> Option<&mut (dyn Any + Send)> {
        let (_, s) = self.states.iter_mut().find(|(n, _)| *n == plugin)?;
        s.as_deref_mut()
    }

    /// Runs `f` with `ctx` as `plugin` sees it: its own state reachable through
    /// [`DumpContext::plugin_state`], every other service passed through.
    pub fn dump_scope<R>(
        &mut self,
        plugin: &str,
        ctx: &mut dyn DumpContext,
        f: impl FnOnce(&mut dyn DumpContext) -> R,
    ) -> R {
        let mut scoped = ScopedDump {
            inner: ctx,
            state: self.slot(plugin),
        };
        f(&mut scoped)
    }

    /// Runs `f` with `ctx` as `plugin` sees it: its own state reachable through
    /// [`RestoreContext::plugin_state`], every other service passed through.
    pub fn restore_scope<R>(
        &mut self,
        plugin: &str,
        ctx: &mut dyn RestoreContext,
        f: impl FnOnce(&mut dyn RestoreContext) -> R,
    ) -> R {
        restore_scope_with(self.slot(plugin), ctx, None, f)
    }

    /// Takes `plugin`'s state out of its slot (for a call that must leave the others
    /// reachable); put it back with [`PluginStates::put`].
    pub(crate) fn take(&mut self, plugin: &str) -> Option<PluginState> {
        let (_, s) = self.states.iter_mut().find(|(n, _)| *n == plugin)?;
        s.take()
    }

    /// Puts back a state taken with [`PluginStates::take`].
    pub(crate) fn put(&mut self, plugin: &str, state: Option<PluginState>) {
        if let Some((_, s)) = self.states.iter_mut().find(|(n, _)| *n == plugin) {
            *s = state;
        }
    }
}

/// Opens a `files.img` entry by id for [`RestoreContext::open_file_by_id`]: the
/// [`crate::FileRestore`] of the run, lent to the calls of its restorers.
pub(crate) trait OpenById {
    /// The description of entry `id`, opened once per restore.
    fn open_by_id(&mut self, ctx: &mut dyn RestoreContext, id: u32)
    -> Result<OwnedFd, PluginError>;
}

/// Runs `f` with `ctx` plus one plugin's `state` and, for a file restorer's call, the
/// `opener` serving [`RestoreContext::open_file_by_id`].
pub(crate) fn restore_scope_with<'a, R>(
    state: Option<&'a mut (dyn Any + Send)>,
    ctx: &'a mut dyn RestoreContext,
    opener: Option<&'a mut dyn OpenById>,
    f: impl FnOnce(&mut dyn RestoreContext) -> R,
) -> R {
    let mut scoped = ScopedRestore {
        inner: ctx,
        state,
        opener,
    };
    f(&mut scoped)
}

/// The host's dump context plus one plugin's state.
struct ScopedDump<'a> {
    inner: &'a mut dyn DumpContext,
    state: Option<&'a mut (dyn Any + Send)>,
}

impl DumpContext for ScopedDump<'_> {
    fn write_entry(
        &mut self,
        image: ImageRef,
        entry: &[u8],
        extra: &[u8],
    ) -> Result<(), PluginError> {
        self.inner.write_entry(image, entry, extra)
    }
    fn write_plugin_file(&mut self, name: &str, data: &[u8]) -> Result<(), PluginError> {
        self.inner.write_plugin_file(name, data)
    }
    fn new_file_id(&mut self) -> u32 {
        self.inner.new_file_id()
    }
    fn memo(&self, key: &str) -> Option<u64> {
        self.inner.memo(key)
    }
    fn set_memo(&mut self, key: &str, value: u64) {
        self.inner.set_memo(key, value)
    }
    fn options(&self) -> &DumpOptions {
        self.inner.options()
    }
    fn tasks(&self) -> Vec<TaskIds> {
        self.inner.tasks()
    }
    fn read_task_memory(&mut self, pid: i32, addr: u64, buf: &mut [u8]) -> Result<(), PluginError> {
        self.inner.read_task_memory(pid, addr, buf)
    }
    fn write_task_memory(&mut self, pid: i32, addr: u64, data: &[u8]) -> Result<(), PluginError> {
        self.inner.write_task_memory(pid, addr, data)
    }
    fn remote_syscall(&mut self, tid: i32, nr: i64, args: [u64; 6]) -> Result<i64, PluginError> {
        self.inner.remote_syscall(tid, nr, args)
    }
    fn dup_task_fd(&mut self, pid: i32, fd: i32) -> Result<OwnedFd, PluginError> {
        self.inner.dup_task_fd(pid, fd)
    }
    fn file_id_of(&self, pid: i32, fd: i32) -> Option<u32> {
        self.inner.file_id_of(pid, fd)
    }
    fn epoll_target_is(
        &mut self,
        pid: i32,
        epfd: i32,
        tfd: i32,
        toff: u32,
        fd: i32,
    ) -> Result<bool, PluginError> {
        self.inner.epoll_target_is(pid, epfd, tfd, toff, fd)
    }
    fn dump_shmem(&mut self, shmid: u64, file: BorrowedFd<'_>) -> Result<(), PluginError> {
        self.inner.dump_shmem(shmid, file)
    }
    fn dump_file_in_flight(
        &mut self,
        owner_pid: i32,
        file: BorrowedFd<'_>,
    ) -> Result<u32, PluginError> {
        self.inner.dump_file_in_flight(owner_pid, file)
    }
    fn plugin_state(&mut self) -> Option<&mut (dyn Any + Send)> {
        self.state.as_deref_mut()
    }
}

/// The host's restore context plus one plugin's state (and, in a file restorer's call, the
/// files of the run).
struct ScopedRestore<'a> {
    inner: &'a mut dyn RestoreContext,
    state: Option<&'a mut (dyn Any + Send)>,
    opener: Option<&'a mut dyn OpenById>,
}

impl RestoreContext for ScopedRestore<'_> {
    fn read_image(&mut self, image: ImageRef) -> Result<Option<Vec<u8>>, PluginError> {
        self.inner.read_image(image)
    }
    fn read_plugin_file(&mut self, name: &str) -> Result<Option<Vec<u8>>, PluginError> {
        self.inner.read_plugin_file(name)
    }
    fn current_pid(&self) -> i32 {
        self.inner.current_pid()
    }
    fn restored_pid(&self, old: i32) -> Option<i32> {
        self.inner.restored_pid(old)
    }
    fn host_pid(&self, image_pid: i32) -> Option<i32> {
        self.inner.host_pid(image_pid)
    }
    fn keep_fd(&mut self, key: &str, fd: OwnedFd) -> Result<(), PluginError> {
        self.inner.keep_fd(key, fd)
    }
    fn kept_fd(&self, key: &str) -> Option<BorrowedFd<'_>> {
        self.inner.kept_fd(key)
    }
    fn options(&self) -> &RestoreOptions {
        self.inner.options()
    }
    fn tasks(&self) -> Vec<TaskIds> {
        self.inner.tasks()
    }
    fn read_task_memory(&mut self, pid: i32, addr: u64, buf: &mut [u8]) -> Result<(), PluginError> {
        self.inner.read_task_memory(pid, addr, buf)
    }
    fn write_task_memory(&mut self, pid: i32, addr: u64, data: &[u8]) -> Result<(), PluginError> {
        self.inner.write_task_memory(pid, addr, data)
    }
    fn remote_syscall(&mut self, tid: i32, nr: i64, args: [u64; 6]) -> Result<i64, PluginError> {
        self.inner.remote_syscall(tid, nr, args)
    }
    fn dup_task_fd(&mut self, pid: i32, fd: i32) -> Result<OwnedFd, PluginError> {
        self.inner.dup_task_fd(pid, fd)
    }
    fn install_fd(
        &mut self,
        pid: i32,
        fd: BorrowedFd<'_>,
        target: i32,
        cloexec: bool,
    ) -> Result<(), PluginError> {
        self.inner.install_fd(pid, fd, target, cloexec)
    }
    fn task_fds(&self, pid: i32) -> Result<Vec<TaskFd>, PluginError> {
        self.inner.task_fds(pid)
    }
    fn restore_shmem(
        &mut self,
        shmid: u64,
        size: u64,
        file: BorrowedFd<'_>,
    ) -> Result<(), PluginError> {
        self.inner.restore_shmem(shmid, size, file)
    }
    fn anon_shmem(&mut self, shmid: u64, size: u64) -> Result<OwnedFd, PluginError> {
        self.inner.anon_shmem(shmid, size)
    }
    fn open_file_by_id(&mut self, id: u32) -> Result<OwnedFd, PluginError> {
        match self.opener.as_deref_mut() {
            Some(files) => files.open_by_id(self.inner, id),
            None => self.inner.open_file_by_id(id),
        }
    }
    fn plugin_state(&mut self) -> Option<&mut (dyn Any + Send)> {
        self.state.as_deref_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MemoryImages;
    use crate::{API_VERSION, PluginInfo};

    /// Counts calls in its dump state; has none at restore.
    struct Counting(&'static str);

    #[derive(Default)]
    struct Count(u32);

    impl Plugin for Counting {
        fn info(&self) -> PluginInfo {
            PluginInfo {
                name: self.0,
                version: "0",
                priority: 0,
                api_version: API_VERSION,
            }
        }
        fn new_state(&self, run: RunKind) -> Result<Option<PluginState>, PluginError> {
            Ok((run == RunKind::Dump).then(|| Box::new(Count::default()) as PluginState))
        }
    }

    fn bump(ctx: &mut dyn DumpContext) -> Result<u32, PluginError> {
        let c = ctx.state::<Count>()?;
        c.0 += 1;
        Ok(c.0)
    }

    #[test]
    fn each_plugin_sees_its_own_state_for_the_run() {
        let (a, b) = (Counting("a"), Counting("b"));
        let plugins: [&dyn Plugin; 2] = [&a, &b];
        let mut states = PluginStates::start(&plugins, RunKind::Dump).unwrap();
        assert!(states.has("a") && states.has("b") && !states.has("c"));
        let mut ctx = MemoryImages::new(0);
        for _ in 0..3 {
            states.dump_scope("a", &mut ctx, |c| bump(c)).unwrap();
        }
        assert_eq!(states.dump_scope("b", &mut ctx, bump).unwrap(), 1);
        assert_eq!(states.dump_scope("a", &mut ctx, bump).unwrap(), 4);
        // Other services pass through the scope.
        let id = states.dump_scope("a", &mut ctx, |c| c.new_file_id());
        assert_eq!(id, 1);
        // A plugin without a state, or asking for another type, gets a clear error.
        let err = states.dump_scope("c", &mut ctx, bump).unwrap_err();
        assert!(err.to_string().contains("no state"), "{err}");
        let err = states
            .dump_scope("a", &mut ctx, |c| c.state::<String>().map(|_| ()))
            .unwrap_err();
        assert!(err.to_string().contains("String"), "{err}");
        // The context itself has none.
        let plain: &mut dyn DumpContext = &mut ctx;
        assert!(plain.plugin_state().is_none());
    }

    #[test]
    fn restore_states_are_separate_and_dropped_with_the_run() {
        let a = Counting("a");
        let mut states = PluginStates::start(&[&a], RunKind::Restore).unwrap();
        assert!(!states.has("a"));
        let mut ctx = MemoryImages::new(0);
        let err = states
            .restore_scope("a", &mut ctx, |c| c.state::<Count>().map(|_| ()))
            .unwrap_err();
        assert!(matches!(err, PluginError::Unavailable { .. }), "{err:?}");
        assert_eq!(RunKind::from_name("restore"), Some(RunKind::Restore));
        assert_eq!(RunKind::from_name("x"), None);
    }

    struct Panicky;
    impl Plugin for Panicky {
        fn info(&self) -> PluginInfo {
            PluginInfo {
                name: "panicky",
                version: "0",
                priority: 0,
                api_version: API_VERSION,
            }
        }
        fn new_state(&self, _: RunKind) -> Result<Option<PluginState>, PluginError> {
            panic!("no state today")
        }
    }

    #[test]
    fn a_panic_creating_a_state_names_the_plugin() {
        let (name, err) = PluginStates::start(&[&Panicky], RunKind::Dump).unwrap_err();
        assert_eq!(name, "panicky");
        assert!(err.to_string().contains("no state today"), "{err}");
    }
}
