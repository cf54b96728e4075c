//! Parsers for `/proc/PID/*` files.
//!
//! Every file has a pure `parse_*(&str)` entry (unit-tested on real samples, fuzz-friendly:
//! bad input gives a [`ParseError`], never a panic) and a thin reader that adds the path to
//! the error. Readers take a pid and, where it matters, a tid.

pub mod fdinfo;
pub mod limits;
pub mod locks;
pub mod maps;
pub mod misc;
pub mod mountinfo;
pub mod pagemap;
pub mod stat;
pub mod status;

use std::fmt;
use std::path::PathBuf;

/// What was wrong with the text of a /proc file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number (0 when the whole file is at fault).
    pub line: usize,
    pub what: String,
}

impl ParseError {
    pub(crate) fn new(line: usize, what: impl Into<String>) -> Self {
        Self {
            line,
            what: what.into(),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.what)
    }
}

impl std::error::Error for ParseError {}

/// Failure to read or understand a /proc file.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("unexpected content in {path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: ParseError,
    },
}

impl ProcError {
    /// The task behind the file is gone (or going): ENOENT, or ESRCH which reads of a dying
    /// task's files return.
    pub fn is_gone(&self) -> bool {
        match self {
            ProcError::Read { source, .. } => {
                source.kind() == std::io::ErrorKind::NotFound
                    || source.raw_os_error() == Some(libc::ESRCH)
            }
            ProcError::Parse { .. } => false,
        }
    }

    /// The io error kind when the read itself failed (e.g. NotFound for a vanished task).
    pub fn io_kind(&self) -> Option<std::io::ErrorKind> {
        match self {
            ProcError::Read { source, .. } => Some(source.kind()),
            ProcError::Parse { .. } => None,
        }
    }
}

/// `/proc/PID/NAME`.
pub fn pid_path(pid: i32, name: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/{name}"))
}

/// `/proc/PID/task/TID/NAME`.
pub fn tid_path(pid: i32, tid: i32, name: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/task/{tid}/{name}"))
}

/// Read a whole /proc file as text (lossy: /proc text is ASCII except file names).
pub fn read_text(path: PathBuf) -> Result<(PathBuf, String), ProcError> {
    match std::fs::read(&path) {
        Ok(bytes) => {
            let text = match String::from_utf8(bytes) {
                Ok(s) => s,
                Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
            };
            Ok((path, text))
        }
        Err(source) => Err(ProcError::Read { path, source }),
    }
}

/// Read `path` and run `parse` on it, attaching the path to any error.
pub fn read_parsed<T>(
    path: PathBuf,
    parse: impl FnOnce(&str) -> Result<T, ParseError>,
) -> Result<T, ProcError> {
    let (path, text) = read_text(path)?;
    parse(&text).map_err(|source| ProcError::Parse { path, source })
}

/// Parse a decimal number with context.
pub(crate) fn num<T: std::str::FromStr>(s: &str, line: usize, what: &str) -> Result<T, ParseError> {
    s.trim()
        .parse::<T>()
        .map_err(|_| ParseError::new(line, format!("bad {what}: {s:?}")))
}

/// Parse a hexadecimal u64 (no 0x prefix) with context.
pub(crate) fn hex_u64(s: &str, line: usize, what: &str) -> Result<u64, ParseError> {
    u64::from_str_radix(s.trim(), 16)
        .map_err(|_| ParseError::new(line, format!("bad hex {what}: {s:?}")))
}

/// Split "Key:\tvalue" lines; yields (1-based line number, key, value trimmed).
pub(crate) fn key_values(text: &str) -> impl Iterator<Item = (usize, &str, &str)> {
    text.lines().enumerate().filter_map(|(i, l)| {
        let (k, v) = l.split_once(':')?;
        Some((i + 1, k.trim(), v.trim()))
    })
}
