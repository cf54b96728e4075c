//! The `timerfd` plugin exported as `libcriu_timerfd.so` for `criu --plugin-dir`.

criu_plugin_api::export_plugin!(criu_plugin_timerfd::PLUGIN);
