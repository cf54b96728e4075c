//! The `memfd` plugin exported as `libcriu_memfd.so` for `criu --plugin-dir`.

criu_plugin_api::export_plugin!(criu_plugin_memfd::PLUGIN);
