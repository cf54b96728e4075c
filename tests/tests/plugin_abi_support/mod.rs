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

/// The example plugin's file name.
pub const EXAMPLE_SO: &str = "libcriu_example_eventfd.so";

/// The example plugin's name (the built-in one is `eventfd`).
pub const EXAMPLE_NAME: &str = "example-eventfd";

/// The example crate's directory.
pub fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/examples/eventfd")
}

fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugin-examples")
}

/// Builds the example with `features` (release: the shape a distribution ships) and copies
/// `libcriu_example_eventfd.so` and, when `holder`, the `eventfd_holder` workload into a fresh
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
    let so = dir.path().join(EXAMPLE_SO);
    std::fs::copy(release.join(EXAMPLE_SO), &so).expect("copy plugin");
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

/// Builds the example plugin against a modified copy of `criu-plugin-api`: crate version
/// `version`, and `mutate` applied to its `src/ffi/types.rs`. This is a plugin built
/// "months later" against another interface. Returns a private dir holding its `.so`.
pub fn build_against_modified_api(
    name: &str,
    version: &str,
    mutate: impl Fn(String) -> String,
) -> ScratchDir {
    let _lock = BUILD.lock().unwrap_or_else(|p| p.into_inner());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let root = root.canonicalize().unwrap();
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("modified-api-{name}"));
    let _ = std::fs::remove_dir_all(&work);
    copy_tree(&root.join("plugin-api"), &work.join("plugin-api"));
    copy_tree(&example_dir(), &work.join("eventfd"));
    let _ = std::fs::remove_dir_all(work.join("plugin-api/tests"));

    let types = work.join("plugin-api/src/ffi/types.rs");
    let text = std::fs::read_to_string(&types).unwrap();
    std::fs::write(&types, mutate(text)).unwrap();

    standalone_api_manifest(&root, &work.join("plugin-api"), version);
    let ex = work.join("eventfd/Cargo.toml");
    let text = std::fs::read_to_string(&ex)
        .unwrap()
        .replace("../../../plugin-api", "../plugin-api");
    std::fs::write(&ex, text).unwrap();

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // The shared target dir: only the two modified crates are rebuilt.
    let target = target_dir();
    let out = Command::new(cargo)
        .args(["build", "--release", "--lib"])
        .arg("--manifest-path")
        .arg(&ex)
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .expect("run cargo");
    assert!(
        out.status.success(),
        "building against the modified API failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = ScratchDir::new(name);
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let so = dir.path().join(EXAMPLE_SO);
    std::fs::copy(target.join("release").join(EXAMPLE_SO), &so).expect("copy plugin");
    std::fs::set_permissions(&so, std::fs::Permissions::from_mode(0o644)).unwrap();
    dir
}

/// Writes a stand-alone `Cargo.toml` for the copy of `criu-plugin-api` in `api_dir` (the
/// workspace's inherited keys spelled out), crate version `version`.
fn standalone_api_manifest(root: &Path, api_dir: &Path, version: &str) {
    standalone_api_manifest_with_proto(root, api_dir, version, &root.join("proto"));
}

/// [`standalone_api_manifest`] with the `criu-proto` crate at `proto`.
fn standalone_api_manifest_with_proto(root: &Path, api_dir: &Path, version: &str, proto: &Path) {
    // Stand-alone manifest: the workspace's inherited keys spelled out.
    let ws = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let nix_line = ws
        .lines()
        .find(|l| l.starts_with("nix ="))
        .expect("nix in the workspace");
    let manifest = format!(
        r#"[package]
name = "criu-plugin-api"
version = "{version}"
edition = "2024"

[dependencies]
criu-proto = {{ path = "{proto}" }}
thiserror = "2"
inventory = "0.3"
prost = "0.14"
{nix_line}
libc = "0.2"
abi_stable = "0.11.3"
tracing = "0.1"
"#,
        proto = proto.display()
    );
    std::fs::write(api_dir.join("Cargo.toml"), manifest).unwrap();
}

