//! The host side of the boundary: wrap a checked root module (see [`super::load`]) into a
//! `&'static dyn Plugin`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RResult, RString, RVec};
use criu_proto::images::{FdTypes, FileEntry};
use prost::Message;

use super::context::{HostDump, HostRestore, HostState, take_fd};
use super::load::LoadError;
use super::types::{FfiError, FfiFdDesc, FfiInstalledFd, FfiPluginInfo, FfiTaskIds, FfiVmaDesc};
use super::{FfiDumpContext_TO, FfiRestoreContext_TO, PluginModRef, Restorer};
use crate::{
    API_VERSION, DumpContext, DumpStage, FdDesc, FdHandler, FileRestorer, InstalledFd, Plugin,
    PluginError, PluginInfo, PluginState, RestoreContext, RestoreStage, RunKind, StageHooks,
    TaskHandler, TaskIds, VmaDesc, VmaHandler,
};

/// A plugin loaded from a `.so`, seen as a [`Plugin`] (and [`FdHandler`]). Never unloaded.
pub struct LoadedPlugin {
    module: PluginModRef,
    path: PathBuf,
    info: PluginInfo,
    fd_types: Vec<FdTypes>,
    has_fd_handler: bool,
    dump_stages: Vec<DumpStage>,
    restore_stages: Vec<RestoreStage>,
    /// `Some(kinds)` when it has a VMA handler (and the entry points for it).
    vma_kinds: Option<Vec<&'static str>>,
    /// `Some(state names)` when it has a task handler (and the entry points for it).
    task_state: Option<Vec<&'static str>>,
    guard: Guard,
}

/// The plugin's name and its "panicked once" flag, shared with its restorers.
#[derive(Clone, Copy)]
struct Guard {
    name: &'static str,
    /// Set once the plugin panicked: it is not called again.
    poisoned: &'static AtomicBool,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("path", &self.path)
            .field("info", &self.info)
            .finish()
    }
}

/// Wraps a root module (checked by abi_stable, or built in this process by tests) after
/// checking the contract version it declares.
pub(crate) fn from_module(
    module: PluginModRef,
    path: &Path,
) -> Result<&'static LoadedPlugin, LoadError> {
    let raw: FfiPluginInfo = (module.info())()
        .into_result()
        .map_err(|e| LoadError::Info {
            path: path.to_path_buf(),
            source: e.into_plugin_error(&path.display().to_string()),
        })?;
    let plugin_api = raw.api_version();
    if !plugin_api.is_compatible_with(API_VERSION) {
        return Err(LoadError::ApiVersion {
            path: path.to_path_buf(),
            name: raw.name.into_string(),
            version: raw.version.into_string(),
            plugin_api,
            host_api: API_VERSION,
        });
    }
    // fd types this host does not know cannot be asked for by the core: drop them.
    let fd_types = raw
        .fd_types
        .iter()
        .filter_map(|&t| FdTypes::try_from(t).ok())
        .collect();
    // API 0.3 capabilities; a 0.2 plugin has no such field (none of them).
    let tokens: Vec<String> = match module.capabilities() {
        Some(f) => f()
            .into_result()
            .map_err(|e| LoadError::Info {
                path: path.to_path_buf(),
                source: e.into_plugin_error(&path.display().to_string()),
            })?
            .into_iter()
            .map(RString::into_string)
            .collect(),
        None => Vec::new(),
    };
    let (dump_stages, restore_stages) = stages_of(&tokens, module);
    let listed = |flag: &str, prefix: &str, present: bool| {
        (present && tokens.iter().any(|t| t == flag)).then(|| {
            tokens
                .iter()
                .filter_map(|t| t.strip_prefix(prefix))
                // Leaked once per loaded plugin, which lives as long as the process.
                .map(|k| &*Box::leak(k.to_string().into_boxed_str()))
                .collect::<Vec<&'static str>>()
        })
    };
    let vma_kinds = listed(
        "vma-handler",
        "vma:",
        module.claims_vma().is_some()
            && module.dump_vma().is_some()
            && module.restore_vma().is_some(),
    );
    let task_state = listed(
        "task-handler",
        "task-state:",
        module.dump_task().is_some() && module.restore_task().is_some(),
    );
    let info = PluginInfo {
        // Leaked once per loaded plugin, which lives as long as the process.
        name: Box::leak(raw.name.into_string().into_boxed_str()),
        version: Box::leak(raw.version.into_string().into_boxed_str()),
        priority: raw.priority,
        api_version: plugin_api,
    };
    // From here on the plugin's `tracing` events reach our log (API 0.5 plugins).
    super::log::attach(module, info.name);
    Ok(Box::leak(Box::new(LoadedPlugin {
        module,
        path: path.to_path_buf(),
        info,
        fd_types,
        has_fd_handler: raw.has_fd_handler,
        dump_stages,
        restore_stages,
        vma_kinds,
        task_state,
        guard: Guard {
            name: info.name,
            poisoned: Box::leak(Box::new(AtomicBool::new(false))),
        },
    })))
}

