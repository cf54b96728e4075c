//! The stable ABI: how a plugin built as a separate `.so` (by another compiler version,
//! months later) talks to the core.
//!
//! A plugin is written against the Rust traits of this crate ([`crate::Plugin`],
//! [`crate::FdHandler`], ...) exactly like a built-in one; [`export_plugin!`](crate::export_plugin)
//! wraps it into a root module of `extern "C"` functions whose arguments are `#[repr(C)]`
//! abi_stable types. The host loads the `.so` with [`load_plugin`], checks it and wraps it back
//! into a `&'static dyn Plugin`, so the core sees one trait for built-in and loaded plugins.
//!
//! # What crosses the boundary
//! - [`PluginMod`]: the root module, an abi_stable *prefix type*. Fields after
//!   the last prefix field are optional: a newer host sees them as absent in an older plugin,
//!   an older host ignores them in a newer one.
//! - Plain data: [`FfiPluginInfo`], [`FfiFdDesc`], [`FfiImageRef`], [`FfiTaskIds`],
//!   [`FfiError`], capability tokens and stage names as strings, and
//!   `files.img` entries as prost-encoded bytes (`RVec<u8>`), so the protobuf schema can grow
//!   without touching the ABI.
//! - The core's services as `#[sabi_trait]` objects ([`FfiDumpContext`], [`FfiRestoreContext`])
//!   and a plugin's per-restore state as [`FfiRestorer`]; their vtables are prefix types too.
//! - A plugin's per-run state ([`crate::PluginState`], API 0.5) as an opaque [`FfiState`]
//!   handle: created by the plugin's `new_state` entry, held by the host, lent back through
//!   the contexts' `*_plugin_state` methods to that plugin only (which checks the type before
//!   looking inside), dropped by the plugin's own drop when the run ends.
//! - The host's log sink as an [`FfiLogger`] (API 0.5), handed over once at load time.
//! - Files in flight (API 0.6): `dump_file_in_flight` (fd borrowed for the call, the id
//!   back) and `restore_open_file_by_id` (fd owned by the caller), methods after the others
//!   in the context vtables whose default bodies answer "unavailable: upgrade criu" when a
//!   0.6 plugin meets an older criu's context.
//! - Options added from API 0.7 on (`--tcp-established`, `--network-lock`, `--external`,
//!   ...): one `dump_option` / `restore_option` method per context answers any of them by
//!   name, as text, so a later option needs no new method; a name one side does not know
//!   leaves the field at its default.
//! - API 0.8 adds two restore-context methods after the others: `restore_host_pid` (a
//!   task's pid in criu's pid namespace; its default body, met in an older criu, answers
//!   that no pid is known) and `restore_anon_shmem` (anonymous shared memory objects, fd
//!   owned by the caller; its default body answers "unavailable: upgrade criu").
//! - File descriptors as raw numbers: plugins live in criu's own process, so a number is
//!   valid on both sides. The side that receives one takes ownership or borrows it as the
//!   method documents.
//!
//! # Compatibility rules
//! A `.so` is loaded only when all of these hold, else it is refused with a message naming
//! the file and both versions, and criu goes on without it:
//! 1. abi_stable's own header and the version of this crate: `criu-plugin-api` 0.y.z loads
//!    plugins built against 0.y.* (semver: same minor while 0.x, same major from 1.0).
//! 2. abi_stable's layout check of the root module and everything reachable from it (types,
//!    field names, prefix fields): catches an ABI changed without a version bump.
//!    abi_stable itself only accepts a plugin whose prefix types (the root module, the
//!    context vtables) have the host's fields or more; for a plugin built against an older
//!    minor API (fewer fields) the host runs the same check the other way round (every field
//!    and method the plugin has must match the host's, in order) and then requires the
//!    plugin to declare an older minor [`crate::API_VERSION`]. The `plugin_abi_older` test
//!    builds `plugins/examples/eventfd` with its `criu-plugin-api` as they were at API 0.4
//!    and has this criu (0.7) load it, dump and restore with it. (By hand before: an API 0.2
//!    build with a 0.3 criu, a 0.3 build with a 0.4 criu.) What an older plugin lacks is
//!    absent, not an error: no state object (its `new_state` entry is missing), no log
//!    forwarding, the default `finish` of its restorers (a `#[sabi_trait]` method with a
//!    default body is optional in the vtable).
//! 3. [`crate::API_VERSION`]: same major, and the plugin's minor not newer than the host's
//!    ([`crate::ApiVersion::is_compatible_with`]).
//!
//! Adding: a new optional root-module field, a new trait method after the last prefix
//! field, a new [`FfiError`] kind code, a new image kind name: minor bump. Anything else:
//! major bump.
//!
//! # Exporting a plugin
//! ```
//! use criu_plugin_api::{API_VERSION, Plugin, PluginInfo};
//!
//! struct Hello;
//!
//! impl Plugin for Hello {
//!     fn info(&self) -> PluginInfo {
//!         PluginInfo { name: "hello", version: "1.0.0", priority: 500, api_version: API_VERSION }
//!     }
//! }
//!
//! static PLUGIN: Hello = Hello;
//! criu_plugin_api::export_plugin!(PLUGIN);
//! ```
//!
//! # Panics
//! Every entry point of the plugin side runs the plugin under `catch_unwind`; a panic comes
//! back as an [`FfiError`] of kind [`FfiError::PANICKED`] (the host's
//! [`crate::PluginError::Panicked`]) and the host does not call that plugin again.
//! `#[sabi_extern_fn]` aborts on anything that would still unwind, so no unwinding ever
//! crosses the boundary.

