//! The byte layout of CRIU image files: header magics, length-prefixed protobuf entries and
//! the raw payloads some entries carry. Pure functions over byte slices; never panics.

use prost::Message;
use prost_reflect::DynamicMessage;

use crate::images::{
    BpfmapDataEntry, GhostChunkEntry, GhostFileEntry, IpcMsg, IpcMsgEntry, IpcSemEntry,
    IpcShmEntry, PipeDataEntry, SkPacketEntry, TcpStreamEntry,
};
use crate::kind::{ExtraPayload, Framing, IMG_COMMON_MAGIC, IMG_SERVICE_MAGIC, ImageKind};

/// Errors of the framing codec. Offsets count bytes from the start of the file.
#[derive(Debug, thiserror::Error)]
pub enum FramingError {
    /// The data ends inside a header, a length, an entry or a payload.
    #[error("truncated at offset {offset}: {what} needs {needed} bytes, {available} left")]
    Truncated {
        offset: u64,
        what: &'static str,
        needed: u64,
        available: u64,
    },
    /// The magic names no image kind.
    #[error("unknown magic {magic:#x} at offset {offset}")]
    UnknownMagic { offset: u64, magic: u32 },
    /// The magic is valid but not the one of the expected kind or header type.
    #[error("magic {found:#x} at offset {offset} where {kind} expects {expected:#x}")]
    WrongMagic {
        offset: u64,
        kind: ImageKind,
        expected: u32,
        found: u32,
    },
    /// Raw and legacy kinds have no framing to parse or write.
    #[error("{kind} images are not framed (raw data); nothing to decode")]
    NotFramed { kind: ImageKind },
    /// An entry is not a valid encoding of its message.
    #[error("cannot decode {message} at offset {offset}")]
    Decode {
        offset: u64,
        message: &'static str,
        #[source]
        source: prost::DecodeError,
    },
    /// An entry is larger than the u32 length prefix allows.
    #[error("entry {index} is {len} bytes, more than a u32 length prefix allows")]
    TooLarge { index: usize, len: usize },
    /// The schema lacks a message the kind table names (a build defect).
    #[error("message {0} is missing from the schema")]
    UnknownMessage(&'static str),
}

/// One entry: its encoded message and the raw bytes that follow it (padding included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEntry {
    /// Offset of the entry's length prefix in the file.
    pub offset: u64,
    /// The encoded protobuf message.
    pub payload: Vec<u8>,
    /// Raw bytes after the message (crit's "extra"), exactly as stored.
    pub extra: Vec<u8>,
}

/// A parsed framed image: its kind and entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawImage {
    pub kind: ImageKind,
    pub entries: Vec<RawEntry>,
}

/// The header bytes a file of `kind` starts with.
pub fn header_bytes(kind: ImageKind) -> Result<Vec<u8>, FramingError> {
    let mut out = Vec::with_capacity(8);
    match kind.framing() {
        Framing::Inventory => {}
        Framing::Common => out.extend_from_slice(&IMG_COMMON_MAGIC.to_le_bytes()),
        Framing::Service => out.extend_from_slice(&IMG_SERVICE_MAGIC.to_le_bytes()),
        Framing::Raw | Framing::Legacy => return Err(FramingError::NotFramed { kind }),
    }
    out.extend_from_slice(&kind.magic().to_le_bytes());
    Ok(out)
}

/// Appends one length-prefixed message to `out`.
pub fn frame_message<M: Message>(out: &mut Vec<u8>, msg: &M) -> Result<(), FramingError> {
    let len = msg.encoded_len();
    let len32 = u32::try_from(len).map_err(|_| FramingError::TooLarge { index: 0, len })?;
    out.reserve(4 + len);
    out.extend_from_slice(&len32.to_le_bytes());
    // Encoding into a Vec cannot run out of space.
    msg.encode_raw(out);
    Ok(())
}

/// Encodes a whole image of `kind` from typed messages (no extra payloads).
pub fn encode_messages<M: Message>(kind: ImageKind, msgs: &[M]) -> Result<Vec<u8>, FramingError> {
    let mut out = header_bytes(kind)?;
    for m in msgs {
        frame_message(&mut out, m)?;
    }
    Ok(out)
}

fn read_u32(data: &[u8], pos: usize, what: &'static str) -> Result<u32, FramingError> {
    let avail = data.len().saturating_sub(pos);
    match data.get(pos..pos + 4) {
        Some(b) => Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        None => Err(FramingError::Truncated {
            offset: pos as u64,
            what,
            needed: 4,
            available: avail as u64,
        }),
    }
}

