//! A tmpfs's contents as CRIU keeps them: `tmpfs-dev-<dev>.tar.gz.img`, a gzip'd tar of
//! the mount's root (CRIU runs `tar --create --gzip --one-file-system --numeric-owner`).
//! Kept: regular files, directories, symlinks, device nodes and FIFOs, with modes, numeric
//! owners and mtimes; mounts below are not entered (their mountpoint directories are
//! made by the restore). Not kept: extended attributes, hard links between files (each
//! name gets its own copy), sockets (skipped, as tar does).

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;

/// A failure to archive or unpack a tmpfs.
#[derive(Debug, thiserror::Error)]
pub enum TmpfsError {
    #[error("archiving {path} into {image}")]
    Archive {
        path: PathBuf,
        image: String,
        #[source]
        source: std::io::Error,
    },
    #[error("unpacking {image} into {path}")]
    Unpack {
        path: PathBuf,
        image: String,
        #[source]
        source: std::io::Error,
    },
}

/// Writes the contents of the mount whose root directory is `root` (device `dev`: entries of
/// other devices, mounts below it, are left out) as a gzip'd tar into `out`.
pub fn archive(root: &Path, dev: u64, out: File, image: &str) -> Result<(), TmpfsError> {
    let err = |path: &Path, source| TmpfsError::Archive {
        path: path.to_path_buf(),
        image: image.to_string(),
        source,
    };
    let gz = GzEncoder::new(BufWriter::new(out), Compression::fast());
    let mut tar = tar::Builder::new(gz);
    tar.follow_symlinks(false);
    walk(&mut tar, root, Path::new(""), dev).map_err(|(p, e)| err(&p, e))?;
    let gz = tar.into_inner().map_err(|e| err(root, e))?;
    let mut w = gz.finish().map_err(|e| err(root, e))?;
    w.flush().map_err(|e| err(root, e))
}

type WalkError = (PathBuf, std::io::Error);

fn walk<W: Write>(
    tar: &mut tar::Builder<W>,
    root: &Path,
    rel: &Path,
    dev: u64,
) -> Result<(), WalkError> {
    let dir = root.join(rel);
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| (dir.clone(), e))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(|e| (dir.clone(), e))?;
    names.sort();
    for name in names {
        let r = rel.join(&name);
        let full = root.join(&r);
        let md = std::fs::symlink_metadata(&full).map_err(|e| (full.clone(), e))?;
        if md.dev() != dev || md.file_type().is_socket() {
            continue;
        }
        tar.append_path_with_name(&full, &r)
            .map_err(|e| (full.clone(), e))?;
        if md.is_dir() {
            walk(tar, root, &r, dev)?;
        }
    }
    Ok(())
}

/// Unpacks the gzip'd tar `image` (opened as `file`) into `dst` with modes, numeric owners
/// and mtimes. Entries leaving `dst` (`..`, through symlinks) are refused by the tar reader.
pub fn unpack(file: File, dst: &Path, image: &str) -> Result<(), TmpfsError> {
    let mut ar = tar::Archive::new(GzDecoder::new(BufReader::new(file)));
    ar.set_preserve_permissions(true);
    ar.set_preserve_ownerships(true);
    ar.set_preserve_mtime(true);
    ar.set_unpack_xattrs(true);
    ar.set_overwrite(true);
    ar.unpack(dst).map_err(|source| TmpfsError::Unpack {
        path: dst.to_path_buf(),
        image: image.to_string(),
        source,
    })
}