// abi_stable's derives and the few fd conversions need `unsafe`; it stays in this module.
#![allow(unsafe_code)]
// `#[sabi_trait]` expands to impls inside a const and prefix types without Debug.
#![allow(non_local_definitions, missing_debug_implementations)]

mod context;
mod guest;
mod host;
mod load;
mod log;
mod options_text;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_inflight;
#[cfg(test)]
mod tests_state;
mod types;

use abi_stable::StableAbi;
use abi_stable::library::RootModule;
use abi_stable::package_version_strings;
use abi_stable::sabi_types::VersionStrings;
use abi_stable::std_types::{ROption, RResult, RSlice, RStr, RString, RVec};

pub use context::{
    FfiDumpContext, FfiDumpContext_TO, FfiRestoreContext, FfiRestoreContext_TO, FfiRestorer,
    FfiRestorer_TO, FfiState, FfiState_TO,
};
pub use guest::{ExportedPlugin, root_module};
pub use host::LoadedPlugin;
pub use load::{LoadError, load_plugin};
pub use log::{FfiLogger, FfiLogger_TO, FfiLoggerBox};
pub use types::{
    FfiError, FfiFdDesc, FfiImageRef, FfiInstalledFd, FfiPluginInfo, FfiStat, FfiSyscallArgs,
    FfiTaskFd, FfiTaskIds, FfiVmaDesc,
};

/// A dump context handed to a plugin for one call.
pub type DumpCtx<'a> = FfiDumpContext_TO<'a, abi_stable::sabi_types::RMut<'a, ()>>;
/// A restore context handed to a plugin for one call.
pub type RestoreCtx<'a> = FfiRestoreContext_TO<'a, abi_stable::sabi_types::RMut<'a, ()>>;
/// A plugin's state for one restore, owned by the host.
pub type Restorer = FfiRestorer_TO<'static, abi_stable::std_types::RBox<()>>;
/// A plugin's [`crate::PluginState`] for one run, owned by the host, dropped by the plugin's
/// code (API 0.5).
pub type FfiStateBox = FfiState_TO<'static, abi_stable::std_types::RBox<()>>;

