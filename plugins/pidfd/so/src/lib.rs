//! The `pidfd` plugin exported as `libcriu_pidfd.so` for `criu --plugin-dir`.

criu_plugin_api::export_plugin!(criu_plugin_pidfd::PLUGIN);
