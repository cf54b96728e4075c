//! The `files` plugin exported as `libcriu_files.so` for `criu --plugin-dir`.

criu_plugin_api::export_plugin!(criu_plugin_files::PLUGIN);