fn take<'a>(
    data: &'a [u8],
    pos: usize,
    len: u64,
    what: &'static str,
) -> Result<&'a [u8], FramingError> {
    let avail = data.len().saturating_sub(pos);
    let trunc = || FramingError::Truncated {
        offset: pos as u64,
        what,
        needed: len,
        available: avail as u64,
    };
    let len = usize::try_from(len).map_err(|_| trunc())?;
    if len > avail {
        return Err(trunc());
    }
    Ok(&data[pos..pos + len])
}

/// Reads the header and returns the kind it names and the offset of the first entry.
pub fn parse_header(data: &[u8]) -> Result<(ImageKind, usize), FramingError> {
    let first = read_u32(data, 0, "image magic")?;
    if first == ImageKind::Inventory.magic() {
        return Ok((ImageKind::Inventory, 4));
    }
    if first != IMG_COMMON_MAGIC && first != IMG_SERVICE_MAGIC {
        return Err(FramingError::UnknownMagic {
            offset: 0,
            magic: first,
        });
    }
    let second = read_u32(data, 4, "image magic")?;
    // The inventory has its own magic alone, never behind a shared one.
    let kind = ImageKind::from_magic(second)
        .filter(|k| *k != ImageKind::Inventory)
        .ok_or(FramingError::UnknownMagic {
            offset: 4,
            magic: second,
        })?;
    let expected = if kind.is_service() {
        IMG_SERVICE_MAGIC
    } else {
        IMG_COMMON_MAGIC
    };
    if first != expected {
        return Err(FramingError::WrongMagic {
            offset: 0,
            kind,
            expected,
            found: first,
        });
    }
    Ok((kind, 8))
}

/// Checks that `data` starts with the header of `kind` (exactly; shared magics allowed).
pub fn check_header(kind: ImageKind, data: &[u8]) -> Result<usize, FramingError> {
    let want = header_bytes(kind)?;
    for (i, chunk) in want.chunks(4).enumerate() {
        let pos = i * 4;
        let found = read_u32(data, pos, "image magic")?;
        let expected = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        if found != expected {
            return Err(FramingError::WrongMagic {
                offset: pos as u64,
                kind,
                expected,
                found,
            });
        }
    }
    Ok(want.len())
}

/// Parses a framed image, recognising its kind from the magic.
pub fn parse(data: &[u8]) -> Result<RawImage, FramingError> {
    let (kind, start) = parse_header(data)?;
    parse_entries(kind, data, start, true)
}

/// Parses a framed image that must be of `kind`.
pub fn parse_as(kind: ImageKind, data: &[u8]) -> Result<RawImage, FramingError> {
    let start = check_header(kind, data)?;
    parse_entries(kind, data, start, true)
}

/// Like [`parse_as`], but without decoding every entry against the schema (only what is
/// needed to size extra payloads): for callers that decode the entries into typed
/// messages right after, which checks them anyway.
pub fn split_as(kind: ImageKind, data: &[u8]) -> Result<RawImage, FramingError> {
    let start = check_header(kind, data)?;
    parse_entries(kind, data, start, false)
}

fn decode_at<M: Message + Default>(
    payload: &[u8],
    offset: u64,
    message: &'static str,
) -> Result<M, FramingError> {
    M::decode(payload).map_err(|source| FramingError::Decode {
        offset,
        message,
        source,
    })
}

/// Validates an entry against its message in the schema (unknown fields are fine).
fn validate(payload: &[u8], offset: u64, message: &'static str) -> Result<(), FramingError> {
    let desc = crate::descriptor_pool()
        .get_message_by_name(message)
        .ok_or(FramingError::UnknownMessage(message))?;
    DynamicMessage::decode(desc, payload)
        .map(|_| ())
        .map_err(|source| FramingError::Decode {
            offset,
            message,
            source,
        })
}

fn round_up(x: u64, to: u64) -> u64 {
    x.div_ceil(to).saturating_mul(to)
}

