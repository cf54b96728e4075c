//! The host side of the boundary: load a plugin `.so`, check it, and wrap it into a
//! `&'static dyn Plugin`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use abi_stable::StableAbi;
use abi_stable::abi_stability::abi_checking::check_layout_compatibility;
use abi_stable::library::{LibraryError, lib_header_from_path};
use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RResult, RString, RVec};
use criu_proto::images::{FdTypes, FileEntry};
use prost::Message;

use super::context::{HostDump, HostRestore, HostState, take_fd};
use super::types::{FfiError, FfiFdDesc, FfiInstalledFd, FfiPluginInfo, FfiTaskIds, FfiVmaDesc};
use super::{FfiDumpContext_TO, FfiRestoreContext_TO, PluginModRef, Restorer};
use crate::{
    API_VERSION, ApiVersion, DumpContext, DumpStage, FdDesc, FdHandler, FileRestorer, InstalledFd,
    Plugin, PluginError, PluginInfo, PluginState, RestoreContext, RestoreStage, RunKind,
    StageHooks, TaskHandler, TaskIds, VmaDesc, VmaHandler,
};

/// Why a plugin file was not loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// `dlopen`, the root module symbol, abi_stable's version or layout check failed.
    #[error("cannot load plugin {path}")]
    Library {
        /// The file.
        path: PathBuf,
        /// What abi_stable reported (names both versions on a version mismatch).
        #[source]
        source: LibraryError,
    },
    /// abi_stable's layout check failed: the plugin was built against an interface with the
    /// same version number but another layout.
    #[error(
        "plugin {path} was built against a criu-plugin-api {version} with another ABI layout ({summary}); rebuild the plugin"
    )]
    Layout {
        /// The file.
        path: PathBuf,
        /// This host's `criu-plugin-api` version.
        version: &'static str,
        /// The differences abi_stable found, condensed (the full report is logged at debug
        /// level).
        summary: String,
    },
    /// The plugin was built for an incompatible [`API_VERSION`].
    #[error(
        "plugin {name} {version} ({path}) was built for plugin API {plugin_api}, this criu speaks plugin API {host_api}; rebuild the plugin"
    )]
    ApiVersion {
        /// The file.
        path: PathBuf,
        /// The plugin's name.
        name: String,
        /// The plugin's version.
        version: String,
        /// The contract version it was built for.
        plugin_api: ApiVersion,
        /// This host's contract version.
        host_api: ApiVersion,
    },
    /// The plugin failed (or panicked) reporting who it is.
    #[error("plugin {path} failed to describe itself")]
    Info {
        /// The file.
        path: PathBuf,
        /// Its error.
        #[source]
        source: PluginError,
    },
}

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

/// Loads the plugin in `path`: abi_stable's checks, then the contract version. The library
/// stays loaded for the life of the process (also when refused: unloading Rust code is not
/// safe in general).
pub fn load_plugin(path: &Path) -> Result<&'static LoadedPlugin, LoadError> {
    let lib_err = |source| match source {
        LibraryError::AbiInstability(report) => {
            let report = report.to_string();
            tracing::debug!(file = %path.display(), %report, "plugin ABI layout mismatch");
            LoadError::Layout {
                path: path.to_path_buf(),
                version: env!("CARGO_PKG_VERSION"),
                summary: layout_summary(&report),
            }
        }
        source => LoadError::Library {
            path: path.to_path_buf(),
            source,
        },
    };
    let header = lib_header_from_path(path).map_err(lib_err)?;
    match header.init_root_module::<PluginModRef>() {
        Ok(module) => from_module(module, path),
        // abi_stable accepts a root module (and the context vtables inside it) with the
        // host's fields or more: a plugin built against a newer minor API. A plugin built
        // against an older minor API has fewer; check it the other way round (every field
        // and method it has matches ours, our extra ones are optional prefix fields) and
        // accept it only if it also declares an older minor API.
        Err(LibraryError::AbiInstability(report)) => {
            let older = header.layout().is_some_and(|theirs| {
                check_layout_compatibility(theirs, <PluginModRef as StableAbi>::LAYOUT).is_ok()
            });
            if !older {
                return Err(lib_err(LibraryError::AbiInstability(report)));
            }
            // SAFETY: the plugin's root module layout was just checked against ours (as the
            // older side of a prefix-type extension: same leading fields, same types); the
            // fields it lacks are optional and read through `Option` accessors.
            let module = unsafe { header.init_root_module_with_unchecked_layout::<PluginModRef>() }
                .map_err(lib_err)?;
            let plugin = from_module(module, path)?;
            if plugin.info.api_version.minor >= API_VERSION.minor {
                return Err(lib_err(LibraryError::AbiInstability(report)));
            }
            tracing::info!(
                plugin = plugin.info.name,
                api = %plugin.info.api_version,
                "plugin built against an older plugin API: loaded with its subset"
            );
            Ok(plugin)
        }
        Err(e) => Err(lib_err(e)),
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

/// The `Error:` lines of abi_stable's layout report with their expected/found values:
/// `"incompatible type size (expected 208, found 216)"`.
fn layout_summary(report: &str) -> String {
    let lines: Vec<&str> = report.lines().map(str::trim).collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if let Some(what) = line.strip_prefix("Error:") {
            let at = |k: usize| lines.get(i + k).copied().unwrap_or("?");
            if at(1) == "Expected:" && at(3) == "Found:" {
                out.push(format!("{what} (expected {}, found {})", at(2), at(4)));
            } else {
                out.push(what.to_string());
            }
        }
    }
    if out.is_empty() {
        "layouts differ".into()
    } else {
        out.join("; ")
    }
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
