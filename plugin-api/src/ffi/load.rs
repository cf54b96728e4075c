//! Loading a plugin `.so` and saying, in one line, why one was refused: not a plugin at
//! all, built against another `criu-plugin-api` release (naming the plugin's and criu's
//! versions and what to upgrade or rebuild), or with another layout (naming the first type
//! or field that differs, from abi_stable's structured report rather than its text).

use std::path::{Path, PathBuf};

use abi_stable::StableAbi;
use abi_stable::abi_stability::abi_checking::{
    AbiInstability, AbiInstabilityErrors, check_layout_compatibility,
};
use abi_stable::library::{LibHeader, LibraryError, lib_header_from_path};
use abi_stable::sabi_types::VersionNumber;
use abi_stable::type_layout::{TLFieldOrFunction, TypeLayout};

use super::PluginModRef;
use super::host::{LoadedPlugin, from_module};
use crate::{API_VERSION, ApiVersion, Plugin, PluginError};

/// This criu's `criu-plugin-api` release.
const HOST_RELEASE: &str = env!("CARGO_PKG_VERSION");

/// Why a plugin file was not loaded. Every message is one line naming the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// `dlopen` failed (not an ELF file, a missing dependency...).
    #[error("cannot load plugin {path}: {reason}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The loader's message, on one line.
        reason: String,
    },
    /// A shared library without a criu plugin's root module.
    #[error("not a criu plugin: {path}")]
    NotAPlugin {
        /// The file.
        path: PathBuf,
    },
    /// Built against another release of `criu-plugin-api` than this criu's.
    #[error(
        "plugin {path} was built against criu-plugin-api {plugin}, this criu uses criu-plugin-api {host}{}: {}",
        .difference.as_ref().map(|d| format!(" (first difference: {d})")).unwrap_or_default(),
        release_advice(.plugin, .host)
    )]
    Release {
        /// The file.
        path: PathBuf,
        /// The plugin's `criu-plugin-api` release.
        plugin: String,
        /// This criu's `criu-plugin-api` release.
        host: &'static str,
        /// The first type or field that differs, when the layouts differ too.
        difference: Option<String>,
    },
    /// Same `criu-plugin-api` release, another layout: the interface changed without a
    /// version bump (a development build).
    #[error(
        "plugin {path} was built against a criu-plugin-api {version} with another ABI layout than this criu's ({difference}); rebuild the plugin against this criu's criu-plugin-api"
    )]
    Layout {
        /// The file.
        path: PathBuf,
        /// The `criu-plugin-api` release both claim.
        version: &'static str,
        /// The first type or field that differs.
        difference: String,
    },
    /// abi_stable refused the library for another reason (its own ABI header, the C ABI,
    /// the root module's constructor).
    #[error("cannot load plugin {path}: {reason}")]
    Library {
        /// The file.
        path: PathBuf,
        /// abi_stable's report, on one line.
        reason: String,
    },
    /// The plugin was built for an incompatible [`API_VERSION`].
    #[error(
        "plugin {name} {version} ({path}) was built for plugin API {plugin_api}, this criu speaks plugin API {host_api}: {}",
        api_advice(*.plugin_api, *.host_api)
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

/// What to do about a plugin built against `plugin_api` refused by a criu speaking `host_api`.
fn api_advice(plugin_api: ApiVersion, host_api: ApiVersion) -> &'static str {
    if (plugin_api.major, plugin_api.minor) > (host_api.major, host_api.minor) {
        "the plugin is newer than this criu; upgrade criu"
    } else {
        "rebuild the plugin against this criu's criu-plugin-api"
    }
}

/// What to do about a plugin built against `criu-plugin-api` release `plugin`.
fn release_advice(plugin: &str, host: &str) -> &'static str {
    match (parse_release(plugin), parse_release(host)) {
        (Some(p), Some(h)) if (p.major, p.minor, p.patch) > (h.major, h.minor, h.patch) => {
            "the plugin is newer than this criu; upgrade criu"
        }
        _ => "rebuild the plugin against this criu's criu-plugin-api",
    }
}

fn parse_release(v: &str) -> Option<VersionNumber> {
    let mut parts = v.split(['.', '-', '+']).map(|p| p.parse::<u32>().ok());
    Some(VersionNumber {
        major: parts.next()??,
        minor: parts.next()??,
        patch: parts.next()??,
    })
}

/// Loads the plugin in `path`: abi_stable's checks, then the contract version. The library
/// stays loaded for the life of the process (also when refused: unloading Rust code is not
/// safe in general).
pub fn load_plugin(path: &Path) -> Result<&'static LoadedPlugin, LoadError> {
    let header = lib_header_from_path(path).map_err(|e| refusal(path, None, e))?;
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
            let refused = || refusal(path, Some(header), LibraryError::AbiInstability(report));
            if !older {
                return Err(refused());
            }
            // SAFETY: the plugin's root module layout was just checked against ours (as the
            // older side of a prefix-type extension: same leading fields, same types); the
            // fields it lacks are optional and read through `Option` accessors.
            let module = unsafe { header.init_root_module_with_unchecked_layout::<PluginModRef>() }
                .map_err(|e| refusal(path, Some(header), e))?;
            let plugin = from_module(module, path)?;
            if plugin.info().api_version.minor >= API_VERSION.minor {
                return Err(refused());
            }
            tracing::info!(
                plugin = plugin.info().name,
                api = %plugin.info().api_version,
                "plugin built against an older plugin API: loaded with its subset"
            );
            Ok(plugin)
        }
        Err(e) => Err(refusal(path, Some(header), e)),
    }
}

