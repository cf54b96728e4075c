//! The `netlock` plugin exported as `libcriu_netlock.so` for `criu --plugin-dir`.

criu_plugin_api::export_plugin!(criu_plugin_netlock::PLUGIN);
