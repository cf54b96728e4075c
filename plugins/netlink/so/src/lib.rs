//! The `netlink` plugin exported as `libcriu_netlink.so` for `criu --plugin-dir`.

criu_plugin_api::export_plugin!(criu_plugin_netlink::PLUGIN);
