//! The plugin side of the boundary: `extern "C"` entry points built from a Rust
//! [`Plugin`], instantiated in the plugin's `.so` by [`export_plugin!`](crate::export_plugin).

use std::panic::{AssertUnwindSafe, catch_unwind};

use abi_stable::library::{__call_root_module_loader, LibHeader, RootModuleResult};
use abi_stable::prefix_type::PrefixTypeTrait;
use abi_stable::sabi_extern_fn;
use abi_stable::sabi_trait::{TD_CanDowncast, TD_Opaque};
use abi_stable::std_types::{RErr, ROk, ROption, RResult, RSlice, RStr, RString, RVec};
use criu_proto::images::FileEntry;
use prost::Message;

use super::context::{GuestDump, GuestRestore, GuestRestorer, GuestState, borrow_fd};
use super::types::{FfiError, FfiFdDesc, FfiPluginInfo, FfiTaskIds, FfiVmaDesc};
use super::{
    DumpCtx, FfiRestorer_TO, FfiState_TO, FfiStateBox, PluginMod, PluginModRef, RestoreCtx,
    Restorer,
};
use crate::{
    DumpStage, FdHandler, Plugin, PluginError, RestoreStage, RunKind, StageHooks, TaskHandler,
    TaskIds, VmaDesc, VmaHandler,
};

/// Names the plugin a `.so` exports; implemented by [`export_plugin!`](crate::export_plugin).
pub trait ExportedPlugin: 'static {
    /// The plugin.
    fn plugin() -> &'static dyn Plugin;
}

/// The `LibHeader` static of a plugin `.so` (used by [`export_plugin!`](crate::export_plugin)).
pub const fn root_module<G: ExportedPlugin>() -> LibHeader {
    // SAFETY: `load_root::<G>` returns the root module of type `PluginModRef`, the type named
    // here, and the layout is checked (CheckTypeLayout::Yes) by the host at load time.
    unsafe {
        LibHeader::from_constructor::<PluginModRef>(
            load_root::<G>,
            abi_stable::library::CheckTypeLayout::Yes,
        )
    }
}

extern "C" fn load_root<G: ExportedPlugin>() -> RootModuleResult {
    __call_root_module_loader(module::<G>)
}

pub(crate) fn module<G: ExportedPlugin>() -> PluginModRef {
    PluginMod {
        info: info::<G>,
        claims: claims::<G>,
        dump_file: dump_file::<G>,
        restores: restores::<G>,
        start_restore: start_restore::<G>,
        capabilities: capabilities::<G>,
        dump_stage: dump_stage::<G>,
        restore_stage: restore_stage::<G>,
        claims_vma: claims_vma::<G>,
        dump_vma: dump_vma::<G>,
        restore_vma: restore_vma::<G>,
        dump_task: dump_task::<G>,
        restore_task: restore_task::<G>,
        new_state: new_state::<G>,
        attach_logger: super::log::attach_logger,
    }
    .leak_into_prefix()
}

/// Runs `f` with panics caught and errors converted; the plugin name goes into a panic error.
pub(crate) fn guarded<T>(
    plugin: &str,
    f: impl FnOnce() -> Result<T, PluginError>,
) -> RResult<T, FfiError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => ROk(v),
        Ok(Err(e)) => RErr(FfiError::from(&e)),
        Err(payload) => RErr(FfiError::panicked(plugin, payload.as_ref())),
    }
}

pub(crate) fn decode_entry(bytes: &[u8]) -> Result<FileEntry, PluginError> {
    FileEntry::decode(bytes).map_err(|e| PluginError::bad_image("files.img", e.to_string()))
}

fn name<G: ExportedPlugin>() -> &'static str {
    // info() itself could panic; the name is only for messages.
    catch_unwind(|| G::plugin().info().name).unwrap_or("(unknown plugin)")
}

fn handler<G: ExportedPlugin>() -> Result<&'static dyn FdHandler, PluginError> {
    G::plugin().fd_handler().ok_or_else(|| PluginError::Plugin {
        plugin: name::<G>().into(),
        message: "called as an fd handler but has none".into(),
    })
}

