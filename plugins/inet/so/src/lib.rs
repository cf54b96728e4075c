//! The `inet` plugin exported as `libcriu_inet.so` for `criu --plugin-dir`.

criu_plugin_api::export_plugin!(criu_plugin_inet::PLUGIN);
