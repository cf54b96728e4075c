//! The raw payloads after entries, shown and read back the way crit's extra handlers do.

use prost::Message;
use serde_json::{Map, Value as Json};

use super::JsonError;
use super::text::{b64_decode, b64_encode_lines};
use crate::framing::{FramingError, frame_message};
use crate::images::{
    BpfmapDataEntry, GhostFileEntry, IpcMsg, IpcMsgEntry, IpcSemEntry, IpcShmEntry, PipeDataEntry,
    SkPacketEntry, TcpStreamEntry,
};
use crate::kind::{ExtraPayload, ImageKind};

fn typed<M: Message + Default>(
    payload: &[u8],
    offset: u64,
    message: &'static str,
) -> Result<M, JsonError> {
    M::decode(payload).map_err(|source| {
        JsonError::Framing(FramingError::Decode {
            offset,
            message,
            source,
        })
    })
}

fn slice(extra: &[u8], len: u64) -> &[u8] {
    let len = usize::try_from(len).unwrap_or(usize::MAX).min(extra.len());
    &extra[..len]
}

/// crit's "human_readable" size for `show --nopl`.
fn human_readable(n: u64) -> String {
    let mut num = n as f64;
    for unit in ["", "K", "M", "G", "T", "P", "E", "Z"] {
        if num < 1024.0 {
            return if num.fract() == 0.0 {
                format!("{}{unit}B", num as u64)
            } else {
                format!("{num:.1}{unit}B")
            };
        }
        num /= 1024.0;
    }
    format!("{num:.1}YB")
}

/// The "extra" value of entry `index` (None: no key). `no_payload` gives crit's
/// "... <size>" placeholder instead of the data.
pub(super) fn extra_to_json(
    kind: ImageKind,
    index: usize,
    payload: &[u8],
    offset: u64,
    extra: &[u8],
    no_payload: bool,
) -> Result<Option<Json>, JsonError> {
    let msg = kind.entry_message_name(index);
    let placeholder = |n: u64| Ok(Some(Json::String(format!("... <{}>", human_readable(n)))));
    let b64 = |d: &[u8]| Json::String(b64_encode_lines(d));
    match kind.extra_payload() {
        ExtraPayload::None => Ok(None),
        ExtraPayload::PipeData | ExtraPayload::SkQueue | ExtraPayload::BpfMapData => {
            if no_payload {
                return placeholder(extra.len() as u64);
            }
            Ok(Some(b64(extra)))
        }
        ExtraPayload::TcpStream => {
            let e: TcpStreamEntry = typed(payload, offset, msg)?;
            if no_payload {
                return placeholder(u64::from(e.inq_len) + u64::from(e.outq_len));
            }
            let inq = slice(extra, u64::from(e.inq_len));
            let mut m = Map::new();
            m.insert("inq".into(), b64(inq));
            m.insert("outq".into(), b64(&extra[inq.len()..]));
            Ok(Some(Json::Object(m)))
        }
        ExtraPayload::IpcShm => {
            let e: IpcShmEntry = typed(payload, offset, msg)?;
            if e.in_pagemaps.unwrap_or(false) {
                return Ok(None);
            }
            if no_payload {
                return placeholder(e.size);
            }
            Ok(Some(b64(slice(extra, e.size))))
        }
        ExtraPayload::IpcSem => {
            let e: IpcSemEntry = typed(payload, offset, msg)?;
            if no_payload {
                return placeholder(u64::from(e.nsems) * 2);
            }
            let vals = slice(extra, u64::from(e.nsems) * 2)
                .chunks_exact(2)
                .map(|c| Json::from(u16::from_le_bytes([c[0], c[1]])))
                .collect();
            Ok(Some(Json::Array(vals)))
        }
        ExtraPayload::IpcMsg => ipc_msgs_to_json(extra, offset, no_payload),
        ExtraPayload::GhostFile => {
            if no_payload {
                return Ok(None);
            }
            if index == 0 {
                let e: GhostFileEntry = typed(payload, offset, msg)?;
                if e.chunks.unwrap_or(false) {
                    return Ok(None);
                }
            }
            Ok(Some(b64(extra)))
        }
    }
}

