//! Compiles bpf/netlock.c with clang into OUT_DIR/netlock.o, which src/ebpf.rs embeds.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../bpf");
    let source = root.join("netlock.c");
    println!("cargo:rerun-if-changed={}", source.display());
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let object = out.join("netlock.o");
    // The uapi headers (linux-libc-dev) include <asm/types.h>, which Debian keeps under the
    // host's multiarch directory.
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "x86_64".into());
    let multiarch = match arch.as_str() {
        "x86_64" => "x86_64-linux-gnu",
        "aarch64" => "aarch64-linux-gnu",
        "riscv64" => "riscv64-linux-gnu",
        "powerpc64" => "powerpc64le-linux-gnu",
        "s390x" => "s390x-linux-gnu",
        other => panic!("no multiarch include directory known for {other}"),
    };
    let status = Command::new("clang")
        .args(["-target", "bpf", "-O2", "-g", "-Wall", "-Werror", "-c"])
        .arg(format!("-I/usr/include/{multiarch}"))
        .arg(&source)
        .arg("-o")
        .arg(&object)
        .status()
        .unwrap_or_else(|e| {
            panic!("cannot run clang to build {}: {e}; install clang (apt-get install clang libbpf-dev)", source.display())
        });
    assert!(
        status.success(),
        "clang failed on {} ({status}); it needs clang, libbpf-dev and linux-libc-dev",
        source.display()
    );
}
