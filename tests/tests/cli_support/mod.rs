//! Running the `criu` command line of this build (target/release/criu beside the test
//! binaries: `cargo test --workspace` builds it; `cargo test -p criu-tests` alone does not, so
//! build `-p criu-cli` first then).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `criu` binary of the workspace build these tests belong to.
pub fn criu() -> PathBuf {
    // <target>/<profile>/deps/<test> -> <target>/<profile>/criu
    let exe = std::env::current_exe().expect("test binary path");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary in <target>/<profile>/deps")
        .join("criu");
    assert!(
        bin.is_file(),
        "{} is missing: build it with cargo build --release -p criu-cli",
        bin.display()
    );
    bin
}

/// Runs `program` with `args`, stdin on /dev/null, and returns its output.
pub fn run(program: &Path, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()))
}

/// stdout and stderr of `out`, for messages and assertions.
pub fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
