//! The `packet` plugin exported as `libcriu_packet.so` for `criu --plugin-dir`.

criu_plugin_api::export_plugin!(criu_plugin_packet::PLUGIN);
