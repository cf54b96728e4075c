//! Stage hooks: a plugin's calls at fixed points of the whole dump or restore (network lock
//! before freeze, reopening pidfds once every task exists, ...), and how the core runs them.

use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::{DumpContext, Plugin, PluginError, PluginStates, RestoreContext};

/// A point of the dump flow where [`StageHooks::dump_stage`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DumpStage {
    /// Before any task is frozen: the tree is not known yet ([`DumpContext::tasks`] is empty,
    /// task services are unavailable). Lock the network here.
    BeforeFreeze,
    /// Every task is frozen (ptrace-stopped), nothing dumped yet: [`DumpContext::tasks`] and
    /// the task services (memory, remote syscalls, fds) are available.
    AfterFreeze,
    /// Every image is written; the tasks are still frozen and are released (killed, resumed
    /// or left stopped) right after.
    AfterDump,
    /// The dump failed (in the core or in a hook): the tasks are resumed and the images
    /// removed right after. Errors of this hook are logged, not returned. Undo here what
    /// [`DumpStage::BeforeFreeze`] did.
    Failed,
}

/// A point of the restore flow where [`StageHooks::restore_stage`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RestoreStage {
    /// Before any task is created; the images are readable.
    BeforeRestore,
    /// Every task and thread of the tree exists (memory, files and threads restored, still
    /// under the restorer's control, credentials not yet applied): reopen things that refer
    /// to other tasks (pidfds) here. Task services are available.
    AfterTasksExist,
    /// The tree is fully restored (credentials, registers) but no task runs yet: last
    /// memory writes, fds to install, remote syscalls. Task services are available.
    BeforeResume,
    /// The tasks run (they are no longer under the restorer's control): unlock the network.
    AfterResume,
    /// The restore failed: every created task is killed right after. Errors of this hook
    /// are logged, not returned.
    Failed,
}

impl DumpStage {
    /// Every dump stage, in flow order.
    pub const ALL: [DumpStage; 4] = [
        DumpStage::BeforeFreeze,
        DumpStage::AfterFreeze,
        DumpStage::AfterDump,
        DumpStage::Failed,
    ];

    /// Short name for logs and `criu check --plugins` (`"before-freeze"`).
    pub const fn name(self) -> &'static str {
        match self {
            DumpStage::BeforeFreeze => "before-freeze",
            DumpStage::AfterFreeze => "after-freeze",
            DumpStage::AfterDump => "after-dump",
            DumpStage::Failed => "dump-failed",
        }
    }

    /// The stage of a [`DumpStage::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}

impl RestoreStage {
    /// Every restore stage, in flow order.
    pub const ALL: [RestoreStage; 5] = [
        RestoreStage::BeforeRestore,
        RestoreStage::AfterTasksExist,
        RestoreStage::BeforeResume,
        RestoreStage::AfterResume,
        RestoreStage::Failed,
    ];

    /// Short name for logs and `criu check --plugins` (`"before-resume"`).
    pub const fn name(self) -> &'static str {
        match self {
            RestoreStage::BeforeRestore => "before-restore",
            RestoreStage::AfterTasksExist => "after-tasks-exist",
            RestoreStage::BeforeResume => "before-resume",
            RestoreStage::AfterResume => "after-resume",
            RestoreStage::Failed => "restore-failed",
        }
    }

    /// The stage of a [`RestoreStage::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}

impl std::fmt::Display for DumpStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::fmt::Display for RestoreStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A plugin's whole-dump and whole-restore hooks ([`crate::Plugin::stage_hooks`]).
///
/// The core calls a hook only at the stages the plugin lists in
/// [`dump_stages`](StageHooks::dump_stages) / [`restore_stages`](StageHooks::restore_stages),
/// plugins in asking order. An error (or a panic, caught) at any stage but `Failed` fails the
/// dump or restore with the plugin's name and the stage; the failure stage then runs, and the
/// tasks are resumed (dump) or killed (restore) as on any failure.
pub trait StageHooks: Sync {
    /// The dump stages this plugin wants a call at.
    fn dump_stages(&self) -> &[DumpStage] {
        &[]
    }

    /// The restore stages this plugin wants a call at.
    fn restore_stages(&self) -> &[RestoreStage] {
        &[]
    }

    /// Runs at `stage` of a dump (one of [`StageHooks::dump_stages`]). `ctx` is the same
    /// context the fd handlers get (its memo and plugin files included).
    fn dump_stage(&self, stage: DumpStage, ctx: &mut dyn DumpContext) -> Result<(), PluginError> {
        let _ = (stage, ctx);
        Ok(())
    }

