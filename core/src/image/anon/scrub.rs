//! The rules for one decoded message: what each field becomes in an anonymised image.
//!
//! By default a string is a name (mapped by [`Placeholders::name`]), bytes are data (zeroed,
//! same length), numbers, enums and booleans are structure (kept). The tables below are the
//! exceptions; registers are zeroed whole. Fields our schema does not know are dropped: we
//! cannot tell what they hold.

use criu_proto::prost_reflect::{DynamicMessage, FieldDescriptor, ReflectMessage, Value};

use super::names::Placeholders;

/// What happens to one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// Strings mapped as names/paths, bytes zeroed, messages walked.
    Default,
    /// Kept as is: says what kind of thing something is, not whose.
    Keep,
    /// Bytes holding a name (a unix socket's), mapped like a path.
    NameBytes,
    /// `src_addr`/`dst_addr` words: an IP address.
    Addr,
    /// Registers: every number and byte below is zeroed (enums such as the x86 mode kept).
    Zero,
    /// Removed from the message.
    Clear,
}

/// Strings and bytes kept as they are (`message.field`).
const KEEP: &[&str] = &[
    "plugins_entry.plugins",
    "inventory_entry.dump_criu_run_id",
    "ext_file_entry.criu_rs_plugin",
    "vma_entry.criu_rs_plugin",
    "cpuinfo_x86_entry.model_id",
    "mnt_entry.fsname",
    "cg_controller_entry.cnames",
    "cg_member_entry.name",
    "cgroup_prop_entry.name",
    "creds_entry.lsm_profile",
    "creds_entry.lsm_sockcreate",
    "fdinfo_entry.xattr_security_selinux",
    "seccomp_filter.filter",
];

/// Fields of `core_entry` holding a thread's registers, one per architecture.
const REGISTERS: &[&str] = &[
    "thread_info",
    "ti_arm",
    "ti_aarch64",
    "ti_ppc64",
    "ti_s390",
    "ti_mips",
    "ti_loongarch64",
    "ti_riscv64",
];

fn rule(message: &str, field: &FieldDescriptor) -> Rule {
    let name = field.name();
    let full = format!("{message}.{name}");
    if KEEP.contains(&full.as_str()) {
        return Rule::Keep;
    }
    match (message, name) {
        ("core_entry", f) if REGISTERS.contains(&f) => Rule::Zero,
        ("unix_sk_entry", "name") => Rule::NameBytes,
        ("inet_sk_entry", "src_addr" | "dst_addr") => Rule::Addr,
        // The anonymised pages are written raw (zeros need no compression).
        ("pagemap_head", "criu_rs_compression") => Rule::Clear,
        _ => Rule::Default,
    }
}

/// Anonymises `msg` in place; `zero`: inside registers.
pub(super) fn scrub(msg: &mut DynamicMessage, ph: &mut Placeholders, zero: bool) {
    // Fields our schema lacks (a newer CRIU's) could hold anything.
    msg.take_unknown_fields().for_each(drop);
    let message = msg.descriptor().name().to_string();
    let mut clear = Vec::new();
    for (field, value) in msg.fields_mut() {
        let r = if zero {
            Rule::Zero
        } else {
            rule(&message, &field)
        };
        match r {
            Rule::Clear => clear.push(field),
            Rule::Addr => {
                if let Value::List(words) = value {
                    let raw: Vec<u32> = words.iter().filter_map(Value::as_u32).collect();
                    *words = ph.addr(&raw).into_iter().map(Value::U32).collect();
                }
            }
            r => scrub_value(value, r, ph),
        }
    }
    for f in clear {
        msg.clear_field(&f);
    }
}

fn scrub_value(value: &mut Value, r: Rule, ph: &mut Placeholders) {
    let zero = r == Rule::Zero;
    match value {
        Value::List(items) => items.iter_mut().for_each(|v| scrub_value(v, r, ph)),
        Value::Map(m) => m.values_mut().for_each(|v| scrub_value(v, r, ph)),
        Value::Message(m) => scrub(m, ph, zero),
        Value::String(s) if matches!(r, Rule::Default) => *s = ph.name_str(s),
        Value::String(s) if zero => *s = String::new(),
        Value::Bytes(b) if r == Rule::NameBytes => *b = ph.name(b).into(),
        Value::Bytes(b) if matches!(r, Rule::Default | Rule::Zero) => {
            *b = vec![0u8; b.len()].into()
        }
        Value::I32(v) if zero => *v = 0,
        Value::I64(v) if zero => *v = 0,
        Value::U32(v) if zero => *v = 0,
        Value::U64(v) if zero => *v = 0,
        Value::F32(v) if zero => *v = 0.0,
        Value::F64(v) if zero => *v = 0.0,
        _ => {}
    }
}
