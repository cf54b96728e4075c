//! The `unix` plugin exported as `libcriu_unix.so` for `criu --plugin-dir`.

criu_plugin_api::export_plugin!(criu_plugin_unix::PLUGIN);
