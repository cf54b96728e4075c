//! Arbitrary JSON documents through the crit JSON encoder: errors are fine, panics are not,
//! and whatever encodes must parse back.
#![no_main]

use criu_proto::{framing, json};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if let Ok(bytes) = json::encode(&doc) {
        framing::parse(&bytes).expect("encoded JSON parses as an image");
    }
});
