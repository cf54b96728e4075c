//! Placeholders for names and addresses: every distinct value gets its own, the same one
//! wherever it appears, so relations between images survive anonymisation.

use std::collections::HashMap;

/// The tables of one anonymisation run (one images directory).
#[derive(Debug, Default)]
pub struct Placeholders {
    /// Path components and plain names: `b"alice"` -> 7 (written `p7`).
    names: HashMap<Vec<u8>, usize>,
    /// IP addresses as CRIU stores them (1 word for IPv4, 4 for IPv6) -> their placeholder.
    addrs: HashMap<Vec<u32>, Vec<u32>>,
}

impl Placeholders {
    /// A name or path with each component replaced: `/home/alice/x` -> `/p1/p2/p3`. Slashes,
    /// empty components, `.` and `..` are kept, so the directory structure is too; a leading
    /// NUL (an abstract unix socket name) is kept.
    pub fn name(&mut self, s: &[u8]) -> Vec<u8> {
        let (lead, rest) = match s.split_first() {
            Some((0, rest)) => (Some(0u8), rest),
            _ => (None, s),
        };
        let mut out = Vec::with_capacity(s.len() + 4);
        out.extend(lead);
        for (i, comp) in rest.split(|&b| b == b'/').enumerate() {
            if i > 0 {
                out.push(b'/');
            }
            out.extend_from_slice(&self.component(comp));
        }
        out
    }

    /// [`Placeholders::name`] for a protobuf string.
    pub fn name_str(&mut self, s: &str) -> String {
        // Placeholders are ASCII and the separators are kept as they were: still UTF-8.
        String::from_utf8_lossy(&self.name(s.as_bytes())).into_owned()
    }

    fn component(&mut self, comp: &[u8]) -> Vec<u8> {
        if comp.is_empty() || comp == b"." || comp == b".." {
            return comp.to_vec();
        }
        let next = self.names.len() + 1;
        let n = *self.names.entry(comp.to_vec()).or_insert(next);
        format!("p{n}").into_bytes()
    }

    /// An IP address (`src_addr`/`dst_addr` words) replaced by a placeholder of the same
    /// family: `10.x.y.z` or `fd00::x:y` (bytes in network order). The unspecified
    /// address and loopback are kept: they say how a socket is bound, not where.
    pub fn addr(&mut self, words: &[u32]) -> Vec<u32> {
        if is_any_or_loopback(words) {
            return words.to_vec();
        }
        let next = self.addrs.len() as u32 + 1;
        self.addrs
            .entry(words.to_vec())
            .or_insert_with(|| placeholder_addr(words.len(), next))
            .clone()
    }
}

/// Placeholder number `n` as `len` words: `10.x.y.z` for IPv4, `fd00::x:y` otherwise.
fn placeholder_addr(len: usize, n: u32) -> Vec<u32> {
    let b = n.to_be_bytes();
    if len == 1 {
        return vec![u32::from_ne_bytes([10, b[1], b[2], b[3]])];
    }
    let mut v = vec![0u32; len];
    if let Some(first) = v.first_mut() {
        *first = u32::from_ne_bytes([0xfd, 0, 0, 0]);
    }
    if let Some(last) = v.last_mut() {
        *last = u32::from_ne_bytes(b);
    }
    v
}

/// The words hold bytes in network order (CRIU copies `struct in_addr`/`in6_addr` as is).
fn is_any_or_loopback(words: &[u32]) -> bool {
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    match bytes.len() {
        4 => bytes == [0, 0, 0, 0] || bytes[0] == 127,
        16 => {
            let v4_mapped = bytes[..10].iter().all(|&b| b == 0) && bytes[10..12] == [0xff, 0xff];
            bytes.iter().all(|&b| b == 0)
                || bytes[..15].iter().all(|&b| b == 0) && bytes[15] == 1
                || v4_mapped && (bytes[12..] == [0, 0, 0, 0] || bytes[12] == 127)
        }
        _ => words.iter().all(|&w| w == 0),
    }
}
