//! Anonymised images (`crit anonymise IN_DIR OUT_DIR`): a copy of an images directory that
//! can go into a bug report. It keeps the structure (tasks, VMAs and their sizes, pagemaps,
//! fds, files, sockets, their ids and relations) and removes what a process held:
//!
//! - memory: every pages file becomes zeros of the same length (sparse), compressed ones
//!   raw; the pagemaps are unchanged, so they still describe the same layout;
//! - data after entries (pipe/FIFO/socket queues, TCP queues, ghost file contents, SysV IPC
//!   contents, BPF map data) and data fields (tty data, siginfo, MAC addresses) are zeroed;
//! - registers are zeroed (the architecture, i.e. which field holds them, is kept);
//! - names (paths, comms, hostnames, mount sources, unix socket names, interface names)
//!   are mapped per component to placeholders (`/home/alice/x` -> `/p1/p2/p3`), IP
//!   addresses to `10.x.y.z`/`fd00::x:y`: the same value maps to the same placeholder in
//!   every image;
//! - raw images other than pages (netlink dumps, tmpfs tarballs) are left empty, and files
//!   that are not CRIU images (logs, plugins' own files, the pages digest) are not copied.
//!
//! `inventory_entry.criu_rs_anonymised` marks the result, and our restore refuses it.

mod names;
mod scrub;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use criu_proto::framing::{self, FramingError};
use criu_proto::images::IpcMsg;
use criu_proto::kind::{ExtraPayload, Framing};
use criu_proto::prost_reflect::{DynamicMessage, Value};
use criu_proto::{ImageKind, RawImage};
use prost::Message;

pub use names::Placeholders;

use super::compress_read::{is_compressed_pages_file, pages_len};
use super::dir::IMAGE_MODE;

/// A failed anonymisation; each names the file and, for a bad image, the entry.
#[derive(Debug, thiserror::Error)]
pub enum AnonError {
    /// The input directory cannot be listed or the output directory cannot be made.
    #[error("{what} {path}")]
    Dir {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The output directory exists and is not empty (nothing is overwritten).
    #[error("output directory {0} is not empty")]
    OutputNotEmpty(PathBuf),
    /// Reading an input file or writing an output file failed.
    #[error("cannot {what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An input image is not a valid image.
    #[error("corrupt image {path}")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: FramingError,
    },
    /// One entry does not decode as its message.
    #[error("image {path}: entry {index} is not a valid {message}")]
    Entry {
        path: PathBuf,
        index: usize,
        message: &'static str,
        #[source]
        source: prost::DecodeError,
    },
    /// A pages file could not be sized.
    #[error("pages file {path}")]
    Pages {
        path: PathBuf,
        #[source]
        source: Box<super::ImageError>,
    },
}

/// What [`anonymise_dir`] did, file by file (names relative to the directories).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Images rewritten with names mapped and data removed.
    pub images: Vec<String>,
    /// Pages files written as zeros (output names).
    pub pages: Vec<String>,
    /// Raw images written empty.
    pub emptied: Vec<String>,
    /// Input files not copied, with the reason.
    pub dropped: Vec<(String, &'static str)>,
}

/// Writes an anonymised copy of the images in `input` to `output` (created, 0700; it must
/// not exist or be empty). Files are handled in name order, so the same input gives the
/// same placeholders.
pub fn anonymise_dir(input: &Path, output: &Path) -> Result<Report, AnonError> {
    let dir_err = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source| AnonError::Dir { what, path, source }
    };
    let mut names: Vec<(String, PathBuf)> = std::fs::read_dir(input)
        .map_err(dir_err("cannot list images directory", input))?
        .map(|e| {
            let e = e.map_err(dir_err("cannot list images directory", input))?;
            Ok((e.file_name().to_string_lossy().into_owned(), e.path()))
        })
        .collect::<Result<_, AnonError>>()?;
    names.sort();
    make_output_dir(output)?;

    let mut ph = Placeholders::default();
    let mut report = Report::default();
    for (name, path) in names {
        let meta = std::fs::symlink_metadata(&path).map_err(io("stat", &path))?;
        if !meta.is_file() {
            report.dropped.push((name, "not a regular file"));
            continue;
        }
        if is_compressed_pages_file(&name) {
            let raw = name.rsplit_once('.').map_or(name.as_str(), |(r, _)| r);
            let len = pages_len(&path).map_err(|e| AnonError::Pages {
                path: path.clone(),
                source: Box::new(e),
            })?;
            write_zeros(&output.join(raw), len)?;
            report.pages.push(raw.to_string());
            continue;
        }
        let kind = match ImageKind::from_file_name(&name) {
            Some((k, _)) => Some(k),
            // A framed image under another name is still recognised by its magic.
            None => sniff(&path)?,
        };
        let Some(kind) = kind else {
            report.dropped.push((name, "not a CRIU image"));
            continue;
        };
        let out = output.join(&name);
        match kind.framing() {
            Framing::Raw if kind == ImageKind::Pages => {
                write_zeros(&out, meta.len())?;
                report.pages.push(name);
            }
            Framing::Raw => {
                write_zeros(&out, 0)?;
                report.emptied.push(name);
            }
            Framing::Legacy => report.dropped.push((name, "pre-1.0 image layout")),
            Framing::Inventory | Framing::Common | Framing::Service => {
                let data = std::fs::read(&path).map_err(io("read", &path))?;
                let bytes = anonymise_image(kind, &data, &mut ph, &path)?;
                write_file(&out, &bytes)?;
                report.images.push(name);
            }
        }
    }
    Ok(report)
}

