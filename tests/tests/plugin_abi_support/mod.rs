//! Building the out-of-tree example plugin (`plugins/examples/eventfd`) the way a third party
//! would (its own workspace, `cargo build`), and installing it into a private plugin dir.

#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use criu_tests::ScratchDir;

/// Builds serialize: every variant shares one target dir and one output file name.
static BUILD: Mutex<()> = Mutex::new(());

/// The example crate's directory.
pub fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/examples/eventfd")
}

fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugin-examples")
}

/// Builds the example with `features` (release: the shape a distribution ships) and copies
/// `libcriu_eventfd.so` and, when `holder`, the `eventfd_holder` workload into a fresh
/// private directory (0755, files 0644/0755). `None` (with a printed reason) when cargo
/// cannot build it here.
pub fn build_example(name: &str, features: &[&str]) -> Option<(ScratchDir, PathBuf)> {
    let _lock = BUILD.lock().unwrap_or_else(|p| p.into_inner());
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["build", "--release", "--lib", "--example", "eventfd_holder"])
        .arg("--features")
        .arg(features.join(","))
        .arg("--manifest-path")
        .arg(example_dir().join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", target_dir())
        .output()
        .expect("run cargo");
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("failed to get") || stderr.contains("network") {
            eprintln!("skipping: cannot build the example plugin offline:\n{stderr}");
            return None;
        }
        panic!("building the example plugin failed:\n{stderr}");
    }
    let dir = ScratchDir::new(name);
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let release = target_dir().join("release");
    let so = dir.path().join("libcriu_eventfd.so");
    std::fs::copy(release.join("libcriu_eventfd.so"), &so).expect("copy plugin");
    std::fs::set_permissions(&so, std::fs::Permissions::from_mode(0o644)).unwrap();
    // The workload lives beside, outside the plugin dir's *.so pattern.
    let holder = dir.path().join("eventfd_holder");
    std::fs::copy(release.join("examples/eventfd_holder"), &holder).expect("copy workload");
    std::fs::set_permissions(&holder, std::fs::Permissions::from_mode(0o755)).unwrap();
    Some((dir, holder))
}

/// Builds the standalone `.so` of the in-tree plugins (`criu-plugin-files-so`,
/// `criu-plugin-pipes-so`) and copies them into a fresh private directory (0755, files 0644).
/// A separate target dir: the outer `cargo test` holds the lock of its own.
pub fn build_tree_plugins(name: &str) -> ScratchDir {
    let _lock = BUILD.lock().unwrap_or_else(|p| p.into_inner());
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new(cargo)
        .args(["build", "--release"])
        .args(["-p", "criu-plugin-files-so", "-p", "criu-plugin-pipes-so"])
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", target_dir())
        .output()
        .expect("run cargo");
    assert!(
        out.status.success(),
        "building the plugin .so files failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = ScratchDir::new(name);
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for so in ["libcriu_files.so", "libcriu_pipes.so"] {
        let dst = dir.path().join(so);
        std::fs::copy(target_dir().join("release").join(so), &dst).expect("copy plugin");
        std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    dir
}

/// The error and every source, one string.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(e) = src {
        s.push_str(": ");
        s.push_str(&e.to_string());
        src = e.source();
    }
    s
}
