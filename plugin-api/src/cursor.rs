//! Walking an image body: CRIU's framing is a little-endian u32 length before each protobuf
//! entry, and some kinds put raw bytes (pipe data, ghost file contents) after an entry.

use crate::{ImageRef, PluginError};

/// A read position in the body of one image (as [`crate::RestoreContext::read_image`]
/// returns it). Every method checks bounds: a truncated or corrupt image gives
/// [`PluginError::BadImage`], never a panic.
#[derive(Debug)]
pub struct ImageCursor<'a> {
    image: ImageRef,
    data: &'a [u8],
    pos: usize,
}

impl<'a> ImageCursor<'a> {
    /// A cursor at the start of `data`, the body of `image` (named in errors).
    pub fn new(image: ImageRef, data: &'a [u8]) -> Self {
        ImageCursor {
            image,
            data,
            pos: 0,
        }
    }

    /// Whether everything has been read.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// The next framed entry, decoded; `None` at the end of the image.
    pub fn next_entry<M: prost::Message + Default>(&mut self) -> Result<Option<M>, PluginError> {
        if self.is_empty() {
            return Ok(None);
        }
        let len_bytes = self.take(4, "entry length")?;
        let len = u32::from_le_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
        let body = self.take(len as usize, "entry")?;
        M::decode(body).map(Some).map_err(|e| {
            PluginError::bad_image(
                self.image.to_string(),
                format!("undecodable entry at offset {}: {e}", self.pos - body.len()),
            )
        })
    }

    /// The next `len` raw bytes (the data that follows an entry).
    pub fn raw(&mut self, len: usize) -> Result<&'a [u8], PluginError> {
        self.take(len, "raw data")
    }

    /// Everything left (the unframed contents of a non-chunked ghost file).
    pub fn rest(&mut self) -> &'a [u8] {
        let rest = self.data.get(self.pos..).unwrap_or(&[]);
        self.pos = self.data.len();
        rest
    }

    fn take(&mut self, len: usize, what: &str) -> Result<&'a [u8], PluginError> {
        let end = self.pos.checked_add(len).filter(|&e| e <= self.data.len());
        match end {
            Some(end) => {
                let out = &self.data[self.pos..end];
                self.pos = end;
                Ok(out)
            }
            None => Err(PluginError::bad_image(
                self.image.to_string(),
                format!(
                    "truncated: {what} of {len} bytes at offset {} runs past the end ({} bytes)",
                    self.pos,
                    self.data.len()
                ),
            )),
        }
    }
}

/// Frames `entries` (each an encoded message with its trailing raw bytes) the way the core
/// writes an image body: for test contexts and tools.
pub fn frame_entries<'e>(entries: impl IntoIterator<Item = (&'e [u8], &'e [u8])>) -> Vec<u8> {
    let mut out = Vec::new();
    for (entry, extra) in entries {
        // Entries are small protobuf messages; anything near 4 GiB is a caller bug.
        let len = u32::try_from(entry.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(entry);
        out.extend_from_slice(extra);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use criu_proto::images::PipeDataEntry;
    use prost::Message;

    #[test]
    fn entries_and_raw_round_trip() {
        let e = PipeDataEntry {
            pipe_id: 7,
            bytes: 3,
            size: Some(65536),
        }
        .encode_to_vec();
        let body = frame_entries([(e.as_slice(), b"abc".as_slice())]);
        let mut c = ImageCursor::new(ImageRef::PIPES_DATA, &body);
        let got: PipeDataEntry = c.next_entry().unwrap().unwrap();
        assert_eq!(got.pipe_id, 7);
        assert_eq!(c.raw(got.bytes as usize).unwrap(), b"abc");
        assert!(c.next_entry::<PipeDataEntry>().unwrap().is_none());
    }

    #[test]
    fn truncation_is_an_error() {
        let e = PipeDataEntry {
            pipe_id: 7,
            bytes: 3,
            size: None,
        }
        .encode_to_vec();
        let body = frame_entries([(e.as_slice(), b"ab".as_slice())]);
        let mut c = ImageCursor::new(ImageRef::PIPES_DATA, &body);
        let got: PipeDataEntry = c.next_entry().unwrap().unwrap();
        assert!(matches!(
            c.raw(got.bytes as usize),
            Err(PluginError::BadImage { .. })
        ));
        let mut c = ImageCursor::new(ImageRef::PIPES_DATA, &[200, 0, 0, 0, 1]);
        assert!(c.next_entry::<PipeDataEntry>().is_err());
        let mut c = ImageCursor::new(ImageRef::PIPES_DATA, &[1, 0]);
        assert!(c.next_entry::<PipeDataEntry>().is_err());
    }

    #[test]
    fn fixture_pipes_data_decodes() {
        // pipes-data.img written by CRIU 4.2 (fixtures/criu-4.2-sample) minus its 8-byte header.
        let body: &[u8] = &[
            0x0a, 0, 0, 0, 0x08, 0xca, 0xf4, 0x0c, 0x10, 0x09, 0x18, 0x80, 0x80, 0x04, b'p', b'i',
            b'p', b'e', b'-', b'd', b'a', b't', b'a',
        ];
        let mut c = ImageCursor::new(ImageRef::PIPES_DATA, body);
        let e: PipeDataEntry = c.next_entry().unwrap().unwrap();
        assert_eq!((e.pipe_id, e.bytes, e.size), (211530, 9, Some(65536)));
        assert_eq!(c.raw(9).unwrap(), b"pipe-data");
        assert!(c.is_empty());
    }

    proptest::proptest! {
        /// Whatever entries and raw tails go in come back out, in order; any truncation of
        /// the body is an error or a shorter read, never a panic.
        #[test]
        fn frame_and_cursor_round_trip(
            items in proptest::collection::vec(
                (any_entry(), proptest::collection::vec(proptest::num::u8::ANY, 0..64)),
                0..8,
            ),
            cut in 0usize..512,
        ) {
            let encoded: Vec<(Vec<u8>, Vec<u8>)> = items
                .iter()
                .map(|(e, extra)| (e.encode_to_vec(), extra.clone()))
                .collect();
            let body = frame_entries(encoded.iter().map(|(e, x)| (e.as_slice(), x.as_slice())));
            let mut c = ImageCursor::new(ImageRef::PIPES_DATA, &body);
            for (e, extra) in &items {
                let got: PipeDataEntry = c.next_entry().unwrap().unwrap();
                proptest::prop_assert_eq!(&got, e);
                proptest::prop_assert_eq!(c.raw(extra.len()).unwrap(), extra.as_slice());
            }
            proptest::prop_assert!(c.is_empty());
            let short = &body[..body.len().saturating_sub(cut)];
            let mut c = ImageCursor::new(ImageRef::PIPES_DATA, short);
            for (_, extra) in &items {
                match c.next_entry::<PipeDataEntry>() {
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break,
                }
                if c.raw(extra.len()).is_err() {
                    break;
                }
            }
        }
    }

    fn any_entry() -> impl proptest::strategy::Strategy<Value = PipeDataEntry> {
        use proptest::prelude::*;
        (
            any::<u32>(),
            any::<u32>(),
            proptest::option::of(any::<u32>()),
        )
            .prop_map(|(pipe_id, bytes, size)| PipeDataEntry {
                pipe_id,
                bytes,
                size,
            })
    }
}