/// The anonymised bytes of one framed image of `kind` (`path` names it in errors).
pub fn anonymise_image(
    kind: ImageKind,
    data: &[u8],
    ph: &mut Placeholders,
    path: &Path,
) -> Result<Vec<u8>, AnonError> {
    let corrupt = |source| AnonError::Corrupt {
        path: path.to_path_buf(),
        source,
    };
    let img = framing::split_as(kind, data).map_err(corrupt)?;
    let pool = criu_proto::descriptor_pool();
    let mut out = RawImage {
        kind,
        entries: Vec::with_capacity(img.entries.len()),
    };
    for (index, e) in img.entries.iter().enumerate() {
        let message = kind.entry_message_name(index);
        let desc = pool
            .get_message_by_name(message)
            .ok_or(FramingError::UnknownMessage(message))
            .map_err(corrupt)?;
        let mut msg = DynamicMessage::decode(desc, e.payload.as_slice()).map_err(|source| {
            AnonError::Entry {
                path: path.to_path_buf(),
                index,
                message,
                source,
            }
        })?;
        scrub::scrub(&mut msg, ph, false);
        if kind == ImageKind::Inventory {
            msg.set_field_by_name("criu_rs_anonymised", Value::Bool(true));
        }
        let mut entry = e.clone();
        entry.payload = msg.encode_to_vec();
        entry.extra = scrub_extra(kind, &e.extra).map_err(corrupt)?;
        out.entries.push(entry);
    }
    let bytes = out.encode().map_err(corrupt)?;
    // The lengths the entries give for their extra data are unchanged: check it anyway.
    framing::parse_as(kind, &bytes).map_err(corrupt)?;
    Ok(bytes)
}

/// The data after an entry, zeroed; SysV message queues keep their per-message framing.
fn scrub_extra(kind: ImageKind, extra: &[u8]) -> Result<Vec<u8>, FramingError> {
    let mut out = vec![0u8; extra.len()];
    if kind.extra_payload() != ExtraPayload::IpcMsg {
        return Ok(out);
    }
    let mut pos = 0;
    while pos < extra.len() {
        let rest = (extra.len() - pos) as u64;
        let truncated = |what, needed| FramingError::Truncated {
            offset: pos as u64,
            what,
            needed,
            available: rest,
        };
        let len = extra
            .get(pos..pos + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
            .ok_or_else(|| truncated("ipc message length", 4))? as usize;
        let msg = extra
            .get(pos + 4..pos + 4 + len)
            .ok_or_else(|| truncated("ipc message", 4 + len as u64))?;
        let m = IpcMsg::decode(msg).map_err(|source| FramingError::Decode {
            offset: pos as u64,
            message: "ipc_msg",
            source,
        })?;
        out[pos..pos + 4 + len].copy_from_slice(&extra[pos..pos + 4 + len]);
        pos += 4 + len + (u64::from(m.msize).div_ceil(8) * 8) as usize;
    }
    Ok(out)
}

/// The kind of a file whose name is not an image name, from its magic (None: not an image).
fn sniff(path: &Path) -> Result<Option<ImageKind>, AnonError> {
    let mut head = [0u8; 8];
    let mut f = File::open(path).map_err(io("open", path))?;
    let n = std::io::Read::read(&mut f, &mut head).map_err(io("read", path))?;
    Ok(framing::parse_header(&head[..n]).ok().map(|(k, _)| k))
}

fn make_output_dir(output: &Path) -> Result<(), AnonError> {
    match std::fs::read_dir(output) {
        Ok(mut it) => {
            if it.next().is_some() {
                return Err(AnonError::OutputNotEmpty(output.to_path_buf()));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::DirBuilder::new()
            .mode(0o700)
            .create(output)
            .map_err(|source| AnonError::Dir {
                what: "cannot create output directory",
                path: output.to_path_buf(),
                source,
            }),
        Err(source) => Err(AnonError::Dir {
            what: "cannot open output directory",
            path: output.to_path_buf(),
            source,
        }),
    }
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> AnonError {
    let path = path.to_path_buf();
    move |source| AnonError::Io { what, path, source }
}

fn create(path: &Path) -> Result<File, AnonError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(IMAGE_MODE)
        .open(path)
        .map_err(io("create", path))
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), AnonError> {
    create(path)?.write_all(bytes).map_err(io("write", path))
}

/// A file of `len` zero bytes, sparse: an anonymised 1 GiB pages file costs no disk.
fn write_zeros(path: &Path, len: u64) -> Result<(), AnonError> {
    create(path)?.set_len(len).map_err(io("write", path))
}

#[cfg(test)]
mod tests;
