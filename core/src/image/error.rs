//! Errors of the images directory; each names the file and, where it applies, the offset.

use std::path::PathBuf;

use criu_proto::{FramingError, ImageKind};

/// A failed image operation.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Opening, creating or checking the images directory failed.
    #[error("images directory {path}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Opening or creating an image file failed.
    #[error("cannot open image {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Reading an image file failed.
    #[error("cannot read image {path} at offset {offset}")]
    Read {
        path: PathBuf,
        offset: u64,
        #[source]
        source: std::io::Error,
    },
    /// Writing an image file failed.
    #[error("cannot write image {path} at offset {offset}")]
    Write {
        path: PathBuf,
        offset: u64,
        #[source]
        source: std::io::Error,
    },
    /// The file's contents are not a valid image (the source names the offset).
    #[error("corrupt image {path}")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: FramingError,
    },
    /// A single-entry image does not hold exactly one entry.
    #[error("image {path} holds {count} entries, expected exactly one")]
    EntryCount { path: PathBuf, count: usize },
    /// A pagemap image lacks its leading pagemap_head.
    #[error("pagemap image {path} has no pagemap_head entry")]
    NoPagemapHead { path: PathBuf },
    /// The operation needs a framed image but the kind is raw, or the reverse.
    #[error("{kind} cannot be used for {what} (path {path})")]
    WrongKind {
        kind: ImageKind,
        what: &'static str,
        path: PathBuf,
    },
    /// Pages must be written and read in whole pages.
    #[error("pages file {path}: {len} bytes at offset {offset} is not a whole number of pages")]
    Unaligned {
        path: PathBuf,
        offset: u64,
        len: u64,
    },
    /// A block of a compressed pages file is damaged (header or frame).
    #[error("corrupt compressed pages {path}: block at offset {offset}: {what}")]
    BadBlock {
        path: PathBuf,
        offset: u64,
        what: String,
    },
    /// A writer was used after it failed.
    #[error("image writer for {path} failed earlier; refusing more entries")]
    Poisoned { path: PathBuf },
}