/// The stage hooks among capability `tokens` this host knows (others are ignored, a newer
/// plugin's), kept only when the module has the matching entry point.
fn stages_of(tokens: &[String], module: PluginModRef) -> (Vec<DumpStage>, Vec<RestoreStage>) {
    let mut dump = Vec::new();
    let mut restore = Vec::new();
    for t in tokens {
        if let Some(name) = t.strip_prefix("dump-stage:") {
            if let Some(s) = DumpStage::from_name(name).filter(|_| module.dump_stage().is_some()) {
                dump.push(s);
            }
        } else if let Some(name) = t.strip_prefix("restore-stage:") {
            if let Some(s) =
                RestoreStage::from_name(name).filter(|_| module.restore_stage().is_some())
            {
                restore.push(s);
            }
        } else if !["vma-handler", "task-handler", "vma:", "task-state:"]
            .iter()
            .any(|k| t.starts_with(k))
        {
            tracing::debug!(capability = %t, "plugin capability unknown to this criu, ignored");
        }
    }
    (dump, restore)
}

impl LoadedPlugin {
    /// The file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Guard {
    fn poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Relaxed)
    }

    fn check(&self) -> Result<(), PluginError> {
        if self.poisoned() {
            return Err(PluginError::Plugin {
                plugin: self.name.into(),
                message: "disabled after an earlier panic".into(),
            });
        }
        Ok(())
    }

    fn result<T>(&self, r: RResult<T, FfiError>) -> Result<T, PluginError> {
        r.into_result().map_err(|e| {
            if e.kind == FfiError::PANICKED {
                self.poisoned.store(true, Ordering::Relaxed);
                tracing::error!(plugin = self.name, message = %e.message, "plugin panicked");
            }
            e.into_plugin_error(self.name)
        })
    }
}

impl Plugin for LoadedPlugin {
    fn info(&self) -> PluginInfo {
        self.info
    }

    fn fd_handler(&self) -> Option<&dyn FdHandler> {
        self.has_fd_handler.then_some(self as &dyn FdHandler)
    }

    fn stage_hooks(&self) -> Option<&dyn StageHooks> {
        (!self.dump_stages.is_empty() || !self.restore_stages.is_empty())
            .then_some(self as &dyn StageHooks)
    }

    fn vma_handler(&self) -> Option<&dyn VmaHandler> {
        self.vma_kinds.is_some().then_some(self as &dyn VmaHandler)
    }

    fn task_handler(&self) -> Option<&dyn TaskHandler> {
        self.task_state
            .is_some()
            .then_some(self as &dyn TaskHandler)
    }

    /// The plugin's handle, boxed (dropping it runs the plugin's own drop); a plugin built
    /// before API 0.5 has none.
    fn new_state(&self, run: RunKind) -> Result<Option<PluginState>, PluginError> {
        // A plugin disabled by an earlier panic claims nothing more: it needs no state.
        let Some(f) = self.module.new_state().filter(|_| !self.guard.poisoned()) else {
            return Ok(None);
        };
        let handle = self.guard.result(f(run.name().into()))?;
        Ok(handle
            .into_option()
            .map(|h| Box::new(HostState(h)) as PluginState))
    }
}

impl LoadedPlugin {
    fn missing(&self, what: &str) -> PluginError {
        PluginError::Plugin {
            plugin: self.info.name.into(),
            message: format!("has no {what} entry point"),
        }
    }
}

