//! Netlink messages as bytes: splitting a stream of them, reading their attributes and
//! building requests. Pure code (no socket), so the codecs are unit-tested.

/// Length of `struct nlmsghdr`.
pub const HDR: usize = 16;
/// `NLM_F_REQUEST`, `NLM_F_ACK`, `NLM_F_DUMP`, `NLM_F_EXCL`, `NLM_F_CREATE`.
pub const F_REQUEST: u16 = 0x1;
pub const F_ACK: u16 = 0x4;
pub const F_DUMP: u16 = 0x300;
pub const F_EXCL: u16 = 0x200;
pub const F_CREATE: u16 = 0x400;
/// `NLMSG_ERROR`, `NLMSG_DONE`.
pub const ERROR: u16 = 2;
pub const DONE: u16 = 3;
/// `NLA_F_NESTED | NLA_F_NET_BYTEORDER`: flag bits of an attribute type.
const NLA_FLAGS: u16 = 0xc000;

/// `NLMSG_ALIGN` / `RTA_ALIGN`: 4 bytes.
pub fn align(n: usize) -> usize {
    (n + 3) & !3
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Splits `buf` into whole messages (each with its header; padding dropped). A message
/// whose length is under a header or runs past the end is an error naming its index.
pub fn split(buf: &[u8]) -> Result<Vec<&[u8]>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        let left = buf.len() - at;
        if left < HDR {
            return Err(format!(
                "message {}: {left} bytes left, less than a netlink header",
                out.len()
            ));
        }
        let len = u32_at(buf, at) as usize;
        if len < HDR || len > left {
            return Err(format!(
                "message {}: length {len} with {left} bytes left",
                out.len()
            ));
        }
        out.push(&buf[at..at + len]);
        at += align(len).min(left);
    }
    Ok(out)
}

/// The type of message `m` (a slice from [`split`]).
pub fn msg_type(m: &[u8]) -> u16 {
    u16_at(m, 4)
}

/// The sequence number of message `m`.
pub fn msg_seq(m: &[u8]) -> u32 {
    u32_at(m, 8)
}

/// The payload of message `m` (after its header).
pub fn payload(m: &[u8]) -> &[u8] {
    &m[HDR..]
}

/// The errno of an `NLMSG_ERROR` message (0: an acknowledgement).
pub fn error_code(m: &[u8]) -> Result<i32, String> {
    let p = payload(m);
    if p.len() < 4 {
        return Err("NLMSG_ERROR shorter than its error code".into());
    }
    Ok(-(u32_at(p, 0) as i32))
}

/// The attributes in `b` (after a message's fixed part) as (type without flag bits, data).
pub fn attrs(mut b: &[u8]) -> Result<Vec<(u16, &[u8])>, String> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let len = u16_at(b, 0) as usize;
        if len < 4 || len > b.len() {
            return Err(format!(
                "attribute {} (type {}): length {len} with {} bytes left",
                out.len(),
                u16_at(b, 2) & !NLA_FLAGS,
                b.len()
            ));
        }
        out.push((u16_at(b, 2) & !NLA_FLAGS, &b[4..len]));
        b = &b[align(len).min(b.len())..];
    }
    Ok(out)
}

/// The first attribute of type `ty` in a list from [`attrs`].
pub fn find<'a>(list: &[(u16, &'a [u8])], ty: u16) -> Option<&'a [u8]> {
    list.iter().find(|(t, _)| *t == ty).map(|(_, d)| *d)
}

/// A native-endian u32 attribute value, if it has four bytes.
pub fn as_u32(d: &[u8]) -> Option<u32> {
    (d.len() == 4).then(|| u32_at(d, 0))
}

/// A NUL-terminated string attribute value.
pub fn as_str(d: &[u8]) -> String {
    let end = d.iter().position(|&c| c == 0).unwrap_or(d.len());
    String::from_utf8_lossy(&d[..end]).into_owned()
}

/// A request being built: header, fixed part, attributes (nests closed with
/// [`Builder::end_nest`]).
#[derive(Debug, Clone)]
pub struct Builder {
    buf: Vec<u8>,
    nests: Vec<usize>,
}

impl Builder {
    /// A message of type `ty` with `flags` and the fixed part `fixed` (e.g. an ifinfomsg).
    pub fn new(ty: u16, flags: u16, fixed: &[u8]) -> Builder {
        let mut buf = vec![0u8; HDR];
        buf[4..6].copy_from_slice(&ty.to_ne_bytes());
        buf[6..8].copy_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(fixed);
        buf.resize(align(buf.len()), 0);
        Builder {
            buf,
            nests: Vec::new(),
        }
    }

