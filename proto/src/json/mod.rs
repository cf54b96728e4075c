//! crit-compatible JSON for image files: `{"magic": "CORE", "entries": [...]}`, each entry
//! rendered like pycriu's pb2dict (with the `(criu)` field options when `pretty`) and raw
//! payloads under an "extra" key. [`encode`] reverses [`decode`] byte for byte.
//!
//! Fields unknown to our schema are kept under the non-crit key `"__unknown_fields"`
//! (base64 of their wire bytes) so that images from newer CRIUs round trip exactly; it only
//! appears when such fields exist.

pub mod compat;
mod extra;
mod opts;
mod parse;
mod render;
mod text;

use prost::Message;
use prost_reflect::{DynamicMessage, MessageDescriptor};
use serde_json::{Map, Value as Json};

use crate::framing::{self, FramingError, RawImage};
use crate::kind::{Framing, ImageKind};

pub use opts::{FieldOpts, field_opts};
pub use parse::json_to_message;
pub use render::message_to_json;
pub use text::{b64_decode, b64_encode_lines, python_json, quopri_decode, quopri_encode};

/// Key holding wire bytes of fields our schema does not know.
pub const UNKNOWN_FIELDS_KEY: &str = "__unknown_fields";

/// Errors converting between images and JSON.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    /// The image bytes are not a valid image.
    #[error(transparent)]
    Framing(#[from] FramingError),
    /// A JSON value does not fit its field.
    #[error("{path}: {reason}")]
    BadValue { path: String, reason: String },
    /// A required field is missing from a JSON entry.
    #[error("{path}: required field missing")]
    MissingRequired { path: String },
    /// The entries and their payloads do not form a valid image (e.g. an entry declares
    /// payload bytes that its "extra" does not supply).
    #[error("the JSON entries do not make a valid image")]
    Inconsistent(#[source] FramingError),
    /// The "magic" names no image kind we can write.
    #[error("unknown or unframed image magic {0:?}")]
    UnknownMagic(String),
}

/// How [`decode`] renders.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecodeOptions {
    /// Field-specific formats (hex, flags, dev, ...), like `crit decode --pretty`.
    pub pretty: bool,
    /// Replace payloads by their size, like `crit show --nopl`.
    pub no_payload: bool,
}

fn descriptor(name: &'static str) -> Result<MessageDescriptor, JsonError> {
    crate::descriptor_pool()
        .get_message_by_name(name)
        .ok_or(JsonError::Framing(FramingError::UnknownMessage(name)))
}

/// crit's name for a kind's magic (kinds sharing a magic print as the one crit knows).
fn magic_name(kind: ImageKind) -> &'static str {
    ImageKind::from_magic(kind.magic()).unwrap_or(kind).name()
}

/// Decodes an image file to crit's JSON document, recognising the kind from its magic.
pub fn decode(data: &[u8], opts: DecodeOptions) -> Result<Json, JsonError> {
    decode_raw(&framing::parse(data)?, opts)
}

/// Decodes an image file that must be of `kind`.
pub fn decode_as(kind: ImageKind, data: &[u8], opts: DecodeOptions) -> Result<Json, JsonError> {
    decode_raw(&framing::parse_as(kind, data)?, opts)
}

/// Renders parsed entries as crit's JSON document.
pub fn decode_raw(img: &RawImage, opts: DecodeOptions) -> Result<Json, JsonError> {
    let mut entries = Vec::with_capacity(img.entries.len());
    for (i, e) in img.entries.iter().enumerate() {
        let name = img.kind.entry_message_name(i);
        let msg =
            DynamicMessage::decode(descriptor(name)?, e.payload.as_slice()).map_err(|source| {
                FramingError::Decode {
                    offset: e.offset,
                    message: name,
                    source,
                }
            })?;
        let mut obj = match render::message_to_json(&msg, opts.pretty) {
            Json::Object(m) => m,
            _ => Map::new(),
        };
        add_unknown(&msg, &mut obj);
        if let Some(x) =
            extra::extra_to_json(img.kind, i, &e.payload, e.offset, &e.extra, opts.no_payload)?
        {
            obj.insert("extra".into(), x);
        }
        entries.push(Json::Object(obj));
    }
    let mut doc = Map::new();
    doc.insert("magic".into(), Json::String(magic_name(img.kind).into()));
    doc.insert("entries".into(), Json::Array(entries));
    Ok(Json::Object(doc))
}

