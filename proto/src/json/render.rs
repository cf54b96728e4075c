//! Protobuf message to crit JSON (pycriu's pb2dict over a prost-reflect DynamicMessage).

use std::net::{Ipv4Addr, Ipv6Addr};

use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, Value};
use serde_json::{Map, Value as Json};

use super::opts::{dict_map, field_opts, flags_map, map_flags};
use super::text::{b64_encode_lines, quopri_encode};

/// Converts a message to crit's JSON object. `pretty` turns on the field-specific
/// renderings (hex, flags, dev, dict, ip addresses) like `crit decode --pretty`.
pub fn message_to_json(msg: &DynamicMessage, pretty: bool) -> Json {
    Json::Object(message_map(msg, pretty, false))
}

fn message_map(msg: &DynamicMessage, pretty: bool, hex: bool) -> Map<String, Json> {
    let mut out = Map::new();
    // fields() yields set fields in field-number order, as Python's ListFields() does.
    for (field, value) in msg.fields() {
        let opts = field_opts(&field);
        let hex = hex || opts.hex;
        let rendered = match value {
            Value::List(items) => {
                if pretty && opts.ipadd && !items.is_empty() {
                    Json::Array(vec![Json::String(ip_string(items))])
                } else {
                    Json::Array(
                        items
                            .iter()
                            .map(|v| scalar(&field, v, pretty, hex))
                            .collect(),
                    )
                }
            }
            v => scalar(&field, v, pretty, hex),
        };
        out.insert(field.name().to_string(), rendered);
    }
    out
}

/// IPv4 from one u32, IPv6 from four, each in network byte order as stored.
fn ip_string(items: &[Value]) -> String {
    let word = |i: usize| {
        items
            .get(i)
            .and_then(Value::as_u32)
            .unwrap_or(0)
            .swap_bytes()
    };
    if items.len() == 1 {
        Ipv4Addr::from(word(0)).to_string()
    } else {
        let v = (u128::from(word(0)) << 96)
            | (u128::from(word(1)) << 64)
            | (u128::from(word(2)) << 32)
            | u128::from(word(3));
        Ipv6Addr::from(v).to_string()
    }
}

fn int_json(v: i128) -> Json {
    if let Ok(u) = u64::try_from(v) {
        Json::from(u)
    } else {
        // Values come from i32/i64/u32/u64 fields: they fit i64 when negative.
        Json::from(i64::try_from(v).unwrap_or(i64::MIN))
    }
}

fn hex_string(v: i128) -> String {
    if v < 0 {
        format!("-{:#x}", v.unsigned_abs())
    } else {
        format!("{v:#x}")
    }
}

fn scalar(field: &FieldDescriptor, value: &Value, pretty: bool, hex: bool) -> Json {
    let opts = field_opts(field);
    let int = match value {
        Value::Message(m) => return Json::Object(message_map(m, pretty, hex)),
        Value::Bytes(b) => {
            return Json::String(match opts.conv.as_deref() {
                Some("unix_name") => quopri_encode(b),
                _ => b64_encode_lines(b),
            });
        }
        Value::EnumNumber(n) => {
            return match field.kind() {
                Kind::Enum(e) => match e.get_value(*n) {
                    Some(v) => Json::String(v.name().to_string()),
                    // crit fails here; a number at least round trips.
                    None => Json::from(*n),
                },
                _ => Json::from(*n),
            };
        }
        Value::Bool(b) => return Json::Bool(*b),
        Value::String(s) => return Json::String(s.clone()),
        Value::F32(f) => return Json::from(f64::from(*f)),
        Value::F64(f) => return Json::from(*f),
        Value::List(_) | Value::Map(_) => return Json::Null,
        Value::I32(v) => i128::from(*v),
        Value::I64(v) => i128::from(*v),
        Value::U32(v) => i128::from(*v),
        Value::U64(v) => i128::from(*v),
    };
    if !pretty {
        return int_json(int);
    }
    if hex {
        return Json::String(hex_string(int));
    }
    if opts.dev {
        let v = int as u64;
        return Json::String(if opts.odev {
            // glibc's major()/minor() of a 64-bit dev_t.
            let major = ((v >> 32) & 0xffff_f000) | ((v >> 8) & 0xfff);
            let minor = ((v >> 12) & 0xffff_ff00) | (v & 0xff);
            format!("{major}:{minor}")
        } else {
            format!("{}:{}", v >> 20, v & ((1 << 20) - 1))
        });
    }
    if let Some(name) = &opts.flags {
        return Json::String(match flags_map(name) {
            Some(map) => map_flags(int as u64, map),
            None => hex_string(int),
        });
    }
    if let Some(dict) = &opts.dict {
        if let Some(map) = dict_map(dict, field.name())
            && let Some((_, n)) = map.iter().find(|(k, _)| i128::from(*k) == int)
        {
            return Json::String((*n).to_string());
        }
        return int_json(int);
    }
    int_json(int)
}
