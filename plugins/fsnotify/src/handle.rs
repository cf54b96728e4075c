//! Finding the file a watch or mark is on, as CRIU does (criu/fsnotify.c): at dump, the
//! inode's file handle is opened on a mount of its filesystem and the path of that fd,
//! checked to name the same inode, is stored beside the handle; at restore the path is
//! opened, or the handle when the path was gone (unlinked, replaced) at dump.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;

use criu_proto::images::FhEntry;
use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::sys::stat::{Mode, fstat};

use crate::sys::{self, FileHandle, MAX_HANDLE_BYTES};

/// `fh_entry.handle` always has this many 64-bit words (CRIU's `FH_ENTRY_SIZES__min_entries`).
pub const HANDLE_WORDS: usize = 16;

/// A device number in the kernel's internal encoding (fdinfo's `sdev`) as `MAJ:MIN`.
pub fn kdev_name(sdev: u32) -> String {
    format!("{}:{}", sdev >> 20, sdev & 0xfffff)
}

/// `major:minor` of mountinfo in the kernel's internal encoding.
fn kdev(major: u32, minor: u32) -> u32 {
    (major << 20) | (minor & 0xfffff)
}

/// A `stat` device number (`st_dev`) in the kernel's internal encoding (fdinfo's `sdev`).
pub fn kdev_of(st_dev: u64) -> u32 {
    kdev(
        nix::sys::stat::major(st_dev) as u32,
        nix::sys::stat::minor(st_dev) as u32,
    )
}

/// One line of `/proc/PID/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The mount id.
    pub mnt_id: u32,
    /// The superblock's device, kernel encoding.
    pub sdev: u32,
    /// Where it is mounted (octal escapes undone).
    pub mountpoint: PathBuf,
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], oct) {
            (b'\\', Some(d)) => {
                out.push(((d[0] - b'0') << 6) | ((d[1] - b'0') << 3) | (d[2] - b'0'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses a mountinfo text; malformed lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let (maj, min) = f.get(2)?.split_once(':')?;
            Some(Mount {
                mnt_id: f.first()?.parse().ok()?,
                sdev: kdev(maj.parse().ok()?, min.parse().ok()?),
                mountpoint: PathBuf::from(unescape(f.get(4)?)),
            })
        })
        .collect()
}

/// The mounts `pid` sees (`None`: criu's own).
pub fn read_mountinfo(pid: Option<i32>) -> Result<Vec<Mount>, String> {
    let p = match pid {
        Some(pid) => format!("/proc/{pid}/mountinfo"),
        None => "/proc/self/mountinfo".into(),
    };
    let text = std::fs::read_to_string(&p).map_err(|e| format!("{p}: {e}"))?;
    Ok(parse_mountinfo(&text))
}

/// CRIU's `fh_entry`: the handle's bytes in 16 little-endian words, and the path if any.
pub fn to_fh_entry(handle: Option<&FileHandle>, path: Option<String>) -> FhEntry {
    let mut bytes = [0u8; HANDLE_WORDS * 8];
    if let Some(h) = handle {
        bytes[..h.bytes.len()].copy_from_slice(&h.bytes);
    }
    FhEntry {
        bytes: handle.map_or(0, |h| h.bytes.len() as u32),
        r#type: handle.map_or(0, |h| h.handle_type as u32),
        handle: bytes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect(),
        path,
        mnt_id: None,
    }
}

/// The handle of an `fh_entry` (`None` when it has no bytes); an error says what is wrong.
pub fn from_fh_entry(fh: &FhEntry) -> Result<Option<FileHandle>, String> {
    let n = fh.bytes as usize;
    if n == 0 {
        return Ok(None);
    }
    if n > MAX_HANDLE_BYTES || n > fh.handle.len() * 8 {
        return Err(format!(
            "a file handle of {n} bytes in {} words",
            fh.handle.len()
        ));
    }
    let bytes: Vec<u8> = fh
        .handle
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .take(n)
        .collect();
    Ok(Some(FileHandle {
        handle_type: fh.r#type as i32,
        bytes,
    }))
}

/// Where a watched inode was found at dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// At this path (it names the same inode).
    Path(String),
    /// Its handle opens but no path names it any more (unlinked, or replaced by another
    /// file): restore opens the handle.
    HandleOnly,
}

