//! `criu check-images -D DIR`: is an images directory whole and undamaged, without restoring
//! it? Every image parses (each entry decodes as its message), every image the tree refers to
//! exists and agrees with the others (the restore plan loads: pstree, cores, mm, pagemaps,
//! files, ...), every pages file has exactly the bytes its pagemaps index, and the pages match
//! `criu-rs-pages-digest.bin` when the directory has one (CRIU's images have none: "no
//! digest", not a failure). The first problem is the error, naming the file and the offset.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use criu_proto::ImageKind;
use criu_proto::json::{self, DecodeOptions, JsonError};

use crate::image::digest::{self, DigestError, DirDigest};
use crate::image::{ImageDir, ImageError, PAGE_SIZE, PE_PRESENT, pagemap_flags, pagemap_nr_pages};
use crate::restore::RestoreError;
use crate::restore::imgread::Images;
use crate::restore::plan::RestorePlan;

/// The first problem found in an images directory.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The directory cannot be listed, or a file in it cannot be read.
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An image does not parse (the source names the offset).
    #[error("{path} does not parse")]
    Parse {
        path: PathBuf,
        #[source]
        source: JsonError,
    },
    /// A pages file cannot be read or its compressed blocks are damaged.
    #[error("pages file")]
    Pages {
        #[source]
        source: ImageError,
    },
    /// A pagemap image does not parse.
    #[error("pagemap image")]
    Pagemap {
        #[source]
        source: ImageError,
    },
    /// The images do not form a restorable tree (a referenced image is missing, or two
    /// disagree); the source names the image and entry.
    #[error("the images do not make a restorable tree")]
    Tree {
        #[source]
        source: RestoreError,
    },
    /// A pages file is not exactly as long as its pagemaps say.
    #[error(
        "{pages} has {found} bytes but {pagemap} indexes {needed} (its pages end at offset {needed:#x})"
    )]
    PagesSize {
        pages: PathBuf,
        pagemap: PathBuf,
        needed: u64,
        found: u64,
    },
    /// A pagemap names a pages file that is not there.
    #[error("{pagemap} names {pages}, which is missing")]
    PagesMissing { pagemap: PathBuf, pages: PathBuf },
    /// The pages do not match their digest.
    #[error("pages digest")]
    Digest {
        #[source]
        source: DigestError,
    },
}

/// What a passing check saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// Image files parsed (pages files and the digest image not counted).
    pub images: usize,
    /// Files that are not images (logs, side files of plugins), left alone.
    pub skipped: Vec<String>,
    /// Processes of the tree.
    pub tasks: usize,
    /// Pages files and their sizes in bytes.
    pub pages: Vec<(String, u64)>,
    /// Whether the pages were checked against a digest image.
    pub digest: DirDigest,
}

/// Checks `dir`; see the module docs.
pub fn check_images(dir: &Path) -> Result<CheckReport, CheckError> {
    let read_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CheckError::Read { path, source }
    };
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(read_err(dir))?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()
        .map_err(read_err(dir))?;
    names.sort();
    let mut report = CheckReport {
        images: 0,
        skipped: Vec::new(),
        tasks: 0,
        pages: Vec::new(),
        digest: DirDigest::Absent,
    };
    let mut pagemaps = Vec::new();
    for name in &names {
        let path = dir.join(name);
        if name == digest::DIGEST_FILE || !path.is_file() {
            continue;
        }
        if crate::image::compress_read::is_compressed_pages_file(name) {
            // Its raw size; every block header is checked on the way.
            let size = crate::image::compress_read::pages_len(&path)
                .map_err(|source| CheckError::Pages { source })?;
            report.pages.push((name.clone(), size));
            continue;
        }
        let Some((kind, id)) = ImageKind::from_file_name(name) else {
            report.skipped.push(name.clone());
            continue;
        };
        if kind.is_raw() {
            let size = std::fs::metadata(&path).map_err(read_err(&path))?.len();
            report.pages.push((name.clone(), size));
            continue;
        }
        let data = std::fs::read(&path).map_err(read_err(&path))?;
        json::decode_as(kind, &data, DecodeOptions::default())
            .map_err(|source| CheckError::Parse { path, source })?;
        report.images += 1;
        if matches!(kind, ImageKind::Pagemap | ImageKind::ShmemPagemap) {
            pagemaps.push((kind, id.unwrap_or(0)));
        }
    }
    let images = Images::open(dir).map_err(|source| CheckError::Tree { source })?;
    let plan = RestorePlan::load(&images).map_err(|source| CheckError::Tree { source })?;
    report.tasks = plan.tasks.len();
    check_pages_sizes(dir, &pagemaps)?;
    report.digest = digest::verify_dir(dir).map_err(|source| CheckError::Digest { source })?;
    Ok(report)
}

/// Each pages file must be exactly as long as the longest pagemap naming it says (the
/// pagemaps of processes sharing an address space are copies naming one file).
fn check_pages_sizes(dir: &Path, pagemaps: &[(ImageKind, u64)]) -> Result<(), CheckError> {
    let idir = ImageDir::open(dir).map_err(|source| CheckError::Pagemap { source })?;
    // pages id -> (bytes needed, pagemap needing them, pages file name)
    let mut need: BTreeMap<u32, (u64, PathBuf, String)> = BTreeMap::new();
    for &(kind, id) in pagemaps {
        let (head, entries) = idir
            .read_pagemap_of(kind, id)
            .map_err(|source| CheckError::Pagemap { source })?;
        let bytes: u64 = entries
            .iter()
            .filter(|e| pagemap_flags(e) & PE_PRESENT != 0)
            .map(|e| pagemap_nr_pages(e).saturating_mul(PAGE_SIZE as u64))
            .fold(0u64, u64::saturating_add);
        let name = crate::image::compress_read::pages_file_name(&head).map_err(|what| {
            CheckError::Pagemap {
                source: ImageError::BadBlock {
                    path: idir.file_path(kind, id),
                    offset: 0,
                    what,
                },
            }
        })?;
        let slot = need
            .entry(head.pages_id)
            .or_insert((0, idir.file_path(kind, id), name.clone()));
        if bytes > slot.0 {
            *slot = (bytes, idir.file_path(kind, id), name);
        }
    }
    for (needed, pagemap, name) in need.into_values() {
        let pages = dir.join(&name);
        let found = match crate::image::compress_read::pages_len(&pages) {
            Ok(n) => n,
            Err(ImageError::Open { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return Err(CheckError::PagesMissing { pagemap, pages });
            }
            Err(source) => return Err(CheckError::Pages { source }),
        };
        if found != needed {
            return Err(CheckError::PagesSize {
                pages,
                pagemap,
                needed,
                found,
            });
        }
    }
    Ok(())
}
