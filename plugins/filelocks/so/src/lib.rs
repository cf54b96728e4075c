//! The `filelocks` plugin exported as `libcriu_filelocks.so` for `criu --plugin-dir`.

criu_plugin_api::export_plugin!(criu_plugin_filelocks::PLUGIN);