#[sabi_extern_fn]
fn info<G: ExportedPlugin>() -> RResult<FfiPluginInfo, FfiError> {
    guarded(name::<G>(), || {
        let p = G::plugin();
        let i = p.info();
        let fd_types: RVec<i32> = p
            .fd_handler()
            .map(|h| h.fd_types().iter().map(|&t| t as i32).collect())
            .unwrap_or_default();
        Ok(FfiPluginInfo {
            name: i.name.into(),
            version: i.version.into(),
            priority: i.priority,
            api_major: i.api_version.major,
            api_minor: i.api_version.minor,
            has_fd_handler: p.fd_handler().is_some(),
            fd_types,
        })
    })
}

#[sabi_extern_fn]
fn claims<G: ExportedPlugin>(fd: &FfiFdDesc) -> RResult<bool, FfiError> {
    guarded(name::<G>(), || {
        let file = dup(fd)?;
        Ok(handler::<G>()?.claims(&fd.to_desc(file)))
    })
}

#[sabi_extern_fn]
fn dump_file<G: ExportedPlugin>(
    ctx: DumpCtx<'_>,
    fd: &FfiFdDesc,
    id: u32,
) -> RResult<RVec<u8>, FfiError> {
    guarded(name::<G>(), || {
        let desc = fd.to_desc(dup(fd)?);
        let mut ctx = GuestDump::new(ctx);
        let entry = handler::<G>()?.dump_file(&mut ctx, &desc, id)?;
        Ok(entry.encode_to_vec().into())
    })
}

#[sabi_extern_fn]
fn restores<G: ExportedPlugin>(entry: RSlice<'_, u8>) -> RResult<bool, FfiError> {
    guarded(name::<G>(), || {
        Ok(handler::<G>()?.restores(&decode_entry(&entry)?))
    })
}

#[sabi_extern_fn]
fn start_restore<G: ExportedPlugin>(
    ctx: RestoreCtx<'_>,
    entries: RSlice<'_, RVec<u8>>,
) -> RResult<Restorer, FfiError> {
    let plugin = name::<G>();
    guarded(plugin, || {
        let entries = entries
            .iter()
            .map(|e| decode_entry(e))
            .collect::<Result<Vec<_>, _>>()?;
        let mut ctx = GuestRestore::new(ctx);
        let inner = handler::<G>()?.start_restore(&mut ctx, &entries)?;
        let restorer = GuestRestorer { plugin, inner };
        Ok(FfiRestorer_TO::from_value(restorer, TD_Opaque))
    })
}

fn hooks<G: ExportedPlugin>() -> Result<&'static dyn StageHooks, PluginError> {
    G::plugin()
        .stage_hooks()
        .ok_or_else(|| PluginError::Plugin {
            plugin: name::<G>().into(),
            message: "called for a stage hook but has none".into(),
        })
}

/// The capability tokens of `plugin` (see [`super::PluginMod::capabilities`]).
pub(crate) fn capability_tokens(plugin: &dyn Plugin) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(h) = plugin.stage_hooks() {
        out.extend(h.dump_stages().iter().map(|s| format!("dump-stage:{s}")));
        out.extend(
            h.restore_stages()
                .iter()
                .map(|s| format!("restore-stage:{s}")),
        );
    }
    if let Some(h) = plugin.vma_handler() {
        out.push("vma-handler".into());
        out.extend(h.vma_kinds().iter().map(|k| format!("vma:{k}")));
    }
    if let Some(h) = plugin.task_handler() {
        out.push("task-handler".into());
        out.extend(h.task_state().iter().map(|k| format!("task-state:{k}")));
    }
    out
}

fn vma_handler<G: ExportedPlugin>() -> Result<&'static dyn VmaHandler, PluginError> {
    G::plugin()
        .vma_handler()
        .ok_or_else(|| PluginError::Plugin {
            plugin: name::<G>().into(),
            message: "called as a VMA handler but has none".into(),
        })
}

fn task_handler<G: ExportedPlugin>() -> Result<&'static dyn TaskHandler, PluginError> {
    G::plugin()
        .task_handler()
        .ok_or_else(|| PluginError::Plugin {
            plugin: name::<G>().into(),
            message: "called as a task handler but has none".into(),
        })
}

#[sabi_extern_fn]
fn claims_vma<G: ExportedPlugin>(vma: &FfiVmaDesc) -> RResult<bool, FfiError> {
    guarded(name::<G>(), || {
        Ok(vma_handler::<G>()?.claims_vma(&VmaDesc::from(vma)))
    })
}