impl VmaHandler for LoadedPlugin {
    fn vma_kinds(&self) -> &[&str] {
        self.vma_kinds.as_deref().unwrap_or_default()
    }

    /// Like [`FdHandler::claims`], a failing `claims_vma` answers "mine" so that the dump
    /// fails in `dump_vma` with the plugin's error.
    fn claims_vma(&self, vma: &VmaDesc) -> bool {
        let Some(f) = self.module.claims_vma() else {
            return false;
        };
        if self.guard.poisoned() {
            return false;
        }
        match self.guard.result(f(&FfiVmaDesc::from(vma))) {
            Ok(mine) => mine,
            Err(e) => {
                tracing::error!(plugin = self.info.name, start = vma.start, pid = vma.pid, error = %e, "claims_vma failed");
                true
            }
        }
    }

    fn dump_vma(&self, ctx: &mut dyn DumpContext, vma: &VmaDesc) -> Result<(), PluginError> {
        self.guard.check()?;
        let f = self
            .module
            .dump_vma()
            .ok_or_else(|| self.missing("dump_vma"))?;
        let mut host = HostDump(ctx);
        let ffi_ctx = FfiDumpContext_TO::from_ptr(&mut host, TD_Opaque);
        self.guard.result(f(ffi_ctx, &FfiVmaDesc::from(vma)))
    }

    fn restore_vma(&self, ctx: &mut dyn RestoreContext, vma: &VmaDesc) -> Result<(), PluginError> {
        self.guard.check()?;
        let f = self
            .module
            .restore_vma()
            .ok_or_else(|| self.missing("restore_vma"))?;
        let mut host = HostRestore(ctx);
        let ffi_ctx = FfiRestoreContext_TO::from_ptr(&mut host, TD_Opaque);
        self.guard.result(f(ffi_ctx, &FfiVmaDesc::from(vma)))
    }
}

impl TaskHandler for LoadedPlugin {
    fn task_state(&self) -> &[&str] {
        self.task_state.as_deref().unwrap_or_default()
    }

    fn dump_task(&self, ctx: &mut dyn DumpContext, task: &TaskIds) -> Result<(), PluginError> {
        self.guard.check()?;
        let f = self
            .module
            .dump_task()
            .ok_or_else(|| self.missing("dump_task"))?;
        let mut host = HostDump(ctx);
        let ffi_ctx = FfiDumpContext_TO::from_ptr(&mut host, TD_Opaque);
        self.guard.result(f(ffi_ctx, &FfiTaskIds::from(task)))
    }

    fn restore_task(
        &self,
        ctx: &mut dyn RestoreContext,
        task: &TaskIds,
    ) -> Result<(), PluginError> {
        self.guard.check()?;
        let f = self
            .module
            .restore_task()
            .ok_or_else(|| self.missing("restore_task"))?;
        let mut host = HostRestore(ctx);
        let ffi_ctx = FfiRestoreContext_TO::from_ptr(&mut host, TD_Opaque);
        self.guard.result(f(ffi_ctx, &FfiTaskIds::from(task)))
    }
}

impl StageHooks for LoadedPlugin {
    fn dump_stages(&self) -> &[DumpStage] {
        &self.dump_stages
    }

    fn restore_stages(&self) -> &[RestoreStage] {
        &self.restore_stages
    }

    fn dump_stage(&self, stage: DumpStage, ctx: &mut dyn DumpContext) -> Result<(), PluginError> {
        self.guard.check()?;
        let Some(f) = self.module.dump_stage() else {
            return Ok(()); // no stage listed without the entry point (stages_of)
        };
        let mut host = HostDump(ctx);
        let ffi_ctx = FfiDumpContext_TO::from_ptr(&mut host, TD_Opaque);
        self.guard.result(f(ffi_ctx, stage.name().into()))
    }

    fn restore_stage(
        &self,
        stage: RestoreStage,
        ctx: &mut dyn RestoreContext,
    ) -> Result<(), PluginError> {
        self.guard.check()?;
        let Some(f) = self.module.restore_stage() else {
            return Ok(());
        };
        let mut host = HostRestore(ctx);
        let ffi_ctx = FfiRestoreContext_TO::from_ptr(&mut host, TD_Opaque);
        self.guard.result(f(ffi_ctx, stage.name().into()))
    }
}

