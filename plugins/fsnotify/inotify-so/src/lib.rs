//! The `inotify` plugin exported as `libcriu_inotify.so` for `criu --plugin-dir`.

criu_plugin_api::export_plugin!(criu_plugin_fsnotify::INOTIFY);
