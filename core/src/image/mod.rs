//! The images directory: CRIU-framed image files, raw pages files, 0600 creation.
//!
//! - [`ImageDir`]: one directory of images; writes single-entry images, streams repeated
//!   entries through [`ImageWriter`], reads them back, and remembers what it wrote so a failed
//!   dump can remove it ([`ImageDir::discard_written`]). `inventory.img` is written last
//!   ([`ImageDir::write_inventory`]) so a directory without it is visibly incomplete.
//! - [`PagesWriter`] / [`PagesReader`]: the raw `pages-N.img` files and the page offsets
//!   pagemap entries index ([`page_offsets`]).
//! - [`compress`], [`compress_read`]: `--compress`, pages files as LZ4/zstd blocks, and
//!   reading them back (restore decompresses them into a memfd).
//! - [`anon`]: `crit anonymise`, a copy of a directory without memory, data or names.
//! - [`inspect`]: crit's `x DIR ps|fds|mems|rss` views.
//! - [`digest`]: `criu-rs-pages-digest.bin`, the per-MiB digests of every pages file, written
//!   by [`ImageDir::write_inventory`] from what the [`PagesWriter`]s hashed.

pub mod anon;
pub mod compress;
mod compress_pool;
pub mod compress_read;
pub mod digest;
mod dir;
mod error;
pub mod inspect;
mod pages;
mod reader;
mod writer;

pub use criu_proto::{ImageKind, RawEntry, RawImage};
pub use dir::ImageDir;
pub use error::ImageError;
pub use pages::{
    PAGE_SIZE, PE_LAZY, PE_PARENT, PE_PRESENT, PagesReader, PagesWriter, new_pagemap_entry,
    page_offsets, pagemap_flags, pagemap_nr_pages,
};
pub use reader::EntryIter;
pub use writer::ImageWriter;

/// Result of image operations.
pub type Result<T, E = ImageError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests;