impl FdHandler for LoadedPlugin {
    fn fd_types(&self) -> &[FdTypes] {
        &self.fd_types
    }

    /// A failing or panicking `claims` answers "mine" so that the dump fails in
    /// [`FdHandler::dump_file`] with the plugin's error instead of the fd silently going
    /// to another plugin.
    fn claims(&self, fd: &FdDesc) -> bool {
        if self.guard.poisoned() {
            return false;
        }
        match self
            .guard
            .result((self.module.claims())(&FfiFdDesc::from(fd)))
        {
            Ok(mine) => mine,
            Err(e) => {
                tracing::error!(plugin = self.info.name, fd = fd.fd, pid = fd.pid, error = %e, "claims failed");
                true
            }
        }
    }

    fn dump_file(
        &self,
        ctx: &mut dyn DumpContext,
        fd: &FdDesc,
        id: u32,
    ) -> Result<FileEntry, PluginError> {
        self.guard.check().map_err(|_| PluginError::Panicked {
            plugin: self.info.name.into(),
            message: format!("while looking at {}", fd.describe()),
        })?;
        let mut host = HostDump(ctx);
        let ffi_ctx = FfiDumpContext_TO::from_ptr(&mut host, TD_Opaque);
        let bytes =
            self.guard
                .result((self.module.dump_file())(ffi_ctx, &FfiFdDesc::from(fd), id))?;
        FileEntry::decode(bytes.as_slice()).map_err(|e| {
            PluginError::bad_image(
                "files.img",
                format!("entry from plugin {}: {e}", self.info.name),
            )
        })
    }

    fn restores(&self, entry: &FileEntry) -> bool {
        if self.guard.poisoned() {
            return false;
        }
        let bytes = entry.encode_to_vec();
        self.guard
            .result((self.module.restores())(bytes.as_slice().into()))
            .unwrap_or_else(|e| {
                tracing::error!(plugin = self.info.name, error = %e, "restores failed");
                false
            })
    }

    fn start_restore(
        &self,
        ctx: &mut dyn RestoreContext,
        entries: &[FileEntry],
    ) -> Result<Box<dyn FileRestorer>, PluginError> {
        self.guard.check()?;
        let encoded: Vec<RVec<u8>> = entries.iter().map(|e| e.encode_to_vec().into()).collect();
        let mut host = HostRestore(ctx);
        let ffi_ctx = FfiRestoreContext_TO::from_ptr(&mut host, TD_Opaque);
        let inner = self.guard.result((self.module.start_restore())(
            ffi_ctx,
            encoded.as_slice().into(),
        ))?;
        Ok(Box::new(HostRestorer {
            guard: self.guard,
            inner,
        }))
    }
}

/// A loaded plugin's restorer seen as a [`FileRestorer`].
struct HostRestorer {
    guard: Guard,
    inner: Restorer,
}

impl FileRestorer for HostRestorer {
    fn open_file(
        &mut self,
        ctx: &mut dyn RestoreContext,
        entry: &FileEntry,
    ) -> Result<std::os::fd::OwnedFd, PluginError> {
        self.guard.check()?;
        let bytes = entry.encode_to_vec();
        let mut host = HostRestore(ctx);
        let ffi_ctx = FfiRestoreContext_TO::from_ptr(&mut host, TD_Opaque);
        let raw = self
            .guard
            .result(self.inner.open_file(ffi_ctx, bytes.as_slice().into()))?;
        Ok(take_fd(raw))
    }

    fn finish(
        &mut self,
        ctx: &mut dyn RestoreContext,
        installed: &[InstalledFd],
    ) -> Result<(), PluginError> {
        self.guard.check()?;
        let installed: Vec<FfiInstalledFd> = installed.iter().map(FfiInstalledFd::from).collect();
        let mut host = HostRestore(ctx);
        let ffi_ctx = FfiRestoreContext_TO::from_ptr(&mut host, TD_Opaque);
        self.guard
            .result(self.inner.finish(ffi_ctx, installed.as_slice().into()))
    }
}