/// Makes the `criu-proto` crate in `proto_dir` (taken out of the workspace) build on its own:
/// each key it inherits from the workspace spelled out from the workspace's `Cargo.toml`.
fn standalone_proto_manifest(root: &Path, proto_dir: &Path) {
    let ws = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let ws_value = |key: &str| -> String {
        ws.lines()
            .find_map(|l| {
                let (k, v) = l.split_once('=')?;
                (k.trim() == key).then(|| v.trim().to_string())
            })
            .unwrap_or_else(|| panic!("{key} not in the workspace's Cargo.toml"))
    };
    let path = proto_dir.join("Cargo.toml");
    let mut out = String::new();
    let mut in_lints = false;
    for line in std::fs::read_to_string(&path).unwrap().lines() {
        if line.starts_with('[') {
            in_lints = line == "[lints]";
        }
        if in_lints {
            continue;
        }
        match line.strip_suffix(".workspace = true") {
            Some(key) => out.push_str(&format!("{key} = {}\n", ws_value(key))),
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    std::fs::write(&path, out).unwrap();
}

/// The commit whose `criu-plugin-api` is plugin API 0.4 (the last before 0.5).
pub const API_0_4_COMMIT: &str = "3b70df62563bf8d50cfd1f51dda905948e94377b";

/// Builds the example plugin and its workload exactly as they were at `commit` (its own
/// `criu-plugin-api` and example sources, taken with `git archive`): a plugin built against
/// an older plugin API, as a third party would still ship it. Returns a private dir with the
/// `.so` and the workload, or `None` with a printed reason when the commit is not in this
/// checkout (a shallow clone).
pub fn build_at_commit(name: &str, commit: &str) -> Option<(ScratchDir, PathBuf)> {
    let _lock = BUILD.lock().unwrap_or_else(|p| p.into_inner());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap();
    let git = |args: &[&str]| Command::new("git").arg("-C").arg(&root).args(args).output();
    match git(&["cat-file", "-e", &format!("{commit}^{{commit}}")]) {
        Ok(o) if o.status.success() => {}
        _ => {
            eprintln!("skipping: commit {commit} is not in this checkout (shallow clone?)");
            return None;
        }
    }
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("at-commit-{name}"));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let archive = work.join("src.tar");
    let out = git(&[
        "archive",
        "-o",
        archive.to_str().unwrap(),
        commit,
        "plugin-api",
        "plugins/examples/eventfd",
        "proto",
    ])
    .expect("run git");
    assert!(
        out.status.success(),
        "git archive: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("tar")
        .arg("-xf")
        .arg(&archive)
        .arg("-C")
        .arg(&work)
        .output()
        .expect("run tar");
    assert!(
        out.status.success(),
        "tar: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(work.join("plugin-api/tests"));
    // Its own criu-proto too: a plugin built then saw the schema of then.
    standalone_proto_manifest(&root, &work.join("proto"));
    standalone_api_manifest_with_proto(
        &root,
        &work.join("plugin-api"),
        env!("CARGO_PKG_VERSION"),
        &work.join("proto"),
    );

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target = target_dir();
    let out = Command::new(cargo)
        .args(["build", "--release", "--lib", "--example", "eventfd_holder"])
        .arg("--manifest-path")
        .arg(work.join("plugins/examples/eventfd/Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .expect("run cargo");
    assert!(
        out.status.success(),
        "building the example at {commit} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = ScratchDir::new(name);
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let release = target.join("release");
    let so = dir.path().join(EXAMPLE_SO);
    std::fs::copy(release.join(EXAMPLE_SO), &so).expect("copy plugin");
    std::fs::set_permissions(&so, std::fs::Permissions::from_mode(0o644)).unwrap();
    let holder = dir.path().join("eventfd_holder");
    std::fs::copy(release.join("examples/eventfd_holder"), &holder).expect("copy workload");
    std::fs::set_permissions(&holder, std::fs::Permissions::from_mode(0o755)).unwrap();
    Some((dir, holder))
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if entry.file_type().unwrap().is_dir() {
            if entry.file_name() != "target" {
                copy_tree(&src, &dst);
            }
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}
