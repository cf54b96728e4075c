//! Our crit JSON equals Debian crit 3.17's `.json` of every CRIU 4.2 fixture, modulo the
//! documented schema differences between 3.17 and 4.2; and JSON encodes back byte for byte.

use std::path::{Path, PathBuf};

use criu_proto::json::{self, DecodeOptions};
use serde_json::Value;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/criu-4.2-sample")
}

/// Fields CRIU 4.2's schema has and crit 3.17's lacks: 3.17 keeps them as unknown fields
/// and pb2dict never shows them. (message, field)
const NEW_IN_4X: &[(&str, &str)] = &[
    ("task_core_entry", "stop_signo"),
    ("task_core_entry", "membarrier_registration_mask"),
    ("thread_core_entry", "cg_set"),
    ("creds_entry", "no_new_privs"),
    ("creds_entry", "cap_amb"),
    ("inventory_entry", "plugins_entry"),
    ("inventory_entry", "dump_criu_run_id"),
    ("inventory_entry", "allow_uprobes"),
    ("user_x86_xsave_entry", "cet"),
    ("core_entry", "ti_loongarch64"),
    ("core_entry", "ti_riscv64"),
    ("file_entry", "pidfd"),
    ("memfd_inode_entry", "mode"),
    ("cg_controller_entry", "is_threaded"),
    ("inet_sk_entry", "tcp_opts"),
    ("netns_entry", "ipv4_sysctl"),
];

/// Rewrites our JSON into what crit 3.17 shows for the same bytes.
fn as_crit_317(msg: &prost_reflect::MessageDescriptor, v: &mut Value) {
    let Value::Object(map) = v else { return };
    // pagemap_entry: 4.2 renamed field 2 to compat_nr_pages (3.17: nr_pages) and added a
    // 64-bit nr_pages as field 5, which 3.17 does not know.
    if msg.name() == "pagemap_entry" {
        map.shift_remove("nr_pages");
        if let Some(c) = map.get("compat_nr_pages").cloned() {
            let mut renamed = serde_json::Map::new();
            for (k, val) in std::mem::take(map) {
                if k == "compat_nr_pages" {
                    renamed.insert("nr_pages".into(), c.clone());
                } else {
                    renamed.insert(k, val);
                }
            }
            *map = renamed;
        }
    }
    for (m, f) in NEW_IN_4X {
        if msg.name() == *m {
            map.shift_remove(*f);
        }
    }
    for field in msg.fields() {
        let prost_reflect::Kind::Message(sub) = field.kind() else {
            continue;
        };
        match map.get_mut(field.name()) {
            Some(Value::Array(items)) => items.iter_mut().for_each(|i| as_crit_317(&sub, i)),
            Some(obj @ Value::Object(_)) => as_crit_317(&sub, obj),
            _ => {}
        }
    }
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
    let pool = criu_proto::descriptor_pool();
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

        let kind = criu_proto::framing::parse(&data).unwrap().kind;
        let mut ours_317 = ours.clone();
        if let Some(Value::Array(entries)) = ours_317.get_mut("entries") {
            for (i, e) in entries.iter_mut().enumerate() {
                let desc = pool
                    .get_message_by_name(kind.entry_message_name(i))
                    .unwrap();
                as_crit_317(&desc, e);
            }
        }
        if let Some(d) = first_difference("", &ours_317, &expected) {
            panic!("{name}: differs from crit 3.17 at {d}");
        }
        checked += 1;
    }
    assert!(checked >= 14, "only {checked} fixtures checked");
}
