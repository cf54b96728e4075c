//! The `pipes` plugin exported as `libcriu_pipes.so` for `criu --plugin-dir`.

criu_plugin_api::export_plugin!(criu_plugin_pipes::PLUGIN);
