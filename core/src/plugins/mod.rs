//! The host side of the plugin system: which directories plugins are loaded from, the
//! security checks on them, loading every `.so` in them, and the combined set of built-in
//! and loaded plugins the dump and restore use ([`all`]).
//!
//! Loading goes through [`criu_plugin_api::ffi::load_plugin`] (abi_stable's layout and
//! version checks, then the contract version). A plugin that fails any check is refused
//! with a [`PluginLoadError`] naming the file and the reason, and criu goes on without it.
//! Loaded plugins are registered process-wide (like `dlopen` itself) and never unloaded.

mod security;
pub(crate) mod services;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use criu_plugin_api::ffi::{LoadError, LoadedPlugin, load_plugin};
use criu_plugin_api::{Plugin, PluginInfo, builtin_plugins, fd_type_name, sort_plugins};

pub use security::untrusted_reason;

/// CRIU's default plugin directory (`CR_PLUGIN_DEFAULT`).
pub const DEFAULT_PLUGIN_DIR: &str = "/usr/lib/criu";

/// The environment variable CRIU consults when no `--libdir` is given.
pub const PLUGIN_DIR_ENV: &str = "CRIU_LIBS_DIR";

/// Why a plugin (or a plugin directory) was not loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PluginLoadError {
    /// The directory or file failed the ownership/permission check.
    #[error("refusing {path}: {reason}")]
    Untrusted {
        /// The directory or file.
        path: PathBuf,
        /// Why (owner, mode).
        reason: String,
    },
    /// The directory could not be listed.
    #[error("cannot read plugin directory {path}")]
    ReadDir {
        /// The directory.
        path: PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// abi_stable or the contract version refused the file, or it failed to describe itself.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// A plugin of the same name is already built in or loaded.
    #[error("not using plugin {name} from {path}: a plugin of that name is already {origin}")]
    Duplicate {
        /// The plugin's name.
        name: String,
        /// The file.
        path: PathBuf,
        /// Where the first one came from.
        origin: Origin,
    },
}

/// Where a plugin comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Linked into the binary.
    BuiltIn,
    /// Loaded from this `.so` file.
    File(PathBuf),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::BuiltIn => f.write_str("built-in"),
            Origin::File(p) => match p.file_name() {
                Some(name) => write!(f, "{}", Path::new(name).display()),
                None => write!(f, "{}", p.display()),
            },
        }
    }
}

/// The plugin directories to use, in CRIU's order: the `--plugin-dir`/`-L` options when
/// given, else `$CRIU_LIBS_DIR`, else [`DEFAULT_PLUGIN_DIR`]. The second value says whether
/// the directories were asked for explicitly (a missing default directory is not an error).
pub fn lookup_dirs(cli: &[PathBuf]) -> (Vec<PathBuf>, bool) {
    if !cli.is_empty() {
        return (cli.to_vec(), true);
    }
    match std::env::var_os(PLUGIN_DIR_ENV) {
        Some(dir) if !dir.is_empty() => (vec![PathBuf::from(dir)], true),
        _ => (vec![PathBuf::from(DEFAULT_PLUGIN_DIR)], false),
    }
}

static LOADED: Mutex<Vec<&'static LoadedPlugin>> = Mutex::new(Vec::new());

/// Every directory [`load_dirs`] was given, in order (for "where plugins are looked for").
static SEARCHED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn loaded() -> Vec<&'static LoadedPlugin> {
    LOADED.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Loads every `*.so` of `dirs` (sorted by file name) and registers the plugins for [`all`].
/// Returns what was loaded now and every refusal; a missing directory is skipped when
/// `explicit` is false (CRIU's default directory need not exist).
pub fn load_dirs(
    dirs: &[PathBuf],
    explicit: bool,
) -> (Vec<&'static LoadedPlugin>, Vec<PluginLoadError>) {
    let (mut new, mut refused) = (Vec::new(), Vec::new());
    {
        let mut searched = SEARCHED.lock().unwrap_or_else(|p| p.into_inner());
        for dir in dirs {
            if !searched.contains(dir) {
                searched.push(dir.clone());
            }
        }
    }
    for dir in dirs {
        if !explicit && !dir.exists() {
            tracing::debug!(dir = %dir.display(), "default plugin directory absent");
            continue;
        }
        match so_files(dir) {
            Ok(files) => {
                for file in files {
                    match load_file(&file) {
                        Ok(Some(p)) => new.push(p),
                        Ok(None) => {}
                        Err(e) => refused.push(e),
                    }
                }
            }
            Err(e) => refused.push(e),
        }
    }
    for e in &refused {
        tracing::warn!(error = %error_chain(e), "plugin not loaded");
    }
    (new, refused)
}

