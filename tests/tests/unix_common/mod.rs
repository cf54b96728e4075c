//! Helpers of the unix socket tests: C workloads built at test time, crit.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

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