    /// Runs at `stage` of a restore (one of [`StageHooks::restore_stages`]), in the restorer
    /// process; [`RestoreContext::current_pid`] is the root's pid.
    fn restore_stage(
        &self,
        stage: RestoreStage,
        ctx: &mut dyn RestoreContext,
    ) -> Result<(), PluginError> {
        let _ = (stage, ctx);
        Ok(())
    }
}

/// A hook's failure: the plugin's name and its error.
pub type HookFailure = (&'static str, PluginError);

/// Runs `f` with a panic turned into [`PluginError::Panicked`] naming `plugin`: built-in
/// plugins get the same treatment as loaded ones (whose panics stop at the ffi boundary).
pub fn catch_hook_panic<T>(
    plugin: &str,
    f: impl FnOnce() -> Result<T, PluginError>,
) -> Result<T, PluginError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".into());
            Err(PluginError::Panicked {
                plugin: plugin.to_string(),
                message,
            })
        }
    }
}

/// Whether any of `plugins` has a dump hook at `stage` (the core skips all work otherwise).
pub fn has_dump_hook(plugins: &[&dyn Plugin], stage: DumpStage) -> bool {
    plugins
        .iter()
        .filter_map(|p| p.stage_hooks())
        .any(|h| h.dump_stages().contains(&stage))
}

/// Whether any of `plugins` has a restore hook at `stage`.
pub fn has_restore_hook(plugins: &[&dyn Plugin], stage: RestoreStage) -> bool {
    plugins
        .iter()
        .filter_map(|p| p.stage_hooks())
        .any(|h| h.restore_stages().contains(&stage))
}

/// Runs every dump hook at `stage`, in `plugins` order, each plugin with its own state of
/// `states`. Stops at the first error, except at [`DumpStage::Failed`] where every hook runs
/// and errors are only logged.
pub fn run_dump_stage(
    plugins: &[&dyn Plugin],
    stage: DumpStage,
    ctx: &mut dyn DumpContext,
    states: &mut PluginStates,
) -> Result<(), HookFailure> {
    for p in plugins {
        let Some(h) = p.stage_hooks() else { continue };
        if !h.dump_stages().contains(&stage) {
            continue;
        }
        let name = p.info().name;
        tracing::debug!(plugin = name, stage = stage.name(), "dump stage hook");
        let r = states.dump_scope(name, ctx, |ctx| {
            catch_hook_panic(name, || h.dump_stage(stage, ctx))
        });
        match r {
            Ok(()) => {}
            Err(e) if stage == DumpStage::Failed => {
                tracing::warn!(plugin = name, error = %e, "dump failure hook failed");
            }
            Err(e) => return Err((name, e)),
        }
    }
    Ok(())
}