/// The [`LoadError`] for abi_stable's `error` on `path` (whose header, once read, gives the
/// plugin's release and layout).
fn refusal(path: &Path, header: Option<&LibHeader>, error: LibraryError) -> LoadError {
    let path = path.to_path_buf();
    match error {
        LibraryError::OpenError { err, .. } => LoadError::Open {
            path,
            reason: one_line(&err.to_string()),
        },
        LibraryError::GetSymbolError { .. } => LoadError::NotAPlugin { path },
        LibraryError::IncompatibleVersionNumber { actual_version, .. } => LoadError::Release {
            path,
            plugin: actual_version.to_string(),
            host: HOST_RELEASE,
            difference: None,
        },
        LibraryError::AbiInstability(report) => {
            tracing::debug!(file = %path.display(), report = %report, "plugin ABI layout mismatch");
            let errors = header.and_then(LibHeader::layout).and_then(|theirs| {
                check_layout_compatibility(<PluginModRef as StableAbi>::LAYOUT, theirs).err()
            });
            let plugin = header.map(|h| h.version_strings().version.to_string());
            let difference = errors.as_ref().and_then(first_difference);
            match plugin.filter(|v| v != HOST_RELEASE) {
                Some(plugin) => LoadError::Release {
                    path,
                    plugin,
                    host: HOST_RELEASE,
                    difference,
                },
                None => LoadError::Layout {
                    path,
                    version: HOST_RELEASE,
                    difference: difference.unwrap_or_else(|| "layouts differ".into()),
                },
            }
        }
        other => LoadError::Library {
            path,
            reason: one_line(&other.to_string()),
        },
    }
}

