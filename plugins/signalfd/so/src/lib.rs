//! The `signalfd` plugin exported as `libcriu_signalfd.so` for `criu --plugin-dir`.

criu_plugin_api::export_plugin!(criu_plugin_signalfd::PLUGIN);
