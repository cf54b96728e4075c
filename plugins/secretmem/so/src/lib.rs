//! The `secretmem` plugin exported as `libcriu_secretmem.so` for `criu --plugin-dir`.

criu_plugin_api::export_plugin!(criu_plugin_secretmem::PLUGIN);
