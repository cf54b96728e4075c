//! Arbitrary text through `/proc/PID/mountinfo` parsing and octal unescaping
//! (`criu_core::proc::mountinfo`). Errors are fine, panics are not.
#![no_main]

use criu_core::proc::mountinfo;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = mountinfo::parse_mountinfo(&text);
    for (i, line) in text.lines().enumerate().take(64) {
        let _ = mountinfo::parse_mountinfo_line(line, i + 1);
    }
    let _ = mountinfo::unescape(&text);
});
