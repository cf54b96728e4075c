//! Loading the plugins of `--plugin-dir`/`-L` (else `$CRIU_LIBS_DIR`, else /usr/lib/criu)
//! before a command that uses them. A refused plugin is a warning: criu goes on without it.

use criu_core::plugins::{self, PluginLoadError};

use crate::args::Options;

/// Loads every plugin of the configured directories and returns the refusals. The core logs
/// each one; when the log goes to a file, they are also printed on stderr.
pub fn load(opts: &Options) -> Vec<PluginLoadError> {
    let (dirs, explicit) = plugins::lookup_dirs(&opts.plugin_dir);
    let (_, refused) = plugins::load_dirs(&dirs, explicit);
    if crate::logging::to_file() {
        for e in &refused {
            eprintln!("Warning: {}", plugins::error_chain(e));
        }
    }
    refused
}