    /// Adds attribute `ty` holding `data`.
    pub fn attr(&mut self, ty: u16, data: &[u8]) -> &mut Builder {
        let len = 4 + data.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.buf.resize(align(self.buf.len()), 0);
        self
    }

    /// Adds a NUL-terminated string attribute.
    pub fn attr_str(&mut self, ty: u16, s: &str) -> &mut Builder {
        let mut d = s.as_bytes().to_vec();
        d.push(0);
        self.attr(ty, &d)
    }

    /// Opens a nested attribute `ty`; what follows goes inside until [`Builder::end_nest`].
    pub fn nest(&mut self, ty: u16) -> &mut Builder {
        self.nests.push(self.buf.len());
        self.attr(ty, &[])
    }

    /// Closes the innermost nest.
    pub fn end_nest(&mut self) -> &mut Builder {
        if let Some(at) = self.nests.pop() {
            let len = (self.buf.len() - at) as u16;
            self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
        }
        self
    }

    /// Appends raw bytes (a fixed struct inside a nest, e.g. a veth peer's ifinfomsg).
    pub fn raw(&mut self, data: &[u8]) -> &mut Builder {
        self.buf.extend_from_slice(data);
        self.buf.resize(align(self.buf.len()), 0);
        self
    }

    /// The finished message, its length set.
    pub fn finish(mut self) -> Vec<u8> {
        while !self.nests.is_empty() {
            self.end_nest();
        }
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }
}

/// Sets the flags and sequence number of message `m` (a whole message, e.g. from an image).
pub fn set_flags_seq(m: &mut [u8], flags: u16, seq: u32) {
    m[6..8].copy_from_slice(&flags.to_ne_bytes());
    m[8..12].copy_from_slice(&seq.to_ne_bytes());
}

/// A `struct ifinfomsg` (16 bytes).
pub fn ifinfomsg(family: u8, ty: u16, index: i32, flags: u32, change: u32) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[0] = family;
    b[2..4].copy_from_slice(&ty.to_ne_bytes());
    b[4..8].copy_from_slice(&index.to_ne_bytes());
    b[8..12].copy_from_slice(&flags.to_ne_bytes());
    b[12..16].copy_from_slice(&change.to_ne_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn built_message_splits_back_with_nested_attributes() {
        let mut b = Builder::new(16, F_REQUEST, &ifinfomsg(0, 0, 3, 1, 1));
        b.attr_str(3, "veth0")
            .nest(18)
            .attr_str(1, "veth")
            .end_nest();
        b.attr(4, &1500u32.to_ne_bytes());
        let m = b.finish();
        let msgs = split(&m).unwrap();
        assert_eq!(msgs.len(), 1);
        assert_eq!(msg_type(msgs[0]), 16);
        let a = attrs(&payload(msgs[0])[16..]).unwrap();
        assert_eq!(as_str(find(&a, 3).unwrap()), "veth0");
        assert_eq!(as_u32(find(&a, 4).unwrap()), Some(1500));
        let info = attrs(find(&a, 18).unwrap()).unwrap();
        assert_eq!(as_str(find(&info, 1).unwrap()), "veth");
    }

    #[test]
    fn cut_messages_and_attributes_are_errors() {
        let m = Builder::new(20, 0, &[0; 8]).finish();
        let err = split(&m[..m.len() - 2]).unwrap_err();
        assert!(err.contains("message 0"), "{err}");
        assert!(
            split(&m[..10])
                .unwrap_err()
                .contains("less than a netlink header")
        );
        assert!(attrs(&[8, 0, 1, 0, 0]).unwrap_err().contains("attribute 0"));
    }

    proptest! {
        #[test]
        fn any_attributes_round_trip(list in proptest::collection::vec(
            (1u16..0x3fff, proptest::collection::vec(any::<u8>(), 0..40)), 0..12)) {
            let mut b = Builder::new(20, F_REQUEST, &[1, 2, 3, 4, 5, 6, 7, 8]);
            for (t, d) in &list {
                b.attr(*t, d);
            }
            let m = b.finish();
            let two = [m.clone(), m].concat();
            let msgs = split(&two).unwrap();
            prop_assert_eq!(msgs.len(), 2);
            let got = attrs(&payload(msgs[1])[8..]).unwrap();
            let got: Vec<_> = got.into_iter().map(|(t, d)| (t, d.to_vec())).collect();
            prop_assert_eq!(got, list);
        }
    }
}