/// Top-level unknown fields of `msg` as base64 under [`UNKNOWN_FIELDS_KEY`].
fn add_unknown(msg: &DynamicMessage, obj: &mut Map<String, Json>) {
    let mut raw = Vec::new();
    for f in msg.unknown_fields() {
        f.encode(&mut raw);
    }
    if !raw.is_empty() {
        obj.insert(
            UNKNOWN_FIELDS_KEY.into(),
            Json::String(b64_encode_lines(&raw)),
        );
    }
}

/// Encodes crit's JSON document back to image bytes.
pub fn encode(doc: &Json) -> Result<Vec<u8>, JsonError> {
    let magic = doc
        .get("magic")
        .and_then(Json::as_str)
        .ok_or_else(|| JsonError::BadValue {
            path: "magic".into(),
            reason: "missing or not a string".into(),
        })?;
    let kind = ImageKind::from_name(magic)
        .filter(|k| !matches!(k.framing(), Framing::Raw | Framing::Legacy))
        .ok_or_else(|| JsonError::UnknownMagic(magic.to_string()))?;
    let entries =
        doc.get("entries")
            .and_then(Json::as_array)
            .ok_or_else(|| JsonError::BadValue {
                path: "entries".into(),
                reason: "missing or not a list".into(),
            })?;
    let mut out = framing::header_bytes(kind)?;
    for (i, entry) in entries.iter().enumerate() {
        let path = format!("entries[{i}]");
        let name = kind.entry_message_name(i);
        let mut msg = parse::json_to_message(&descriptor(name)?, entry, &path)?;
        if let Some(u) = entry.get(UNKNOWN_FIELDS_KEY) {
            let raw = text::b64_decode(u.as_str().unwrap_or_default()).map_err(|e| {
                JsonError::BadValue {
                    path: format!("{path}.{UNKNOWN_FIELDS_KEY}"),
                    reason: format!("bad base64: {e}"),
                }
            })?;
            msg.merge(raw.as_slice()).map_err(|e| JsonError::BadValue {
                path: format!("{path}.{UNKNOWN_FIELDS_KEY}"),
                reason: e.to_string(),
            })?;
        }
        let payload = msg.encode_to_vec();
        let extra = extra::json_to_extra(
            kind,
            i,
            &payload,
            entry.get("extra"),
            &format!("{path}.extra"),
        )?;
        let len = u32::try_from(payload.len()).map_err(|_| FramingError::TooLarge {
            index: i,
            len: payload.len(),
        })?;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&payload);
        out.extend_from_slice(&extra);
    }
    // crit would write whatever it was given; refuse what CRIU could not read back.
    framing::parse_as(kind, &out).map_err(JsonError::Inconsistent)?;
    Ok(out)
}

/// crit's `info`: the magic and the number of entries (pagemap heads not counted).
pub fn info(data: &[u8]) -> Result<Json, JsonError> {
    let img = framing::parse(data)?;
    let mut count = img.entries.len();
    if matches!(img.kind, ImageKind::Pagemap | ImageKind::ShmemPagemap) {
        count = count.saturating_sub(1);
    }
    let mut m = Map::new();
    m.insert("magic".into(), Json::String(magic_name(img.kind).into()));
    m.insert("count".into(), Json::from(count));
    Ok(Json::Object(m))
}

#[cfg(test)]
mod tests;
