//! `criu check-images -D DIR`: verifies an images directory without restoring it (see
//! `criu_core::check_images`). Prints what it checked; exits 1 naming the file and offset of
//! the first problem.

use std::process::ExitCode;

use anyhow::{Context, Result};
use criu_core::check_images::check_images;
use criu_core::image::digest::DirDigest;

use crate::args::Options;

pub fn run(opts: &Options) -> Result<ExitCode> {
    let dir = super::images_dir(opts)?;
    let report =
        check_images(&dir).with_context(|| format!("checking images in {}", dir.display()))?;
    println!(
        "{} images parse; the tree of {} process(es) refers to no missing image",
        report.images, report.tasks
    );
    for (name, size) in &report.pages {
        println!("{name}: {size} bytes, as its pagemaps index");
    }
    match report.digest {
        DirDigest::Absent => println!(
            "no digest: {} is absent (images of CRIU or of an older criu-rs); pages not checked",
            criu_core::image::digest::DIGEST_FILE
        ),
        DirDigest::Verified { files, bytes } => println!(
            "pages match their digest: {files} file(s), {bytes} bytes ({})",
            criu_core::image::digest::DIGEST_FILE
        ),
    }
    if !report.skipped.is_empty() {
        println!("not images, skipped: {}", report.skipped.join(", "));
    }
    println!("Images look good.");
    Ok(ExitCode::SUCCESS)
}
