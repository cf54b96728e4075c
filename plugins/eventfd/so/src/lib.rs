//! The `eventfd` plugin exported as `libcriu_eventfd.so` for `criu --plugin-dir`.

criu_plugin_api::export_plugin!(criu_plugin_eventfd::PLUGIN);
