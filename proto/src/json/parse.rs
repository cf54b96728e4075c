//! crit JSON to protobuf message (pycriu's dict2pb over a prost-reflect DynamicMessage).

use std::net::IpAddr;

use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, Value};
use serde_json::Value as Json;

use super::JsonError;
use super::opts::{dict_map, field_opts, flags_map};
use super::text::{b64_decode, parse_int, quopri_decode};

fn bad(path: &str, reason: impl Into<String>) -> JsonError {
    JsonError::BadValue {
        path: path.to_string(),
        reason: reason.into(),
    }
}

/// Builds a message of type `desc` from crit's JSON object. Keys that are not fields are
/// ignored (crit does the same); missing required fields are an error.
pub fn json_to_message(
    desc: &MessageDescriptor,
    json: &Json,
    path: &str,
) -> Result<DynamicMessage, JsonError> {
    let obj = json
        .as_object()
        .ok_or_else(|| bad(path, format!("expected an object for {}", desc.name())))?;
    let mut msg = DynamicMessage::new(desc.clone());
    for field in desc.fields() {
        let Some(value) = obj.get(field.name()) else {
            continue;
        };
        let fpath = format!("{path}.{}", field.name());
        if field.is_list() {
            let items = value
                .as_array()
                .ok_or_else(|| bad(&fpath, "expected a list"))?;
            let opts = field_opts(&field);
            let list = if opts.ipadd && items.first().is_some_and(Json::is_string) {
                ip_words(&fpath, items)?
            } else {
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| cast(&field, v, &format!("{fpath}[{i}]")))
                    .collect::<Result<Vec<_>, _>>()?
            };
            msg.set_field(&field, Value::List(list));
        } else {
            let v = cast(&field, value, &fpath)?;
            msg.set_field(&field, v);
        }
    }
    for field in desc.fields() {
        if field.is_required() && !msg.has_field(&field) {
            return Err(JsonError::MissingRequired {
                path: format!("{path}.{}", field.name()),
            });
        }
    }
    Ok(msg)
}

/// An address string to the u32 words (network byte order) crit stores.
fn ip_words(path: &str, items: &[Json]) -> Result<Vec<Value>, JsonError> {
    let s = items[0].as_str().unwrap_or_default();
    let ip: IpAddr = s
        .parse()
        .map_err(|_| bad(path, format!("{s:?} is not an IP address")))?;
    Ok(match ip {
        IpAddr::V4(a) => vec![Value::U32(u32::from(a).swap_bytes())],
        IpAddr::V6(a) => {
            let v = u128::from(a);
            (0..4)
                .map(|i| Value::U32(((v >> (96 - 32 * i)) as u32).swap_bytes()))
                .collect()
        }
    })
}

fn cast(field: &FieldDescriptor, v: &Json, path: &str) -> Result<Value, JsonError> {
    let opts = field_opts(field);
    match field.kind() {
        Kind::Message(m) => Ok(Value::Message(json_to_message(&m, v, path)?)),
        Kind::Bytes => {
            let s = v.as_str().ok_or_else(|| bad(path, "expected a string"))?;
            let data = match opts.conv.as_deref() {
                Some("unix_name") => quopri_decode(s),
                _ => b64_decode(s).map_err(|e| bad(path, format!("bad base64: {e}")))?,
            };
            Ok(Value::Bytes(data.into()))
        }
        Kind::Enum(e) => match v {
            Json::String(s) => e
                .get_value_by_name(s)
                .map(|ev| Value::EnumNumber(ev.number()))
                .ok_or_else(|| bad(path, format!("{s:?} is not a value of {}", e.name()))),
            Json::Number(n) => n
                .as_i64()
                .and_then(|n| i32::try_from(n).ok())
                .map(Value::EnumNumber)
                .ok_or_else(|| bad(path, "enum number out of range")),
            _ => Err(bad(path, "expected an enum name")),
        },
        Kind::Bool => match v {
            Json::Bool(b) => Ok(Value::Bool(*b)),
            Json::Number(n) => Ok(Value::Bool(n.as_f64().unwrap_or(0.0) != 0.0)),
            _ => Err(bad(path, "expected true or false")),
        },
        Kind::String => v
            .as_str()
            .map(|s| Value::String(s.to_string()))
            .ok_or_else(|| bad(path, "expected a string")),
        Kind::Float | Kind::Double => {
            let f = v.as_f64().ok_or_else(|| bad(path, "expected a number"))?;
            Ok(if matches!(field.kind(), Kind::Float) {
                Value::F32(f as f32)
            } else {
                Value::F64(f)
            })
        }
        kind => {
            let n = int_value(field, v, path)?;
            fit(&kind, n).ok_or_else(|| bad(path, format!("{n} out of range for {kind:?}")))
        }
    }
}

fn int_value(field: &FieldDescriptor, v: &Json, path: &str) -> Result<i128, JsonError> {
    let s = match v {
        Json::Number(n) => {
            return n
                .as_u64()
                .map(i128::from)
                .or_else(|| n.as_i64().map(i128::from))
                .ok_or_else(|| bad(path, "expected an integer"));
        }
        Json::String(s) => s,
        _ => return Err(bad(path, "expected an integer")),
    };
    let opts = field_opts(field);
    if opts.dev {
        let (maj, min) = s
            .split_once(':')
            .and_then(|(a, b)| Some((a.trim().parse::<u64>().ok()?, b.trim().parse::<u64>().ok()?)))
            .ok_or_else(|| bad(path, format!("{s:?} is not major:minor")))?;
        let dev = if opts.odev {
            // glibc's makedev() for a 64-bit dev_t.
            ((maj & 0xffff_f000) << 32)
                | ((maj & 0xfff) << 8)
                | ((min & 0xffff_ff00) << 12)
                | (min & 0xff)
        } else {
            (maj << 20) | min
        };
        return Ok(i128::from(dev));
    }
    if let Some(name) = &opts.flags
        && let Some(map) = flags_map(name)
    {
        let mut total: i128 = 0;
        if s.trim().is_empty() {
            return Ok(0);
        }
        for part in s.split('|').map(str::trim) {
            let bit = match map.iter().find(|(n, _)| *n == part) {
                Some((_, b)) => i128::from(*b),
                None => {
                    parse_int(part).ok_or_else(|| bad(path, format!("unknown flag {part:?}")))?
                }
            };
            total += bit;
        }
        return Ok(total);
    }
    if let Some(dict) = &opts.dict
        && let Some(map) = dict_map(dict, field.name())
        && let Some((k, _)) = map.iter().find(|(_, n)| *n == s)
    {
        return Ok(i128::from(*k));
    }
    parse_int(s).ok_or_else(|| bad(path, format!("{s:?} is not an integer")))
}

fn fit(kind: &Kind, n: i128) -> Option<Value> {
    Some(match kind {
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Value::I32(i32::try_from(n).ok()?),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::I64(i64::try_from(n).ok()?),
        Kind::Uint32 | Kind::Fixed32 => Value::U32(u32::try_from(n).ok()?),
        Kind::Uint64 | Kind::Fixed64 => Value::U64(u64::try_from(n).ok()?),
        _ => return None,
    })
}
