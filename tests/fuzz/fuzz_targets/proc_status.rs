//! Arbitrary text through the `/proc/PID/status` and `/proc/PID/stat` parsers: the
//! `criu_core::proc` ones and the restore side's credentials reader
//! (`criu_core::restore::creds::parse_status`). Errors are fine, panics are not.
#![no_main]

use criu_core::proc::{stat, status};
use criu_core::restore::creds;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = status::parse_status(&text);
    let _ = stat::parse_stat(&text);
    let _ = creds::parse_status(&text);
});
