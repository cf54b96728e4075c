//! The `tty` plugin exported as `libcriu_tty.so` for `criu --plugin-dir`.

criu_plugin_api::export_plugin!(criu_plugin_tty::PLUGIN);
