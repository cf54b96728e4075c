//! Python-compatible text helpers crit's output depends on: base64.encodebytes,
//! quopri (binascii.b2a_qp), int(s, 0) and json.dump's formatting.

use std::fmt::Write as _;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

/// `base64.encodebytes`: lines of 76 characters, each ending in "\n" ("" for no data).
pub fn b64_encode_lines(data: &[u8]) -> String {
    let flat = STANDARD.encode(data);
    let mut out = String::with_capacity(flat.len() + flat.len() / 76 + 1);
    for chunk in flat.as_bytes().chunks(76) {
        // Base64 output is ASCII.
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out
}

/// `base64.decodebytes`: whitespace and line breaks are ignored.
pub fn b64_decode(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    let clean: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    STANDARD.decode(clean)
}

const QP_MAX_LINE: usize = 76;

/// `quopri.encodestring` (binascii.b2a_qp with text line breaks, no tab quoting).
pub fn quopri_encode(data: &[u8]) -> String {
    let mut out = String::new();
    let mut linelen = 0usize;
    let n = data.len();
    let mut i = 0;
    while i < n {
        let c = data[i];
        let next = data.get(i + 1).copied();
        let at_end = i + 1 == n;
        let quote = c > 126
            || c == b'='
            || (c == b'.'
                && linelen == 0
                && (at_end || matches!(next, Some(b'\n') | Some(b'\r') | Some(0))))
            || ((c == b'\t' || c == b' ') && at_end)
            || (c < 33 && c != b'\r' && c != b'\n' && c != b'\t' && c != b' ');
        if quote {
            if linelen + 3 >= QP_MAX_LINE {
                out.push_str("=\n");
                linelen = 0;
            }
            let _ = write!(out, "={c:02X}");
            linelen += 3;
        } else if c == b'\n' || (c == b'\r' && next == Some(b'\n')) {
            // Whitespace right before a line break is protected by quoting it.
            if let Some(&prev) = i.checked_sub(1).and_then(|p| data.get(p))
                && (prev == b' ' || prev == b'\t')
            {
                out.pop();
                let _ = write!(out, "={prev:02X}");
            }
            out.push('\n');
            linelen = 0;
            i += if c == b'\r' { 2 } else { 1 };
            continue;
        } else {
            if !at_end && next != Some(b'\n') && linelen + 1 >= QP_MAX_LINE {
                out.push_str("=\n");
                linelen = 0;
            }
            linelen += 1;
            out.push(c as char);
        }
        i += 1;
    }
    out
}

/// `quopri.decodestring`: "=XX" escapes and "=\n" soft breaks.
pub fn quopri_decode(text: &str) -> Vec<u8> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let hex = |c: u8| (c as char).to_digit(16);
    while i < b.len() {
        if b[i] == b'=' {
            if b.get(i + 1) == Some(&b'\n') {
                i += 2;
                continue;
            }
            if b.get(i + 1) == Some(&b'\r') && b.get(i + 2) == Some(&b'\n') {
                i += 3;
                continue;
            }
            if let (Some(h), Some(l)) = (
                b.get(i + 1).and_then(|&c| hex(c)),
                b.get(i + 2).and_then(|&c| hex(c)),
            ) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// Python's `int(text, 0)` for what JSON images hold: optional sign, then decimal or a
/// 0x / 0o / 0b prefix; underscores between digits allowed.
pub fn parse_int(text: &str) -> Option<i128> {
    let t = text.trim();
    let (neg, body) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let lower = body.to_ascii_lowercase();
    let (radix, digits) = if let Some(r) = lower.strip_prefix("0x") {
        (16, r.to_string())
    } else if let Some(r) = lower.strip_prefix("0o") {
        (8, r.to_string())
    } else if let Some(r) = lower.strip_prefix("0b") {
        (2, r.to_string())
    } else {
        // int("010", 0) is an error in Python; plain zeros are fine.
        if lower.len() > 1
            && lower.starts_with('0')
            && lower.bytes().any(|c| c != b'0' && c != b'_')
        {
            return None;
        }
        (10, lower.clone())
    };
    let digits = digits.strip_prefix('_').unwrap_or(&digits);
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
    {
        return None;
    }
    let v = i128::from_str_radix(&digits.replace('_', ""), radix).ok()?;
    Some(if neg { -v } else { v })
}

/// `json.dumps(value, indent=indent)` as Python writes it (ensure_ascii, ", " and ": "
/// separators without indent, "," and ": " with it).
pub fn python_json(value: &Value, indent: Option<usize>) -> String {
    let mut out = String::new();
    write_value(&mut out, value, indent, 0);
    out
}

fn newline(out: &mut String, indent: Option<usize>, level: usize) {
    if let Some(n) = indent {
        out.push('\n');
        out.extend(std::iter::repeat_n(' ', n * level));
    }
}

fn write_value(out: &mut String, v: &Value, indent: Option<usize>, level: usize) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) => write_str(out, s),
        Value::Array(a) => {
            if a.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push('[');
            for (i, item) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(if indent.is_some() { "," } else { ", " });
                }
                newline(out, indent, level + 1);
                write_value(out, item, indent, level + 1);
            }
            newline(out, indent, level);
            out.push(']');
        }
        Value::Object(m) => {
            if m.is_empty() {
                out.push_str("{}");
                return;
            }
            out.push('{');
            for (i, (k, item)) in m.iter().enumerate() {
                if i > 0 {
                    out.push_str(if indent.is_some() { "," } else { ", " });
                }
                newline(out, indent, level + 1);
                write_str(out, k);
                out.push_str(": ");
                write_value(out, item, indent, level + 1);
            }
            newline(out, indent, level);
            out.push('}');
        }
    }
}

fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_lines() {
        assert_eq!(b64_encode_lines(b"pipe-data"), "cGlwZS1kYXRh\n");
        assert_eq!(b64_encode_lines(b""), "");
        let long = b64_encode_lines(&[0u8; 100]);
        assert_eq!(long.lines().next().unwrap().len(), 76);
        assert_eq!(b64_decode(&long).unwrap(), vec![0u8; 100]);
    }

    #[test]
    fn quopri() {
        assert_eq!(quopri_encode(b"/tmp/sock"), "/tmp/sock");
        assert_eq!(quopri_encode(b"\0abstract"), "=00abstract");
        assert_eq!(quopri_encode(b"a=b"), "a=3Db");
        assert_eq!(quopri_encode(b"end "), "end=20");
        let long = vec![b'x'; 100];
        let enc = quopri_encode(&long);
        assert!(enc.contains("=\n"));
        assert_eq!(quopri_decode(&enc), long);
        assert_eq!(quopri_decode("=00abstract"), b"\0abstract");
    }

    #[test]
    fn ints() {
        assert_eq!(parse_int("0x10"), Some(16));
        assert_eq!(parse_int("-0x10"), Some(-16));
        assert_eq!(parse_int("42"), Some(42));
        assert_eq!(parse_int("0"), Some(0));
        assert_eq!(parse_int("010"), None);
        assert_eq!(parse_int("1_000"), Some(1000));
        assert_eq!(parse_int("zz"), None);
        assert_eq!(parse_int(""), None);
    }

    #[test]
    fn json_format() {
        let v: Value =
            serde_json::from_str(r#"{"a": [1, {"b": "é\n"}], "c": {}, "d": []}"#).unwrap();
        assert_eq!(
            python_json(&v, None),
            r#"{"a": [1, {"b": "\u00e9\n"}], "c": {}, "d": []}"#
        );
        assert_eq!(
            python_json(&v, Some(4)),
            "{\n    \"a\": [\n        1,\n        {\n            \"b\": \"\\u00e9\\n\"\n        }\n    ],\n    \"c\": {},\n    \"d\": []\n}"
        );
    }
}
