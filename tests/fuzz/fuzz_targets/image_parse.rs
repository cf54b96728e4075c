//! Arbitrary bytes through the framing parser and the crit JSON decoder: never a panic,
//! and whatever parses must encode back to the same bytes. The same bytes also go through
//! the pages digest reader (`criu-rs-pages-digest.bin`): whatever it accepts re-encodes.
#![no_main]

use criu_proto::json::{self, DecodeOptions};
use criu_proto::{ImageKind, framing};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(files) = criu_core::image::digest::decode(std::path::Path::new("fuzz"), data) {
        let again = criu_core::image::digest::encode(&files);
        assert_eq!(again, data, "digest round trip");
    }
    if let Ok(img) = framing::parse(data) {
        let again = img.encode().expect("a parsed image encodes");
        assert_eq!(again, data, "framing round trip");
        for pretty in [false, true] {
            let doc = json::decode(
                data,
                DecodeOptions {
                    pretty,
                    no_payload: false,
                },
            )
            .expect("a parsed image decodes to JSON");
            // JSON of valid input re-encodes; proto2 lets a message omit required fields,
            // which our JSON encoder refuses, so only check when it accepts.
            if let Ok(bytes) = json::encode(&doc) {
                let _ = framing::parse(&bytes).expect("our own encoding parses");
            }
            let _ = json::python_json(&doc, pretty.then_some(4));
        }
        let _ = json::decode(
            data,
            DecodeOptions {
                pretty: true,
                no_payload: true,
            },
        );
        let _ = json::info(data);
    }
    // Every framed kind, forced.
    if let Some(&b) = data.first() {
        let kinds = ImageKind::ALL;
        let kind = kinds[b as usize % kinds.len()];
        let _ = framing::parse_as(kind, &data[1..]);
    }
});