/// Finds the path of inode `ino` on the filesystem `sdev` through its handle. `Err` says
/// why neither a path nor the handle works (no mount of that filesystem, stale handle).
pub fn find_path(
    mounts: &[Mount],
    sdev: u32,
    ino: u64,
    handle: &FileHandle,
) -> Result<Found, String> {
    let mut last = format!("no mount of device {} is visible", kdev_name(sdev));
    let mut opened = false;
    for m in mounts.iter().filter(|m| m.sdev == sdev) {
        let fd = match open_on_mount(m, handle) {
            Ok(fd) => fd,
            Err(e) => {
                last = e;
                continue;
            }
        };
        opened = true;
        let link = format!("/proc/self/fd/{}", fd.as_raw_fd());
        let Ok(path) = nix::fcntl::readlink(link.as_str()) else {
            continue;
        };
        let path = path.to_string_lossy().into_owned();
        if path.ends_with(" (deleted)") || !path.starts_with('/') {
            continue;
        }
        // The path must lead back to this very inode (a file may have replaced it).
        if let Ok(st) = nix::sys::stat::lstat(path.as_str())
            && st.st_ino == ino
            && kdev_of(st.st_dev) == sdev
        {
            return Ok(Found::Path(path));
        }
    }
    if opened {
        Ok(Found::HandleOnly)
    } else {
        Err(last)
    }
}

fn open_on_mount(m: &Mount, handle: &FileHandle) -> Result<OwnedFd, String> {
    let mnt = open(
        &m.mountpoint,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("open {}: {e}", m.mountpoint.display()))?;
    sys::open_by_handle(mnt.as_fd(), handle, libc::O_PATH).map_err(|e| {
        format!(
            "open_by_handle_at on {} (mount {}): {e}",
            m.mountpoint.display(),
            m.mnt_id
        )
    })
}

/// Opens (`O_PATH`) the inode a watch or mark was on: its path when it had one, else its
/// handle on a mount of its filesystem `sdev`. `Err` is the failed step and its errno.
pub fn open_target(
    path: Option<&str>,
    handle: Option<&FileHandle>,
    sdev: u32,
    ino: u64,
) -> Result<OwnedFd, (String, Errno)> {
    let fd = match (path, handle) {
        // The path names the inode itself (found from it at dump): a symlink when a watch
        // was on a symlink (IN_DONT_FOLLOW), so not followed.
        (Some(p), _) => open(
            p,
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| (format!("open {p}"), e))?,
        (None, Some(h)) => open_by_handle_anywhere(h, sdev)?,
        (None, None) => {
            return Err((
                "find the watched file (no path, no handle)".into(),
                Errno::ENOENT,
            ));
        }
    };
    match fstat(&fd) {
        Ok(st) if st.st_ino != ino => tracing::info!(
            path,
            ino = format_args!("{ino:#x}"),
            now = format_args!("{:#x}", st.st_ino),
            "the watched path names another inode than at dump (file replaced or migrated)"
        ),
        _ => {}
    }
    Ok(fd)
}

fn open_by_handle_anywhere(h: &FileHandle, sdev: u32) -> Result<OwnedFd, (String, Errno)> {
    let mounts = read_mountinfo(None).map_err(|e| (e, Errno::EIO))?;
    let mut err = (
        format!("find a mount of device {}", kdev_name(sdev)),
        Errno::ENODEV,
    );
    for m in mounts.iter().filter(|m| m.sdev == sdev) {
        let Ok(mnt) = open(
            &m.mountpoint,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) else {
            continue;
        };
        match sys::open_by_handle(mnt.as_fd(), h, libc::O_PATH) {
            Ok(fd) => return Ok(fd),
            Err(e) => {
                err = (
                    format!("open_by_handle_at on {}", m.mountpoint.display()),
                    e,
                )
            }
        }
    }
    Err(err)
}
