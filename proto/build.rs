//! Compiles CRIU's image schema (`images/*.proto`) with protox (no system protoc).
//!
//! Outputs in OUT_DIR:
//! - `images/_.rs`: prost types for every image message (files without a package).
//! - `rpc/_.rs`: prost types for `rpc.proto` (kept apart: its `criu_opts` would clash with
//!   `opts.proto`'s `CRIU_Opts` once both are turned into `CriuOpts`).
//! - `criu.fds`: the encoded FileDescriptorSet of everything, for prost-reflect at run time.

use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let dir = manifest.join("images");
    println!("cargo:rerun-if-changed={}", dir.display());

    let mut names: Vec<String> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".proto"))
        .collect();
    names.sort();
    for n in &names {
        println!("cargo:rerun-if-changed={}", dir.join(n).display());
    }

    // Everything, imports included, for the run-time descriptor pool. Encoded by protox
    // itself: prost_types would drop the `(criu)` extension options.
    let mut compiler = protox::Compiler::new([&dir])?;
    compiler.include_imports(true).include_source_info(false);
    compiler.open_files(&names)?;
    std::fs::write(out.join("criu.fds"), compiler.encode_file_descriptor_set())?;

    let image_names: Vec<String> = names
        .iter()
        .filter(|n| *n != "rpc.proto")
        .cloned()
        .collect();
    let mut images = compile(&dir, &image_names)?;
    // descriptor.proto is only needed for the `(criu)` option extension.
    images.file.retain(|f| f.package() != "google.protobuf");
    generate(images, &out.join("images"))?;

    let rpc = compile(&dir, &["rpc.proto".to_string()])?;
    generate(rpc, &out.join("rpc"))?;
    Ok(())
}

fn compile(
    dir: &Path,
    names: &[String],
) -> Result<prost_types::FileDescriptorSet, Box<dyn std::error::Error>> {
    let mut compiler = protox::Compiler::new([dir])?;
    compiler.include_imports(true).include_source_info(false);
    compiler.open_files(names)?;
    Ok(compiler.file_descriptor_set())
}

fn generate(
    fds: prost_types::FileDescriptorSet,
    out: &Path,
) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(out)?;
    prost_build::Config::new().out_dir(out).compile_fds(fds)?;
    Ok(())
}