/// The root module a plugin `.so` exports (see [`export_plugin!`](crate::export_plugin)).
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModRef)))]
#[sabi(missing_field(panic))]
pub struct PluginMod {
    /// Name, version, contract version and capabilities.
    pub info: extern "C" fn() -> RResult<FfiPluginInfo, FfiError>,
    /// [`crate::FdHandler::claims`].
    pub claims: extern "C" fn(&FfiFdDesc) -> RResult<bool, FfiError>,
    /// [`crate::FdHandler::dump_file`]: the encoded `FileEntry`.
    pub dump_file: extern "C" fn(DumpCtx<'_>, &FfiFdDesc, u32) -> RResult<RVec<u8>, FfiError>,
    /// [`crate::FdHandler::restores`], the entry encoded.
    pub restores: extern "C" fn(RSlice<'_, u8>) -> RResult<bool, FfiError>,
    /// [`crate::FdHandler::start_restore`], every `files.img` entry encoded.
    #[sabi(last_prefix_field)]
    pub start_restore:
        extern "C" fn(RestoreCtx<'_>, RSlice<'_, RVec<u8>>) -> RResult<Restorer, FfiError>,
    /// What the plugin handles beyond fds, as tokens (API 0.3): `dump-stage:<name>` and
    /// `restore-stage:<name>` per stage hook ([`crate::DumpStage::name`]), `vma-handler`
    /// and `vma:<kind>`, `task-handler` and `task-state:<name>`. Tokens a host does not know
    /// are ignored, so capabilities are added without a layout change.
    #[sabi(missing_field(option))]
    pub capabilities: extern "C" fn() -> RResult<RVec<RString>, FfiError>,
    /// [`crate::StageHooks::dump_stage`], the stage by name (API 0.3).
    #[sabi(missing_field(option))]
    pub dump_stage: extern "C" fn(DumpCtx<'_>, RStr<'_>) -> RResult<(), FfiError>,
    /// [`crate::StageHooks::restore_stage`], the stage by name (API 0.3).
    #[sabi(missing_field(option))]
    pub restore_stage: extern "C" fn(RestoreCtx<'_>, RStr<'_>) -> RResult<(), FfiError>,
    /// [`crate::VmaHandler::claims_vma`] (API 0.3).
    #[sabi(missing_field(option))]
    pub claims_vma: extern "C" fn(&FfiVmaDesc) -> RResult<bool, FfiError>,
    /// [`crate::VmaHandler::dump_vma`] (API 0.3).
    #[sabi(missing_field(option))]
    pub dump_vma: extern "C" fn(DumpCtx<'_>, &FfiVmaDesc) -> RResult<(), FfiError>,
    /// [`crate::VmaHandler::restore_vma`] (API 0.3).
    #[sabi(missing_field(option))]
    pub restore_vma: extern "C" fn(RestoreCtx<'_>, &FfiVmaDesc) -> RResult<(), FfiError>,
    /// [`crate::TaskHandler::dump_task`] (API 0.3).
    #[sabi(missing_field(option))]
    pub dump_task: extern "C" fn(DumpCtx<'_>, &FfiTaskIds) -> RResult<(), FfiError>,
    /// [`crate::TaskHandler::restore_task`] (API 0.3).
    #[sabi(missing_field(option))]
    pub restore_task: extern "C" fn(RestoreCtx<'_>, &FfiTaskIds) -> RResult<(), FfiError>,
    /// [`crate::Plugin::new_state`], the run by [`crate::RunKind::name`] (API 0.5): the
    /// plugin's state as an opaque handle, which the host lends back through the contexts'
    /// `*_plugin_state` methods and drops (running the plugin's drop) when the run ends.
    #[sabi(missing_field(option))]
    pub new_state: extern "C" fn(RStr<'_>) -> RResult<ROption<FfiStateBox>, FfiError>,
    /// Takes the host's log sink, once, right after loading (API 0.5): the plugin's `tracing`
    /// events go to criu's log from then on (see the `log` module).
    #[sabi(missing_field(option))]
    pub attach_logger: extern "C" fn(FfiLoggerBox),
}

impl RootModule for PluginModRef {
    abi_stable::declare_root_module_statics! {PluginModRef}
    const BASE_NAME: &'static str = "criu_plugin";
    const NAME: &'static str = "criu plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

/// The symbol a plugin `.so` exports (abi_stable's root module loader name); checked against
/// abi_stable's constant by a test.
#[doc(hidden)]
pub const ROOT_MODULE_SYMBOL: &str = "_1as_0lib_1header_0root_bmodule_bloader";

/// Exports `$plugin` (a `static` implementing [`crate::Plugin`]) as this `.so`'s root module.
///
/// ```text
/// pub static PLUGIN: MyPlugin = MyPlugin;
/// criu_plugin_api::export_plugin!(PLUGIN);
/// ```
/// The crate is built with `crate-type = ["cdylib"]`; the resulting `lib<name>.so` goes into
/// a `--plugin-dir`.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:path) => {
        #[doc(hidden)]
        #[derive(Debug)]
        pub struct __CriuExportedPlugin;

        impl $crate::ffi::ExportedPlugin for __CriuExportedPlugin {
            fn plugin() -> &'static dyn $crate::Plugin {
                &$plugin
            }
        }

        #[doc(hidden)]
        #[allow(unsafe_code)]
        #[unsafe(export_name = "_1as_0lib_1header_0root_bmodule_bloader")]
        pub static __CRIU_PLUGIN_ROOT: $crate::ffi::__LibHeader =
            $crate::ffi::root_module::<__CriuExportedPlugin>();
    };
}

#[doc(hidden)]
pub use abi_stable::library::LibHeader as __LibHeader;