/// `e` and its sources, `": "`-separated: a refusal's reason is often in the source
/// (abi_stable's version or layout report).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(e) = src {
        s.push_str(": ");
        s.push_str(&e.to_string());
        src = e.source();
    }
    s
}

/// The `.so` files of a trusted directory, sorted.
fn so_files(dir: &Path) -> Result<Vec<PathBuf>, PluginLoadError> {
    if let Some(reason) = untrusted_reason(dir, "plugin directory") {
        return Err(PluginLoadError::Untrusted {
            path: dir.to_path_buf(),
            reason,
        });
    }
    let read = |source| PluginLoadError::ReadDir {
        path: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read)? {
        let path = entry.map_err(read)?.path();
        if path.extension().is_some_and(|e| e == "so") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Loads one plugin file (after the trust check) and registers it. `Ok(None)`: this very
/// file was loaded before (the same process loading a directory twice).
pub fn load_file(path: &Path) -> Result<Option<&'static LoadedPlugin>, PluginLoadError> {
    if let Some(reason) = untrusted_reason(path, "plugin file") {
        return Err(PluginLoadError::Untrusted {
            path: path.to_path_buf(),
            reason,
        });
    }
    let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mut registry = LOADED.lock().unwrap_or_else(|p| p.into_inner());
    if registry
        .iter()
        .any(|p| std::fs::canonicalize(p.path()).is_ok_and(|c| c == canonical))
    {
        return Ok(None);
    }
    let plugin = load_plugin(path)?;
    let name = plugin.info().name;
    let clash = if builtin_plugins().iter().any(|b| b.info().name == name) {
        Some(Origin::BuiltIn)
    } else {
        registry
            .iter()
            .find(|p| p.info().name == name)
            .map(|p| Origin::File(p.path().to_path_buf()))
    };
    if let Some(origin) = clash {
        return Err(PluginLoadError::Duplicate {
            name: name.into(),
            path: path.to_path_buf(),
            origin,
        });
    }
    tracing::info!(plugin = name, file = %path.display(), "plugin loaded");
    registry.push(plugin);
    Ok(Some(plugin))
}

/// Plugins the host program adds while it runs (the RPC service's notifier), beside the
/// built-in and loaded ones.
static HOST: Mutex<Vec<&'static dyn Plugin>> = Mutex::new(Vec::new());

/// Adds `plugin` to [`all`] for the rest of this process: how the program around the core
/// (`criu swrk`'s notifications) gets stage hooks without being a plugin crate. A plugin of
/// the same name already added is not added twice.
pub fn register_host_plugin(plugin: &'static dyn Plugin) {
    let mut host = HOST.lock().unwrap_or_else(|p| p.into_inner());
    if !host.iter().any(|p| p.info().name == plugin.info().name) {
        host.push(plugin);
    }
}

/// Every plugin the dump and restore use: the built-in ones, the loaded ones and the host's
/// ([`register_host_plugin`]), in asking order (priority, then name).
pub fn all() -> Vec<&'static dyn Plugin> {
    let mut plugins = builtin_plugins();
    plugins.extend(loaded().into_iter().map(|p| p as &'static dyn Plugin));
    plugins.extend(
        HOST.lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .copied(),
    );
    sort_plugins(&mut plugins);
    plugins
}

/// Where plugins were looked for in this process, as a clause for error messages:
/// `"plugin dirs searched: /a, /b (--plugin-dir/-L, else $CRIU_LIBS_DIR, else /usr/lib/criu)"`.
pub fn searched_dirs() -> String {
    let dirs = SEARCHED.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let order = format!("--plugin-dir/-L, else ${PLUGIN_DIR_ENV}, else {DEFAULT_PLUGIN_DIR}");
    if dirs.is_empty() {
        return format!("no plugin dir was searched ({order})");
    }
    let list: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    format!("plugin dirs searched: {} ({order})", list.join(", "))
}

/// The names among `used` (plugins that dumped something) to record in `inventory.img`'s
/// `plugins_entry`: those loaded from a `.so`. Plugins linked into criu are part of every
/// criu-rs and write CRIU's own entries; recording them would make CRIU refuse the images
/// ("Missing required plugin") for nothing.
pub fn inventory_plugins<'a>(used: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let files = loaded();
    let mut names: Vec<String> = used
        .into_iter()
        .filter(|n| files.iter().any(|l| l.info().name == *n))
        .map(str::to_string)
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The plugins `inventory.img` records that are not among `plugins` (what restore needs and
/// lacks).
pub fn missing_plugins(recorded: &[String], plugins: &[&'static dyn Plugin]) -> Vec<String> {
    recorded
        .iter()
        .filter(|name| !plugins.iter().any(|p| p.info().name == name.as_str()))
        .cloned()
        .collect()
}

/// One line of `criu check --plugins`.
#[derive(Debug, Clone)]
pub struct PluginListing {
    /// Name, version, priority, contract version.
    pub info: PluginInfo,
    /// Built-in or the `.so` file.
    pub origin: Origin,
    /// What it handles (`fd types: REG, PIPE`), or `"nothing"`.
    pub handles: String,
}

impl std::fmt::Display for PluginListing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let i = &self.info;
        write!(
            f,
            "{} {} [{}] plugin API {}, priority {}: {}",
            i.name, i.version, self.origin, i.api_version, i.priority, self.handles
        )
    }
}

/// Every plugin of [`all`], described.
pub fn listing() -> Vec<PluginListing> {
    let files = loaded();
    all()
        .into_iter()
        .map(|p| {
            let info = p.info();
            let origin = files
                .iter()
                .find(|l| l.info().name == info.name)
                .map_or(Origin::BuiltIn, |l| Origin::File(l.path().to_path_buf()));
            let handles = handles(p);
            PluginListing {
                info,
                origin,
                handles,
            }
        })
        .collect()
}

/// What `plugin` handles, for `criu check --plugins`: `"fd types REG, PIPE; dump stages
/// after-freeze; restore stages before-resume; VMAs secretmem; task state shadow stack"`,
/// or `"nothing"`.
pub fn handles(plugin: &dyn Plugin) -> String {
    let mut parts = Vec::new();
    if let Some(h) = plugin.fd_handler() {
        let types: Vec<String> = h
            .fd_types()
            .iter()
            .map(|&t| fd_type_name(t as i32))
            .collect();
        parts.push(format!("fd types {}", types.join(", ")));
    }
    if let Some(h) = plugin.stage_hooks() {
        let names = |v: Vec<&str>| v.join(", ");
        if !h.dump_stages().is_empty() {
            let v = h.dump_stages().iter().map(|s| s.name()).collect();
            parts.push(format!("dump stages {}", names(v)));
        }
        if !h.restore_stages().is_empty() {
            let v = h.restore_stages().iter().map(|s| s.name()).collect();
            parts.push(format!("restore stages {}", names(v)));
        }
    }
    if let Some(h) = plugin.vma_handler() {
        parts.push(format!("VMAs {}", h.vma_kinds().join(", ")));
    }
    if let Some(h) = plugin.task_handler() {
        parts.push(format!("task state {}", h.task_state().join(", ")));
    }
    if parts.is_empty() {
        "nothing".into()
    } else {
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_order_is_criu_s() {
        let cli = vec![PathBuf::from("/a"), PathBuf::from("/b")];
        assert_eq!(lookup_dirs(&cli), (cli.clone(), true));
        // Without options: the environment or the default (the test cannot set the
        // environment safely while other tests run; check the default only when unset).
        if std::env::var_os(PLUGIN_DIR_ENV).is_none() {
            assert_eq!(
                lookup_dirs(&[]),
                (vec![PathBuf::from(DEFAULT_PLUGIN_DIR)], false)
            );
        }
    }

    #[test]
    fn absent_default_dir_is_fine_explicit_one_is_not() {
        let dir = PathBuf::from("/nonexistent/criu-plugins-test");
        let (new, refused) = load_dirs(std::slice::from_ref(&dir), false);
        assert!(new.is_empty() && refused.is_empty());
        let (_, refused) = load_dirs(&[dir], true);
        assert!(
            refused[0].to_string().contains("cannot stat"),
            "{}",
            refused[0]
        );
    }

    fn private_dir(name: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("criu-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        dir
    }

    #[test]
    fn a_file_dlopen_rejects_is_refused_on_one_line() {
        let dir = private_dir("notelf");
        let file = dir.join("libjunk.so");
        std::fs::write(&file, b"not an ELF file").unwrap();
        let (new, refused) = load_dirs(std::slice::from_ref(&dir), true);
        assert!(new.is_empty());
        let msg = error_chain(&refused[0]);
        assert!(
            msg.starts_with(&format!("cannot load plugin {}: ", file.display()))
                && !msg.contains('\n')
                && !msg.contains('\0'),
            "{msg:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A real shared library that is not a plugin (built from a one-line C file): one line,
    /// "not a criu plugin: <path>", instead of abi_stable's multi-line symbol report.
    #[test]
    fn a_shared_library_that_is_no_plugin_is_named() {
        let dir = private_dir("notplugin");
        let src = dir.join("lib.c");
        std::fs::write(&src, "int criu_test_answer(void) { return 42; }\n").unwrap();
        let so = dir.join("libnotaplugin.so");
        let built = std::process::Command::new("cc")
            .args(["-shared", "-fPIC", "-o"])
            .arg(&so)
            .arg(&src)
            .status();
        if !built.is_ok_and(|s| s.success()) {
            eprintln!("skipping a_shared_library_that_is_no_plugin_is_named: no C compiler");
            std::fs::remove_dir_all(&dir).unwrap();
            return;
        }
        let (new, refused) = load_dirs(std::slice::from_ref(&dir), true);
        assert!(new.is_empty());
        let msg = error_chain(&refused[0]);
        assert_eq!(msg, format!("not a criu plugin: {}", so.display()));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    struct Staged;
    impl Plugin for Staged {
        fn info(&self) -> PluginInfo {
            PluginInfo {
                name: "staged",
                version: "1",
                priority: 1,
                api_version: criu_plugin_api::API_VERSION,
            }
        }
        fn stage_hooks(&self) -> Option<&dyn criu_plugin_api::StageHooks> {
            Some(self)
        }
    }
    impl criu_plugin_api::StageHooks for Staged {
        fn dump_stages(&self) -> &[criu_plugin_api::DumpStage] {
            &[criu_plugin_api::DumpStage::BeforeFreeze]
        }
        fn restore_stages(&self) -> &[criu_plugin_api::RestoreStage] {
            &[
                criu_plugin_api::RestoreStage::AfterResume,
                criu_plugin_api::RestoreStage::Failed,
            ]
        }
    }
    struct Full;
    impl Plugin for Full {
        fn info(&self) -> PluginInfo {
            Staged.info()
        }
        fn vma_handler(&self) -> Option<&dyn criu_plugin_api::VmaHandler> {
            Some(self)
        }
        fn task_handler(&self) -> Option<&dyn criu_plugin_api::TaskHandler> {
            Some(self)
        }
    }
    impl criu_plugin_api::VmaHandler for Full {
        fn vma_kinds(&self) -> &[&str] {
            &["secretmem", "io_uring rings"]
        }
        fn claims_vma(&self, _: &criu_plugin_api::VmaDesc) -> bool {
            false
        }
        fn dump_vma(
            &self,
            _: &mut dyn criu_plugin_api::DumpContext,
            _: &criu_plugin_api::VmaDesc,
        ) -> Result<(), criu_plugin_api::PluginError> {
            Ok(())
        }
        fn restore_vma(
            &self,
            _: &mut dyn criu_plugin_api::RestoreContext,
            _: &criu_plugin_api::VmaDesc,
        ) -> Result<(), criu_plugin_api::PluginError> {
            Ok(())
        }
    }
    impl criu_plugin_api::TaskHandler for Full {
        fn task_state(&self) -> &[&str] {
            &["shadow stack"]
        }
        fn dump_task(
            &self,
            _: &mut dyn criu_plugin_api::DumpContext,
            _: &criu_plugin_api::TaskIds,
        ) -> Result<(), criu_plugin_api::PluginError> {
            Ok(())
        }
        fn restore_task(
            &self,
            _: &mut dyn criu_plugin_api::RestoreContext,
            _: &criu_plugin_api::TaskIds,
        ) -> Result<(), criu_plugin_api::PluginError> {
            Ok(())
        }
    }
    struct Bare;
    impl Plugin for Bare {
        fn info(&self) -> PluginInfo {
            Staged.info()
        }
    }

    #[test]
    fn listing_names_stages() {
        assert_eq!(
            handles(&Staged),
            "dump stages before-freeze; restore stages after-resume, restore-failed"
        );
        assert_eq!(handles(&Bare), "nothing");
        assert_eq!(
            handles(&Full),
            "VMAs secretmem, io_uring rings; task state shadow stack"
        );
    }

    #[test]
    fn inventory_keeps_loaded_plugins_only_and_restore_names_the_missing() {
        // Nothing loaded from a file in this test binary: built-in names are not recorded.
        assert!(inventory_plugins(["files", "pipes", "files"]).is_empty());
        let recorded = vec![
            "staged".to_string(),
            "gpu".to_string(),
            "netlock".to_string(),
        ];
        let here: Vec<&'static dyn Plugin> = vec![&Staged];
        assert_eq!(missing_plugins(&recorded, &here), ["gpu", "netlock"]);
        assert!(missing_plugins(&[], &here).is_empty());
    }

    #[test]
    fn searched_dirs_name_every_dir_given_and_the_order() {
        let dir = PathBuf::from("/nonexistent/criu-searched-test");
        load_dirs(std::slice::from_ref(&dir), false);
        let text = searched_dirs();
        assert!(
            text.starts_with("plugin dirs searched: ")
                && text.contains("/nonexistent/criu-searched-test")
                && text.ends_with("(--plugin-dir/-L, else $CRIU_LIBS_DIR, else /usr/lib/criu)"),
            "{text}"
        );
    }

    #[test]
    fn builtins_are_listed() {
        // criu-core alone links no plugin crate; the list is whatever is registered.
        for l in listing() {
            assert_eq!(l.origin, Origin::BuiltIn);
            assert!(!l.to_string().is_empty());
        }
    }
}
