//! The `epoll` plugin exported as `libcriu_epoll.so` for `criu --plugin-dir`.

criu_plugin_api::export_plugin!(criu_plugin_epoll::PLUGIN);