/// abi_stable's multi-line texts (with tabs, sometimes a NUL) as one line.
fn one_line(text: &str) -> String {
    text.split(|c: char| c.is_whitespace() || c == '\0')
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The first difference abi_stable found between criu's layout and the plugin's, as one
/// line naming the type and field; differences of package version only are left out (the
/// releases are named once, by the caller). The deepest error is the cause: a struct that
/// grew also changes the size of every struct holding it. `None` when there is no other
/// difference.
pub(crate) fn first_difference(errors: &AbiInstabilityErrors) -> Option<String> {
    let (e, ai) = errors
        .errors
        .iter()
        .filter_map(|e| {
            let ai = e
                .errs
                .iter()
                .find(|ai| !matches!(ai, AbiInstability::PackageVersion(_)))?;
            Some((e, ai))
        })
        .rev()
        .max_by_key(|(e, _)| e.stack_trace.len())?;
    let fields: Vec<_> = e
        .stack_trace
        .iter()
        .filter_map(|ef| match (&ef.expected, &ef.found) {
            (TLFieldOrFunction::Field(x), TLFieldOrFunction::Field(y)) => Some((*x, *y)),
            _ => None,
        })
        .collect();
    let (ours, theirs) = match fields.last() {
        Some((x, y)) => (x.layout(), y.layout()),
        None => (errors.interface, errors.implementation),
    };
    let mut line = format!("type {}", ours.name());
    // `PluginMod.claims`: the named fields that lead to the type (abi_stable also steps
    // through unnamed ones: `0` of a reference, `,` of a parameter), after the type
    // holding the first of them.
    let named = |n: &str| n.starts_with(|c: char| c.is_alphabetic() || c == '_');
    if let Some(k) = fields.iter().position(|(x, _)| named(x.name())) {
        let root = match k {
            0 => errors.interface.name(),
            _ => fields[k - 1].0.layout().name(),
        };
        let route: Vec<&str> = fields[k..]
            .iter()
            .map(|(x, _)| x.name())
            .filter(|n| named(n))
            .collect();
        line.push_str(&format!(" (reached from {root}.{})", route.join(".")));
    }
    line.push_str(": ");
    line.push_str(&describe(ai, ours, theirs));
    Some(line)
}

/// One abi_stable error on a type of criu (`ours`) and the plugin (`theirs`).
fn describe(ai: &AbiInstability, ours: &TypeLayout, theirs: &TypeLayout) -> String {
    let fields = field_difference(ours, theirs);
    let with_fields = |s: String| match &fields {
        Some(f) => format!("{f}; {s}"),
        None => s,
    };
    match ai {
        AbiInstability::Size(v) => with_fields(format!(
            "{} bytes in the plugin, {} in criu",
            v.found, v.expected
        )),
        AbiInstability::Alignment(v) => with_fields(format!(
            "aligned to {} bytes in the plugin, {} in criu",
            v.found, v.expected
        )),
        AbiInstability::FieldCountMismatch(v) => with_fields(format!(
            "{} fields in the plugin, {} in criu",
            v.found, v.expected
        )),
        AbiInstability::UnexpectedField(v) => format!(
            "field `{}: {}` in the plugin where criu has `{}: {}`",
            v.found.name(),
            v.found.layout().name(),
            v.expected.name(),
            v.expected.layout().name()
        ),
        AbiInstability::Name(v) => format!("{} in the plugin, {} in criu", v.found, v.expected),
        AbiInstability::TooManyVariants(v) => {
            format!("{} variants in the plugin, {} in criu", v.found, v.expected)
        }
        other => {
            // The variant's name (`MismatchedPrimitive`...) without its long payload.
            let debug = format!("{other:?}");
            let kind = debug.split(['(', ' ', '{']).next().unwrap_or("layout");
            with_fields(format!("{kind} differs"))
        }
    }
}

/// The first field that differs between two struct-like layouts, when both have fields.
fn field_difference(ours: &TypeLayout, theirs: &TypeLayout) -> Option<String> {
    let (ours, theirs) = (ours.get_fields()?.to_vec(), theirs.get_fields()?.to_vec());
    let show =
        |f: &abi_stable::type_layout::TLField| format!("`{}: {}`", f.name(), f.layout().name());
    for i in 0..ours.len().max(theirs.len()) {
        match (ours.get(i), theirs.get(i)) {
            (Some(o), Some(t))
                if o.name() == t.name() && o.layout().name() == t.layout().name() => {}
            (Some(o), Some(t)) => {
                return Some(format!(
                    "field {} is {} in the plugin, {} in criu",
                    i + 1,
                    show(t),
                    show(o)
                ));
            }
            (None, Some(t)) => {
                return Some(format!(
                    "the plugin's has field {} that criu's lacks",
                    show(t)
                ));
            }
            (Some(o), None) => {
                return Some(format!(
                    "criu's has field {} that the plugin's lacks",
                    show(o)
                ));
            }
            (None, None) => break,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advice_points_at_the_older_side() {
        let v = |major, minor| ApiVersion { major, minor };
        assert!(api_advice(v(0, 5), v(0, 4)).contains("upgrade criu"));
        assert!(api_advice(v(1, 0), v(0, 4)).contains("upgrade criu"));
        assert!(api_advice(v(0, 3), v(1, 0)).contains("rebuild the plugin"));
        assert!(release_advice("0.2.0", "0.1.0").contains("upgrade criu"));
        assert!(release_advice("0.1.1", "0.1.0").contains("upgrade criu"));
        assert!(release_advice("0.0.9", "0.1.0").contains("rebuild the plugin"));
        assert!(release_advice("garbage", "0.1.0").contains("rebuild the plugin"));
    }

    #[test]
    fn multi_line_reports_become_one_line() {
        assert_eq!(
            one_line("\nCould load symbol:\n\tfoo\0\nin library:\n\t/x.so\n"),
            "Could load symbol: foo in library: /x.so"
        );
    }

    /// Two versions of one ABI type, as an old and a new plugin build would see it.
    mod v1 {
        #[repr(C)]
        #[derive(abi_stable::StableAbi)]
        pub struct Desc {
            pub pid: i32,
            pub fd: i32,
        }
        #[repr(C)]
        #[derive(abi_stable::StableAbi)]
        pub struct Root {
            pub info: u32,
            pub desc: Desc,
        }
    }
    mod v2 {
        #[repr(C)]
        #[derive(abi_stable::StableAbi)]
        pub struct Desc {
            pub pid: i32,
            pub fd: i32,
            pub extra: u64,
        }
        #[repr(C)]
        #[derive(abi_stable::StableAbi)]
        pub struct Root {
            pub info: u32,
            pub desc: Desc,
        }
    }
    mod v3 {
        #[repr(C)]
        #[derive(abi_stable::StableAbi)]
        pub struct Desc {
            pub pid: i32,
            pub flags: i32,
        }
        #[repr(C)]
        #[derive(abi_stable::StableAbi)]
        pub struct Root {
            pub info: u32,
            pub desc: Desc,
        }
    }

    #[test]
    fn the_first_differing_type_and_field_is_named() {
        let errs = check_layout_compatibility(
            <v1::Root as StableAbi>::LAYOUT,
            <v2::Root as StableAbi>::LAYOUT,
        )
        .unwrap_err();
        let line = first_difference(&errs).expect("a difference");
        assert_eq!(
            line,
            "type Desc (reached from Root.desc): the plugin's has field `extra: u64` that \
             criu's lacks; 16 bytes in the plugin, 8 in criu",
            "{line}"
        );
        let errs = check_layout_compatibility(
            <v1::Root as StableAbi>::LAYOUT,
            <v3::Root as StableAbi>::LAYOUT,
        )
        .unwrap_err();
        let line = first_difference(&errs).expect("a difference");
        assert!(
            line.starts_with("type Desc (reached from Root.desc): field `flags: i32` in the plugin where criu has `fd: i32`"),
            "{line}"
        );
    }
}
