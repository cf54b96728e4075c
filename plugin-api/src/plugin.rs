//! Plugins, their identity, and how built-in ones register.

use crate::{FdHandler, PluginError, PluginState, RunKind, StageHooks, TaskHandler, VmaHandler};

/// Version of this contract. A plugin records the version it was built against in
/// [`PluginInfo::api_version`]; the host refuses a plugin whose major part differs
/// (the minor part grows with backward-compatible additions).
pub const API_VERSION: ApiVersion = ApiVersion { major: 0, minor: 8 };

/// A contract version: `major` changes break plugins, `minor` ones add to the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApiVersion {
    /// Incompatible changes.
    pub major: u16,
    /// Backward-compatible additions.
    pub minor: u16,
}

impl ApiVersion {
    /// Whether a plugin built against `self` can be used by a host speaking `host`.
    /// Same major; a host may be newer (larger minor) than the plugin, not older.
    pub fn is_compatible_with(self, host: ApiVersion) -> bool {
        self.major == host.major && self.minor <= host.minor
    }
}

impl std::fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Who a plugin is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PluginInfo {
    /// Unique short name (`"files"`, `"pipes"`): used in logs, memo/kept-fd keys and in the
    /// inventory of plugins a dump needed.
    pub name: &'static str,
    /// The plugin's own version (free form, usually the crate version).
    pub version: &'static str,
    /// Asking order: lower first (ties: by name). See "Priorities" in the crate docs: the
    /// built-ins use 100-299; a plugin taking a resource over from a built-in one declares
    /// 1-99, a plugin for a resource no built-in handles 300-999.
    pub priority: i32,
    /// The contract version the plugin was built against (normally [`API_VERSION`]).
    pub api_version: ApiVersion,
}

impl std::fmt::Display for PluginInfo {
    /// `files 0.1.0 (priority 200, plugin API 0.5)`: for `criu check` and logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} (priority {}, plugin API {})",
            self.name, self.version, self.priority, self.api_version
        )
    }
}

/// A resource plugin. Each capability is optional: the default says "I have none".
///
/// Plugins are `Sync` statics, never unloaded, and hold no per-dump or per-restore state
/// themselves: what one run needs lives in the plugin's own state object
/// ([`Plugin::new_state`]), in the [`crate::FileRestorer`] each restore gets and in the
/// context's kept fds.
pub trait Plugin: Sync {
    /// Name, version, priority.
    fn info(&self) -> PluginInfo;

    /// The plugin's handler for file descriptors, if it has one.
    fn fd_handler(&self) -> Option<&dyn FdHandler> {
        None
    }

    /// The plugin's whole-dump / whole-restore stage hooks, if it has any. (API 0.3)
    fn stage_hooks(&self) -> Option<&dyn StageHooks> {
        None
    }

    /// The plugin's handler for memory areas whose contents it dumps itself, if it has one.
    /// (API 0.3)
    fn vma_handler(&self) -> Option<&dyn VmaHandler> {
        None
    }

    /// The plugin's handler for per-task state, if it has one. (API 0.3)
    fn task_handler(&self) -> Option<&dyn TaskHandler> {
        None
    }

    /// Creates this plugin's state for one run (API 0.5): called once when a dump or a
    /// restore starts, before any other call of the run; the object is handed back to every
    /// call of this plugin in that run (`ctx.state::<T>()` on the context) and dropped when
    /// the run ends, failed or not. `Ok(None)` (the default): no state. An error fails the
    /// run before anything happened, naming the plugin.
    fn new_state(&self, run: RunKind) -> Result<Option<PluginState>, PluginError> {
        let _ = run;
        Ok(None)
    }
}

/// How a built-in plugin registers itself (with `inventory`):
///
/// ```text
/// static PLUGIN: MyPlugin = MyPlugin;
/// inventory::submit! { criu_plugin_api::PluginRegistration::new(&PLUGIN) }
/// ```
///
/// The binary must link the plugin crate (`use criu_plugin_files as _;`), or its
/// registration is not part of the program.
#[derive(Clone, Copy)]
pub struct PluginRegistration {
    plugin: &'static dyn Plugin,
}

impl PluginRegistration {
    /// Registers `plugin`.
    pub const fn new(plugin: &'static dyn Plugin) -> Self {
        PluginRegistration { plugin }
    }

    /// The registered plugin.
    pub fn plugin(&self) -> &'static dyn Plugin {
        self.plugin
    }
}

impl std::fmt::Debug for PluginRegistration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("PluginRegistration")
            .field(&self.plugin.info().name)
            .finish()
    }
}

inventory::collect!(PluginRegistration);

/// Every built-in plugin linked into the program, sorted by priority then name
/// (inventory's own order is unspecified).
pub fn builtin_plugins() -> Vec<&'static dyn Plugin> {
    let mut plugins: Vec<&'static dyn Plugin> = inventory::iter::<PluginRegistration>
        .into_iter()
        .map(|r| r.plugin)
        .collect();
    sort_plugins(&mut plugins);
    plugins
}

/// Sorts plugins into asking order: priority, then name. The host uses it after adding
/// dynamically loaded plugins to the built-in ones.
pub fn sort_plugins(plugins: &mut [&dyn Plugin]) {
    plugins.sort_by(|a, b| {
        let (a, b) = (a.info(), b.info());
        (a.priority, a.name).cmp(&(b.priority, b.name))
    });
}

/// Checks a plugin's contract version against this host's [`API_VERSION`]; the error text
/// names the plugin and both versions.
pub fn check_api_version(plugin: &dyn Plugin) -> Result<(), String> {
    let info = plugin.info();
    if info.api_version.is_compatible_with(API_VERSION) {
        Ok(())
    } else {
        Err(format!(
            "plugin {} {} was built for plugin API {}, this criu speaks {}; rebuild the plugin",
            info.name, info.version, info.api_version, API_VERSION
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_compatibility() {
        let v = |major, minor| ApiVersion { major, minor };
        assert!(v(0, 1).is_compatible_with(v(0, 1)));
        assert!(v(0, 1).is_compatible_with(v(0, 2)));
        assert!(!v(0, 2).is_compatible_with(v(0, 1)));
        assert!(!v(1, 0).is_compatible_with(v(0, 9)));
    }

    struct Old;
    impl Plugin for Old {
        fn info(&self) -> PluginInfo {
            PluginInfo {
                name: "old",
                version: "9",
                priority: 1,
                api_version: ApiVersion {
                    major: API_VERSION.major + 1,
                    minor: 0,
                },
            }
        }
    }

    #[test]
    fn version_check_names_the_plugin() {
        assert_eq!(Old.info().to_string(), "old 9 (priority 1, plugin API 1.0)");
        let msg = check_api_version(&Old).unwrap_err();
        assert!(msg.contains("old 9") && msg.contains("rebuild"), "{msg}");
        assert!(Old.fd_handler().is_none());
        assert!(Old.stage_hooks().is_none());
        assert!(Old.vma_handler().is_none() && Old.task_handler().is_none());
        assert!(Old.new_state(RunKind::Dump).unwrap().is_none());
    }
}
