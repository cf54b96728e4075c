//! The `mqueue` plugin exported as `libcriu_mqueue.so` for `criu --plugin-dir`.

criu_plugin_api::export_plugin!(criu_plugin_mqueue::PLUGIN);
