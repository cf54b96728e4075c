//! Arbitrary text through the maps/smaps parsers (`criu_core::proc::maps`): errors are
//! fine, panics are not, and every accepted VMA is well formed.
#![no_main]

use criu_core::proc::maps::{self, VmFlags};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The readers hand the parsers lossy UTF-8, so the fuzzer does the same.
    let text = String::from_utf8_lossy(data);
    for parsed in [maps::parse_maps(&text), maps::parse_smaps(&text)] {
        let Ok(vmas) = parsed else { continue };
        for v in &vmas {
            assert!(v.start <= v.end, "accepted VMA with end below start: {v:?}");
            let _ = (v.len(), v.is_empty(), v.prot());
            if let Some(f) = &v.vm_flags {
                let _ = (f.has("gd"), f.has("x"), f.is_empty());
            }
        }
    }
    for (i, line) in text.lines().enumerate().take(64) {
        let _ = maps::parse_maps_line(line, i + 1);
    }
    let f = VmFlags::parse(&text);
    let _ = (f.has("rd"), f.has(""), f.has("abc"));
});
