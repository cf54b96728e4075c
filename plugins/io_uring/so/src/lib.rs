//! The `io_uring` plugin exported as `libcriu_io_uring.so` for `criu --plugin-dir`.

criu_plugin_api::export_plugin!(criu_plugin_io_uring::PLUGIN);
