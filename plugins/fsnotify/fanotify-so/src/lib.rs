//! The `fanotify` plugin exported as `libcriu_fanotify.so` for `criu --plugin-dir`.

criu_plugin_api::export_plugin!(criu_plugin_fsnotify::FANOTIFY);
