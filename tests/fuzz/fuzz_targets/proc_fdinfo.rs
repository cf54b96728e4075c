//! Arbitrary text through the fdinfo parsers (`criu_core::proc::fdinfo::parse_fdinfo` and
//! the plugin test kit's `criu_plugin_api::testing::parse_fdinfo`) and the limits parser.
//! Errors are fine, panics are not.
#![no_main]

use criu_core::proc::{fdinfo, limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(info) = fdinfo::parse_fdinfo(&text) {
        for key in ["pos", "flags", "mnt_id", "ino", "eventfd-count", "", ":"] {
            let _ = info.get(key);
        }
    }
    if let Ok(info) = criu_plugin_api::testing::parse_fdinfo(&text) {
        let _ = (info.file_flags(), info.cloexec());
        for key in ["pos", "tfd", "eventfd-count", ""] {
            let _ = info.field(key);
        }
    }
    let _ = limits::parse_limits(&text);
});