fn ipc_msgs_to_json(
    extra: &[u8],
    offset: u64,
    no_payload: bool,
) -> Result<Option<Json>, JsonError> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    let mut total = 0u64;
    // The framing layer already checked these bounds; stop quietly if they do not hold.
    while pos + 4 <= extra.len() {
        let len = u32::from_le_bytes([extra[pos], extra[pos + 1], extra[pos + 2], extra[pos + 3]])
            as usize;
        let Some(body) = extra.get(pos + 4..pos + 4 + len) else {
            break;
        };
        let m: IpcMsg = typed(body, offset + pos as u64, "ipc_msg")?;
        pos += 4 + len;
        let data = slice(&extra[pos..], u64::from(m.msize));
        pos += (m.msize as usize).div_ceil(8) * 8;
        total += len as u64 + u64::from(m.msize);
        let desc = crate::descriptor_pool()
            .get_message_by_name("ipc_msg")
            .ok_or(JsonError::Framing(FramingError::UnknownMessage("ipc_msg")))?;
        let dm = prost_reflect::DynamicMessage::decode(desc, body).map_err(|source| {
            JsonError::Framing(FramingError::Decode {
                offset,
                message: "ipc_msg",
                source,
            })
        })?;
        out.push(super::render::message_to_json(&dm, false));
        out.push(Json::String(b64_encode_lines(data)));
    }
    if no_payload {
        return Ok(Some(Json::String(format!(
            "... <{}>",
            human_readable(total)
        ))));
    }
    Ok(Some(Json::Array(out)))
}

fn is_falsy(v: &Json) -> bool {
    match v {
        Json::Null => true,
        Json::Bool(b) => !b,
        Json::String(s) => s.is_empty(),
        Json::Array(a) => a.is_empty(),
        Json::Object(o) => o.is_empty(),
        Json::Number(n) => n.as_f64() == Some(0.0),
    }
}

fn b64_field(v: &Json, path: &str) -> Result<Vec<u8>, JsonError> {
    let s = v.as_str().ok_or_else(|| JsonError::BadValue {
        path: path.to_string(),
        reason: "expected a base64 string".into(),
    })?;
    b64_decode(s).map_err(|e| JsonError::BadValue {
        path: path.to_string(),
        reason: format!("bad base64: {e}"),
    })
}

fn check_len(path: &str, got: usize, want: u64) -> Result<(), JsonError> {
    if got as u64 != want {
        return Err(JsonError::BadValue {
            path: path.to_string(),
            reason: format!("holds {got} bytes but the entry declares {want}"),
        });
    }
    Ok(())
}

fn pad(out: &mut Vec<u8>, len: usize, to: usize) {
    out.resize(out.len() + (len.div_ceil(to) * to - len), 0);
}

