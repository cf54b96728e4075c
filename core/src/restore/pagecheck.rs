//! The pages files checked against `criu-rs-pages-digest.bin` while the restore runs.
//!
//! The restored tasks read their pages from the pages files themselves (one copy); the check
//! reads the same files on another thread with a streaming hash, from the page cache the tasks
//! fill or use, and must pass before any task is resumed. A directory without a digest image
//! (CRIU's, or an older criu-rs's) cannot be checked: asked to check, the restore refuses it.
//! Only with `--verify-pages` ([`super::RestoreOptions::verify_pages`]).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use crate::image::digest::{self, DigestError};

use super::error::{RestoreError, Result};

/// A running check; dropping it stops and joins the thread.
#[derive(Debug)]
pub struct PageCheck {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<std::result::Result<Option<u64>, DigestError>>>,
}

impl PageCheck {
    /// Starts checking the pages files of `dir` (nothing to do without a digest image).
    pub fn start(dir: &Path) -> PageCheck {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let dir = dir.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("pages-digest".into())
            .spawn(move || check(&dir, &flag));
        match thread {
            Ok(t) => PageCheck {
                stop,
                thread: Some(t),
            },
            Err(e) => {
                // No thread: check on the caller's thread in finish().
                tracing::debug!(error = %e, "no pages-digest thread, checking at the end");
                PageCheck { stop, thread: None }
            }
        }
    }

    /// Waits for the check; `pid` (the root) names the tree in the error.
    pub fn finish(mut self, dir: &Path, pid: i32) -> Result<()> {
        let res = match self.thread.take() {
            Some(t) => t.join().unwrap_or_else(|_| {
                Err(DigestError::Format {
                    path: dir.join(digest::DIGEST_FILE),
                    offset: 0,
                    what: "the checking thread panicked".into(),
                })
            }),
            None => check(dir, &self.stop),
        };
        match res {
            Ok(Some(bytes)) => {
                tracing::info!(bytes, "pages match criu-rs-pages-digest.bin");
                Ok(())
            }
            Ok(None) => Err(RestoreError::PagesDigest {
                pid,
                source: DigestError::Absent {
                    path: dir.join(digest::DIGEST_FILE),
                },
            }),
            Err(source) => Err(RestoreError::PagesDigest { pid, source }),
        }
    }
}

impl Drop for PageCheck {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The whole check: `Ok(None)` without a digest image, else the bytes verified. Stops early
/// (with `Ok`) when `stop` is set: the restore failed anyway.
fn check(dir: &Path, stop: &AtomicBool) -> std::result::Result<Option<u64>, DigestError> {
    let t = Instant::now();
    let Some(files) = digest::read(dir)? else {
        return Ok(None);
    };
    digest::all_listed(dir, &files)?;
    let mut bytes = 0;
    for f in &files {
        digest::verify_file(dir, f, stop)?;
        bytes += f.size;
    }
    tracing::debug!(
        bytes,
        us = t.elapsed().as_micros() as u64,
        "pages digest checked"
    );
    Ok(Some(bytes))
}