fn parse_entries(
    kind: ImageKind,
    data: &[u8],
    start: usize,
    check: bool,
) -> Result<RawImage, FramingError> {
    let mut entries = Vec::new();
    let mut pos = start;
    while pos < data.len() {
        let index = entries.len();
        let offset = pos as u64;
        let len = read_u32(data, pos, "entry length")?;
        let payload = take(data, pos + 4, u64::from(len), "entry")?;
        let message = kind.entry_message_name(index);
        if check {
            validate(payload, offset, message)?;
        }
        pos += 4 + payload.len();
        let extra_len = extra_len(kind, index, payload, offset, data, pos)?;
        let extra = take(data, pos, extra_len, "entry payload")?;
        pos += extra.len();
        entries.push(RawEntry {
            offset,
            payload: payload.to_vec(),
            extra: extra.to_vec(),
        });
    }
    Ok(RawImage { kind, entries })
}

/// Size of the raw bytes after entry `index`, whose message bytes are `payload` and whose
/// extra bytes would start at `pos` of `data`.
fn extra_len(
    kind: ImageKind,
    index: usize,
    payload: &[u8],
    offset: u64,
    data: &[u8],
    pos: usize,
) -> Result<u64, FramingError> {
    let msg = kind.entry_message_name(index);
    Ok(match kind.extra_payload() {
        ExtraPayload::None => 0,
        ExtraPayload::PipeData => {
            u64::from(decode_at::<PipeDataEntry>(payload, offset, msg)?.bytes)
        }
        ExtraPayload::SkQueue => {
            u64::from(decode_at::<SkPacketEntry>(payload, offset, msg)?.length)
        }
        ExtraPayload::TcpStream => {
            let e: TcpStreamEntry = decode_at(payload, offset, msg)?;
            u64::from(e.inq_len) + u64::from(e.outq_len)
        }
        ExtraPayload::BpfMapData => {
            let e: BpfmapDataEntry = decode_at(payload, offset, msg)?;
            u64::from(e.keys_bytes) + u64::from(e.values_bytes)
        }
        ExtraPayload::IpcShm => {
            let e: IpcShmEntry = decode_at(payload, offset, msg)?;
            // With in_pagemaps the contents live in a shmem pagemap, not here.
            if e.in_pagemaps.unwrap_or(false) {
                0
            } else {
                round_up(e.size, 4)
            }
        }
        ExtraPayload::IpcSem => {
            let e: IpcSemEntry = decode_at(payload, offset, msg)?;
            round_up(u64::from(e.nsems) * 2, 8)
        }
        ExtraPayload::IpcMsg => {
            let e: IpcMsgEntry = decode_at(payload, offset, msg)?;
            ipc_msgs_len(e.qnum, data, pos)?
        }
        ExtraPayload::GhostFile => {
            if index == 0 {
                let e: GhostFileEntry = decode_at(payload, offset, msg)?;
                if e.chunks.unwrap_or(false) {
                    0
                } else {
                    (data.len() - pos) as u64
                }
            } else {
                decode_at::<GhostChunkEntry>(payload, offset, msg)?.len
            }
        }
    })
}

/// Length of `qnum` framed `ipc_msg` entries, each followed by its data padded to 8.
fn ipc_msgs_len(qnum: u32, data: &[u8], start: usize) -> Result<u64, FramingError> {
    let mut pos = start;
    for _ in 0..qnum {
        let len = read_u32(data, pos, "ipc message length")?;
        let payload = take(data, pos + 4, u64::from(len), "ipc message")?;
        let m: IpcMsg = decode_at(payload, pos as u64, "ipc_msg")?;
        pos += 4 + payload.len();
        let body = take(
            data,
            pos,
            round_up(u64::from(m.msize), 8),
            "ipc message data",
        )?;
        pos += body.len();
    }
    Ok((pos - start) as u64)
}

impl RawImage {
    /// Encodes the image back to bytes; parse followed by encode reproduces the input.
    pub fn encode(&self) -> Result<Vec<u8>, FramingError> {
        let mut out = header_bytes(self.kind)?;
        for (index, e) in self.entries.iter().enumerate() {
            let len = u32::try_from(e.payload.len()).map_err(|_| FramingError::TooLarge {
                index,
                len: e.payload.len(),
            })?;
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&e.payload);
            out.extend_from_slice(&e.extra);
        }
        Ok(out)
    }

    /// Decodes every entry as `M` (use for kinds whose entries share one message).
    pub fn decode_entries<M: Message + Default>(&self) -> Result<Vec<M>, FramingError> {
        self.entries
            .iter()
            .enumerate()
            .map(|(i, e)| decode_at(&e.payload, e.offset, self.kind.entry_message_name(i)))
            .collect()
    }
}

#[cfg(test)]
mod tests;