#[sabi_extern_fn]
fn dump_vma<G: ExportedPlugin>(ctx: DumpCtx<'_>, vma: &FfiVmaDesc) -> RResult<(), FfiError> {
    guarded(name::<G>(), || {
        let mut ctx = GuestDump::new(ctx);
        vma_handler::<G>()?.dump_vma(&mut ctx, &VmaDesc::from(vma))
    })
}

#[sabi_extern_fn]
fn restore_vma<G: ExportedPlugin>(ctx: RestoreCtx<'_>, vma: &FfiVmaDesc) -> RResult<(), FfiError> {
    guarded(name::<G>(), || {
        let mut ctx = GuestRestore::new(ctx);
        vma_handler::<G>()?.restore_vma(&mut ctx, &VmaDesc::from(vma))
    })
}

#[sabi_extern_fn]
fn dump_task<G: ExportedPlugin>(ctx: DumpCtx<'_>, task: &FfiTaskIds) -> RResult<(), FfiError> {
    guarded(name::<G>(), || {
        let mut ctx = GuestDump::new(ctx);
        task_handler::<G>()?.dump_task(&mut ctx, &TaskIds::from(task))
    })
}

#[sabi_extern_fn]
fn restore_task<G: ExportedPlugin>(
    ctx: RestoreCtx<'_>,
    task: &FfiTaskIds,
) -> RResult<(), FfiError> {
    guarded(name::<G>(), || {
        let mut ctx = GuestRestore::new(ctx);
        task_handler::<G>()?.restore_task(&mut ctx, &TaskIds::from(task))
    })
}

#[sabi_extern_fn]
fn new_state<G: ExportedPlugin>(run: RStr<'_>) -> RResult<ROption<FfiStateBox>, FfiError> {
    let plugin = name::<G>();
    guarded(plugin, || {
        let kind = RunKind::from_name(run.as_str()).ok_or_else(|| PluginError::Plugin {
            plugin: plugin.into(),
            message: format!("asked for a state for run {run:?}, unknown to this plugin"),
        })?;
        let state = G::plugin().new_state(kind)?.map(|inner| {
            // Downcastable: the plugin checks the type when the handle comes back.
            FfiState_TO::from_value(GuestState { plugin, inner }, TD_CanDowncast)
        });
        Ok(state.into())
    })
}

#[sabi_extern_fn]
fn capabilities<G: ExportedPlugin>() -> RResult<RVec<RString>, FfiError> {
    guarded(name::<G>(), || {
        Ok(capability_tokens(G::plugin())
            .into_iter()
            .map(RString::from)
            .collect())
    })
}

fn unknown_stage(plugin: &str, stage: &str) -> PluginError {
    PluginError::Plugin {
        plugin: plugin.into(),
        message: format!("called at stage {stage:?}, unknown to this plugin's API version"),
    }
}

#[sabi_extern_fn]
fn dump_stage<G: ExportedPlugin>(ctx: DumpCtx<'_>, stage: RStr<'_>) -> RResult<(), FfiError> {
    let plugin = name::<G>();
    guarded(plugin, || {
        let s = DumpStage::from_name(stage.as_str())
            .ok_or_else(|| unknown_stage(plugin, stage.as_str()))?;
        let mut ctx = GuestDump::new(ctx);
        hooks::<G>()?.dump_stage(s, &mut ctx)
    })
}

#[sabi_extern_fn]
fn restore_stage<G: ExportedPlugin>(ctx: RestoreCtx<'_>, stage: RStr<'_>) -> RResult<(), FfiError> {
    let plugin = name::<G>();
    guarded(plugin, || {
        let s = RestoreStage::from_name(stage.as_str())
            .ok_or_else(|| unknown_stage(plugin, stage.as_str()))?;
        let mut ctx = GuestRestore::new(ctx);
        hooks::<G>()?.restore_stage(s, &mut ctx)
    })
}

/// The plugin's own duplicate of the core's fd (the core keeps its own; [`crate::FdDesc`]
/// owns its file).
fn dup(fd: &FfiFdDesc) -> Result<std::os::fd::OwnedFd, PluginError> {
    borrow_fd(fd.file)
        .try_clone_to_owned()
        .map_err(|source| PluginError::Fd {
            pid: fd.pid,
            fd: fd.fd,
            link: fd.link.to_string(),
            op: "fcntl(F_DUPFD_CLOEXEC)",
            source,
        })
}
