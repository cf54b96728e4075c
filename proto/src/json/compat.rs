//! What Debian's crit 3.17 shows for images our 4.2 schema decodes: used to compare our
//! output with that crit. Every difference is a schema change between 3.17 and 4.2 or a
//! 3.17 table bug, listed here:
//!
//! - Fields added after 3.17 ([`NEW_AFTER_3_17`]): 3.17 keeps them as unknown fields and
//!   never shows them.
//! - `pagemap_entry`: 4.2 renamed field 2 `nr_pages` to `compat_nr_pages` and added a 64-bit
//!   `nr_pages` as field 5; 3.17 shows field 2 as `nr_pages` and drops field 5.
//! - `task_core_entry.task_state` with `--pretty`: 3.17's table swaps 3 and 6 (it prints
//!   TASK_STOPPED as "Zombie" and TASK_ZOMBIE as "Stopped") and lacks 2 ("Dead").
//! - criu-rs's own fields ([`crate::CRIU_RS_FIELDS`]): no crit knows them.
//! - Enum values added after 3.17 ([`ENUM_VALUES_AFTER_3_17`]: `fd_types` PIDFD): 3.17 keeps
//!   the value as an unknown field and shows no `type` for that entry.
//! - Flag names added after 3.17 ([`FLAGS_AFTER_3_17`]: MAP_DROPPABLE, VMA_AREA_MEMFD,
//!   VMA_AREA_SHSTK, VMA_AREA_UPROBES): 3.17 prints those bits as a hex remainder after the
//!   names it knows.

use prost_reflect::{Kind, MessageDescriptor};
use serde_json::{Map, Value as Json};

use crate::kind::ImageKind;

/// Fields CRIU 4.2's schema has and crit 3.17's lacks: (message, field).
pub const NEW_AFTER_3_17: &[(&str, &str)] = &[
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
    ("ip_opts_entry", "pktinfo"),
    ("ip_opts_entry", "tos"),
    ("ip_opts_entry", "ttl"),
    ("thread_info_aarch64", "pac_keys"),
];

/// Enum values CRIU 4.2's schema has and crit 3.17's lacks: (message, field, value name).
/// crit 3.17 (python protobuf, proto2) keeps such a value as an unknown field and never
/// shows the field.
pub const ENUM_VALUES_AFTER_3_17: &[(&str, &str, &str)] = &[("file_entry", "type", "PIDFD")];

/// Flag names CRIU 4.2's tables have and crit 3.17's lack: (message, field, name, bit).
pub const FLAGS_AFTER_3_17: &[(&str, &str, &str, u64)] = &[
    ("vma_entry", "flags", "MAP_DROPPABLE", 0x08),
    ("vma_entry", "status", "VMA_AREA_MEMFD", 1 << 14),
    ("vma_entry", "status", "VMA_AREA_SHSTK", 1 << 15),
    ("vma_entry", "status", "VMA_AREA_UPROBES", 1 << 17),
];

/// `a | B | 0x10` with the names 3.17 lacks folded into the hex remainder.
fn flags_to_317(msg: &str, field: &str, text: &str) -> String {
    let mut rest = 0u64;
    let mut names = Vec::new();
    for tok in text.split(" | ").filter(|t| !t.is_empty()) {
        let newer = FLAGS_AFTER_3_17
            .iter()
            .find(|(m, f, n, _)| *m == msg && *f == field && *n == tok);
        if let Some((.., bit)) = newer {
            rest |= bit;
        } else if let Some(hex) = tok.strip_prefix("0x")
            && let Ok(v) = u64::from_str_radix(hex, 16)
        {
            rest |= v;
        } else {
            names.push(tok.to_string());
        }
    }
    if rest != 0 {
        names.push(format!("{rest:#x}"));
    }
    names.join(" | ")
}

/// Rewrites a decoded image document (as [`super::decode`] returns it) into what crit 3.17
/// prints for the same bytes.
pub fn to_crit_317(doc: &mut Json) {
    let kind = doc
        .get("magic")
        .and_then(Json::as_str)
        .and_then(ImageKind::from_name);
    let (Some(kind), Some(Json::Array(entries))) = (kind, doc.get_mut("entries")) else {
        return;
    };
    for (i, e) in entries.iter_mut().enumerate() {
        if let Some(desc) = crate::descriptor_pool().get_message_by_name(kind.entry_message_name(i))
        {
            message_to_317(&desc, e);
        }
    }
}

/// The same rewrite for one message rendered as JSON.
pub fn message_to_317(msg: &MessageDescriptor, v: &mut Json) {
    let Json::Object(map) = v else { return };
    match msg.name() {
        "pagemap_entry" => {
            map.shift_remove("nr_pages");
            if map.contains_key("compat_nr_pages") {
                let old = std::mem::take(map);
                *map = old
                    .into_iter()
                    .map(|(k, val)| {
                        if k == "compat_nr_pages" {
                            ("nr_pages".to_string(), val)
                        } else {
                            (k, val)
                        }
                    })
                    .collect::<Map<_, _>>();
            }
        }
        "task_core_entry" => {
            if let Some(Json::String(s)) = map.get_mut("task_state") {
                *s = match s.as_str() {
                    "Stopped" => "Zombie".into(),
                    "Zombie" => "Stopped".into(),
                    other => other.into(),
                };
            }
            if map.get("task_state") == Some(&Json::String("Dead".into())) {
                map.insert("task_state".into(), Json::from(2));
            }
        }
        _ => {}
    }
    for (m, f, ..) in FLAGS_AFTER_3_17 {
        if msg.name() == *m
            && let Some(Json::String(text)) = map.get_mut(*f)
            && FLAGS_AFTER_3_17
                .iter()
                .any(|(mm, ff, n, _)| mm == m && ff == f && text.contains(n))
        {
            *text = flags_to_317(m, f, text);
        }
    }
    for (m, f, value) in ENUM_VALUES_AFTER_3_17 {
        if msg.name() == *m && map.get(*f).and_then(Json::as_str) == Some(value) {
            map.shift_remove(*f);
        }
    }
    for (m, f) in NEW_AFTER_3_17 {
        if msg.name() == *m {
            map.shift_remove(*f);
        }
    }
    for f in msg.fields() {
        if crate::CRIU_RS_FIELDS.contains(&f.number()) {
            map.shift_remove(f.name());
        }
    }
    for field in msg.fields() {
        let Kind::Message(sub) = field.kind() else {
            continue;
        };
        match map.get_mut(field.name()) {
            Some(Json::Array(items)) => items.iter_mut().for_each(|i| message_to_317(&sub, i)),
            Some(obj @ Json::Object(_)) => message_to_317(&sub, obj),
            _ => {}
        }
    }
}
