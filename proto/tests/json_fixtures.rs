//! Our crit JSON equals Debian crit 3.17's `.json` of every CRIU 4.2 fixture, modulo the
//! documented schema differences between 3.17 and 4.2; and JSON encodes back byte for byte.

use std::path::{Path, PathBuf};

use criu_proto::json::{self, DecodeOptions};
use serde_json::Value;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/criu-4.2-sample")
}

fn first_difference(path: &str, a: &Value, b: &Value) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let kx: Vec<_> = x.keys().collect();
            let ky: Vec<_> = y.keys().collect();
            if kx != ky {
                return Some(format!("{path}: keys {kx:?} vs {ky:?}"));
            }
            x.iter()
                .find_map(|(k, v)| first_difference(&format!("{path}.{k}"), v, &y[k]))
        }
        (Value::Array(x), Value::Array(y)) => {
            if x.len() != y.len() {
                return Some(format!("{path}: {} items vs {}", x.len(), y.len()));
            }
            x.iter()
                .zip(y)
                .enumerate()
                .find_map(|(i, (p, q))| first_difference(&format!("{path}[{i}]"), p, q))
        }
        _ => (a != b).then(|| format!("{path}: {a} vs {b}")),
    }
}

#[test]
fn decode_matches_crit_317_and_encodes_back() {
    let mut checked = 0;
    for entry in std::fs::read_dir(fixture_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with(".json") {
            continue;
        }
        let img_path = path.with_extension("");
        let data = std::fs::read(&img_path).unwrap();
        let expected: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let ours = json::decode(
            &data,
            DecodeOptions {
                pretty: true,
                no_payload: false,
            },
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));

        // Exact JSON round trip, pretty and plain.
        assert_eq!(
            json::encode(&ours).unwrap(),
            data,
            "{name}: pretty JSON encode"
        );
        let plain = json::decode(&data, DecodeOptions::default()).unwrap();
        assert_eq!(
            json::encode(&plain).unwrap(),
            data,
            "{name}: plain JSON encode"
        );

        // The documented 3.17-vs-4.2 differences: see criu_proto::json::compat.
        let mut ours_317 = ours.clone();
        json::compat::to_crit_317(&mut ours_317);
        if let Some(d) = first_difference("", &ours_317, &expected) {
            panic!("{name}: differs from crit 3.17 at {d}");
        }
        checked += 1;
    }
    assert!(checked >= 14, "only {checked} fixtures checked");
}