/// Runs every restore hook at `stage`, in `plugins` order, each plugin with its own state of
/// `states`. Stops at the first error, except at [`RestoreStage::Failed`] where every hook
/// runs and errors are only logged.
pub fn run_restore_stage(
    plugins: &[&dyn Plugin],
    stage: RestoreStage,
    ctx: &mut dyn RestoreContext,
    states: &mut PluginStates,
) -> Result<(), HookFailure> {
    for p in plugins {
        let Some(h) = p.stage_hooks() else { continue };
        if !h.restore_stages().contains(&stage) {
            continue;
        }
        let name = p.info().name;
        tracing::debug!(plugin = name, stage = stage.name(), "restore stage hook");
        let r = states.restore_scope(name, ctx, |ctx| {
            catch_hook_panic(name, || h.restore_stage(stage, ctx))
        });
        match r {
            Ok(()) => {}
            Err(e) if stage == RestoreStage::Failed => {
                tracing::warn!(plugin = name, error = %e, "restore failure hook failed");
            }
            Err(e) => return Err((name, e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::testing::MemoryImages;
    use crate::{API_VERSION, PluginInfo, sort_plugins};

    /// Records the stages it saw (by plugin name) in `LOG`; fails or panics on demand.
    struct Hooked {
        name: &'static str,
        priority: i32,
        fail_at: Option<&'static str>,
        panic_at: Option<&'static str>,
    }

    static LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());

    impl Plugin for Hooked {
        fn info(&self) -> PluginInfo {
            PluginInfo {
                name: self.name,
                version: "0",
                priority: self.priority,
                api_version: API_VERSION,
            }
        }
        fn stage_hooks(&self) -> Option<&dyn StageHooks> {
            Some(self)
        }
    }

    impl Hooked {
        fn seen(&self, stage: &str) -> Result<(), PluginError> {
            LOG.lock().unwrap().push(format!("{}:{stage}", self.name));
            if self.panic_at == Some(stage) {
                panic!("{} panics at {stage}", self.name);
            }
            if self.fail_at == Some(stage) {
                return Err(PluginError::Unsupported {
                    resource: format!("stage {stage}"),
                    pid: 0,
                    hint: "test".into(),
                });
            }
            Ok(())
        }
    }

    impl StageHooks for Hooked {
        fn dump_stages(&self) -> &[DumpStage] {
            &[DumpStage::AfterFreeze, DumpStage::Failed]
        }
        fn restore_stages(&self) -> &[RestoreStage] {
            &RestoreStage::ALL
        }
        fn dump_stage(&self, stage: DumpStage, _: &mut dyn DumpContext) -> Result<(), PluginError> {
            self.seen(stage.name())
        }
        fn restore_stage(
            &self,
            stage: RestoreStage,
            _: &mut dyn RestoreContext,
        ) -> Result<(), PluginError> {
            self.seen(stage.name())
        }
    }

    /// No hooks at all.
    struct Plain;
    impl Plugin for Plain {
        fn info(&self) -> PluginInfo {
            PluginInfo {
                name: "plain",
                version: "0",
                priority: 0,
                api_version: API_VERSION,
            }
        }
    }

    static A: Hooked = Hooked {
        name: "a",
        priority: 20,
        fail_at: Some("after-freeze"),
        panic_at: Some("before-resume"),
    };
    static B: Hooked = Hooked {
        name: "b",
        priority: 10,
        fail_at: Some("dump-failed"),
        panic_at: None,
    };

    fn take_log() -> Vec<String> {
        std::mem::take(&mut *LOG.lock().unwrap())
    }

    #[test]
    fn stages_run_in_order_errors_stop_failure_stage_goes_on() {
        let _serial = crate::hooks::tests::LOCK
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let mut plugins: Vec<&dyn Plugin> = vec![&A, &Plain, &B];
        sort_plugins(&mut plugins);
        let mut ctx = MemoryImages::new(0);
        let mut st = PluginStates::default();
        take_log();
        assert!(!has_dump_hook(&plugins, DumpStage::BeforeFreeze));
        assert!(has_dump_hook(&plugins, DumpStage::AfterFreeze));
        assert!(!has_dump_hook(&[&Plain], DumpStage::Failed));
        run_dump_stage(&plugins, DumpStage::BeforeFreeze, &mut ctx, &mut st).unwrap();
        let (name, err) =
            run_dump_stage(&plugins, DumpStage::AfterFreeze, &mut ctx, &mut st).unwrap_err();
        assert_eq!(name, "a");
        assert!(err.to_string().contains("stage after-freeze"), "{err}");
        // b's failure hook fails, a's still runs; nothing is returned.
        run_dump_stage(&plugins, DumpStage::Failed, &mut ctx, &mut st).unwrap();
        assert_eq!(
            take_log(),
            [
                "b:after-freeze",
                "a:after-freeze",
                "b:dump-failed",
                "a:dump-failed"
            ]
        );
    }

    #[test]
    fn a_panic_in_a_hook_is_an_error() {
        let _serial = crate::hooks::tests::LOCK
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let plugins: Vec<&dyn Plugin> = vec![&B, &A];
        let mut ctx = MemoryImages::new(0);
        let mut st = PluginStates::default();
        take_log();
        let (name, err) =
            run_restore_stage(&plugins, RestoreStage::BeforeResume, &mut ctx, &mut st).unwrap_err();
        assert_eq!(name, "a");
        assert!(
            matches!(&err, PluginError::Panicked { plugin, message }
                if plugin == "a" && message.contains("a panics at before-resume")),
            "{err:?}"
        );
        assert!(has_restore_hook(&plugins, RestoreStage::AfterTasksExist));
        assert_eq!(take_log(), ["b:before-resume", "a:before-resume"]);
    }

    pub(crate) static LOCK: Mutex<()> = Mutex::new(());

    #[test]
    fn stage_names_round_trip() {
        for s in DumpStage::ALL {
            assert_eq!(DumpStage::from_name(s.name()), Some(s));
        }
        for s in RestoreStage::ALL {
            assert_eq!(RestoreStage::from_name(&s.to_string()), Some(s));
        }
        assert_eq!(DumpStage::from_name("after-resume"), None);
    }
}
