//! Helpers of the unix socket tests: C workloads built at test time, crit.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use criu_core::restore::{RestoreOptions, restore};
use criu_proto::framing::{RawImage, parse};
use criu_tests::{PidGuard, pid_exists};

pub fn workload(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("workloads")
        .join(name)
}

/// Builds `tests/workloads/NAME.c` into `dir`; `None` (a printed skip) without gcc outside CI.
pub fn build_c(name: &str, dir: &Path) -> Option<PathBuf> {
    let exe = dir.join(name);
    match Command::new("gcc")
        .args(["-O1", "-Wall", "-o"])
        .arg(&exe)
        .arg(workload(&format!("{name}.c")))
        .status()
    {
        Ok(s) => {
            assert!(s.success(), "gcc failed on {name}.c");
            Some(exe)
        }
        Err(e) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "gcc is missing in CI: {e}"
            );
            eprintln!("skipping: no gcc ({e})");
            None
        }
    }
}

/// `crit decode` of `image` succeeds (Debian's crit 3.17); skipped without crit outside CI.
pub fn crit_decodes(image: &Path) -> Option<String> {
    let out = match Command::new("crit")
        .args(["decode", "-i"])
        .arg(image)
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "crit is missing in CI: {e}"
            );
            eprintln!("not checking {} with crit: {e}", image.display());
            return None;
        }
    };
    assert!(
        out.status.success(),
        "crit decode {}: {}",
        image.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Copies every image of `from` into `to` (made).
pub fn copy_images(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("images") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
    }
}

/// Rewrites `dir/name` with `edit` applied to its parsed entries.
pub fn edit_image(dir: &Path, name: &str, edit: impl FnOnce(&mut RawImage)) {
    let path = dir.join(name);
    let mut img = parse(&std::fs::read(&path).expect("read image")).expect("parse image");
    edit(&mut img);
    std::fs::write(&path, img.encode().expect("encode")).expect("write image");
}

/// Restores `images`, which must fail naming every one of `want`, with nothing left.
pub fn restore_refused(images: &Path, pid: i32, want: &[&str]) {
    let opts = RestoreOptions {
        images_dir: images.to_path_buf(),
        detach: true,
        ..RestoreOptions::default()
    };
    let result = restore(&opts);
    let _guard = PidGuard::new(pid);
    let err = result.expect_err("a damaged image must be refused");
    let mut msg = err.to_string();
    let mut src = std::error::Error::source(&err);
    while let Some(e) = src {
        msg += &format!(": {e}");
        src = e.source();
    }
    for w in want {
        assert!(msg.contains(w), "{w:?} missing in: {msg}");
    }
    eprintln!("refused as expected: {msg}");
    assert!(!pid_exists(pid), "pid {pid} exists after a refused restore");
}