/// The bytes to write after entry `index` from its "extra" value (crit writes nothing for
/// a missing or empty one).
pub(super) fn json_to_extra(
    kind: ImageKind,
    index: usize,
    payload: &[u8],
    extra: Option<&Json>,
    path: &str,
) -> Result<Vec<u8>, JsonError> {
    let Some(extra) = extra.filter(|v| !is_falsy(v)) else {
        return Ok(Vec::new());
    };
    let msg = kind.entry_message_name(index);
    let mut out = Vec::new();
    match kind.extra_payload() {
        ExtraPayload::None => {}
        ExtraPayload::PipeData => {
            let e: PipeDataEntry = typed(payload, 0, msg)?;
            out = b64_field(extra, path)?;
            check_len(path, out.len(), u64::from(e.bytes))?;
        }
        ExtraPayload::SkQueue => {
            let e: SkPacketEntry = typed(payload, 0, msg)?;
            out = b64_field(extra, path)?;
            check_len(path, out.len(), u64::from(e.length))?;
        }
        ExtraPayload::BpfMapData => {
            let e: BpfmapDataEntry = typed(payload, 0, msg)?;
            out = b64_field(extra, path)?;
            check_len(
                path,
                out.len(),
                u64::from(e.keys_bytes) + u64::from(e.values_bytes),
            )?;
        }
        ExtraPayload::TcpStream => {
            let e: TcpStreamEntry = typed(payload, 0, msg)?;
            let inq = b64_field(
                extra.get("inq").unwrap_or(&Json::Null),
                &format!("{path}.inq"),
            )?;
            let outq = b64_field(
                extra.get("outq").unwrap_or(&Json::Null),
                &format!("{path}.outq"),
            )?;
            check_len(&format!("{path}.inq"), inq.len(), u64::from(e.inq_len))?;
            check_len(&format!("{path}.outq"), outq.len(), u64::from(e.outq_len))?;
            out = inq;
            out.extend_from_slice(&outq);
        }
        ExtraPayload::IpcShm => {
            let e: IpcShmEntry = typed(payload, 0, msg)?;
            if !e.in_pagemaps.unwrap_or(false) {
                let data = b64_field(extra, path)?;
                check_len(path, data.len(), e.size)?;
                out = data;
                pad(&mut out, e.size as usize, 4);
            }
        }
        ExtraPayload::IpcSem => {
            let e: IpcSemEntry = typed(payload, 0, msg)?;
            let vals = extra.as_array().ok_or_else(|| JsonError::BadValue {
                path: path.to_string(),
                reason: "expected a list of semaphore values".into(),
            })?;
            check_len(path, vals.len(), u64::from(e.nsems))?;
            for (i, v) in vals.iter().enumerate() {
                let n = v
                    .as_u64()
                    .and_then(|n| u16::try_from(n).ok())
                    .ok_or_else(|| JsonError::BadValue {
                        path: format!("{path}[{i}]"),
                        reason: "expected a u16".into(),
                    })?;
                out.extend_from_slice(&n.to_le_bytes());
            }
            pad(&mut out, vals.len() * 2, 8);
        }
        ExtraPayload::IpcMsg => {
            let e: IpcMsgEntry = typed(payload, 0, msg)?;
            out = ipc_msgs_from_json(extra, e.qnum, path)?;
        }
        ExtraPayload::GhostFile => {
            let chunked = index == 0
                && typed::<GhostFileEntry>(payload, 0, msg)?
                    .chunks
                    .unwrap_or(false);
            if !chunked {
                out = b64_field(extra, path)?;
            }
        }
    }
    Ok(out)
}

fn ipc_msgs_from_json(extra: &Json, qnum: u32, path: &str) -> Result<Vec<u8>, JsonError> {
    let items = extra.as_array().ok_or_else(|| JsonError::BadValue {
        path: path.to_string(),
        reason: "expected [message, data, ...]".into(),
    })?;
    check_len(path, items.len() / 2, u64::from(qnum))?;
    let desc = crate::descriptor_pool()
        .get_message_by_name("ipc_msg")
        .ok_or(JsonError::Framing(FramingError::UnknownMessage("ipc_msg")))?;
    let mut out = Vec::new();
    for (i, pair) in items.chunks(2).enumerate() {
        let [m, data] = pair else {
            return Err(JsonError::BadValue {
                path: path.to_string(),
                reason: "odd number of items".into(),
            });
        };
        let mpath = format!("{path}[{}]", 2 * i);
        let dm = super::parse::json_to_message(&desc, m, &mpath)?;
        let im: IpcMsg = typed(&dm.encode_to_vec(), 0, "ipc_msg")?;
        frame_message(&mut out, &dm).map_err(JsonError::Framing)?;
        let body = b64_field(data, &format!("{path}[{}]", 2 * i + 1))?;
        let msize = im.msize as usize;
        check_len(&mpath, body.len().min(msize), msize as u64)?;
        out.extend_from_slice(&body[..msize]);
        pad(&mut out, msize, 8);
    }
    Ok(out)
}
