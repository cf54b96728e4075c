//! The fsnotify lines of `/proc/PID/fdinfo/N` (fs/notify/fdinfo.c), all numbers in hex:
//!
//! ```text
//! inotify wd:2 ino:99045c sdev:fe00000 mask:4000fff ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:5c04990056e18715
//! fanotify flags:1 event-flags:8000
//! fanotify ino:99045b sdev:fe00000 mflags:40 mask:0 ignored_mask:1 fhandle-bytes:8 fhandle-type:1 f_handle:5b04...
//! fanotify mnt_id:1b mflags:0 mask:2 ignored_mask:0
//! fanotify sdev:fe00000 mflags:0 mask:2 ignored_mask:0
//! ```
//!
//! The handle part is missing when the filesystem cannot encode one (procfs...).

use crate::sys::{FileHandle, MAX_HANDLE_BYTES};

/// One inotify watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InotifyWatch {
    /// The watch descriptor the program knows.
    pub wd: i32,
    /// The watched inode.
    pub ino: u64,
    /// Its superblock's device, in the kernel's encoding (major << 20 | minor).
    pub sdev: u32,
    /// The mask as the kernel keeps it: `IN_*` events plus `IN_ONESHOT`, `IN_EXCL_UNLINK`.
    pub mask: u32,
    /// Always 0 for inotify.
    pub ignored_mask: u32,
    /// The inode's file handle, when its filesystem encodes one.
    pub handle: Option<FileHandle>,
}

/// What a fanotify mark is attached to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MarkTarget {
    /// An inode (`FAN_MARK_INODE`).
    Inode {
        /// The inode number.
        ino: u64,
        /// Its file handle, when its filesystem encodes one.
        handle: Option<FileHandle>,
    },
    /// A mount (`FAN_MARK_MOUNT`), by its mount id.
    Mount {
        /// The mount id (`/proc/PID/mountinfo`'s first column).
        mnt_id: u32,
    },
    /// A whole filesystem (`FAN_MARK_FILESYSTEM`), by its superblock's device.
    Filesystem,
}

/// One fanotify mark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FanotifyMark {
    /// Its target.
    pub target: MarkTarget,
    /// The superblock's device (kernel encoding); 0 for mount marks, which do not show it.
    pub sdev: u32,
    /// Mark flags the kernel shows (`FAN_MARK_IGNORED_SURV_MODIFY`, `FAN_MARK_EVICTABLE`,
    /// `FAN_MARK_IGNORE`).
    pub mflags: u32,
    /// Events.
    pub mask: u32,
    /// Ignored events.
    pub ignored_mask: u32,
}

/// A fanotify group as fdinfo shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FanotifyInfo {
    /// `fanotify_init` flags (`FAN_CLASS_*`, `FAN_REPORT_*`, `FAN_CLOEXEC`, ...).
    pub flags: u32,
    /// `fanotify_init` event file flags (`O_RDONLY | O_LARGEFILE`, ...).
    pub event_flags: u32,
    /// Every mark, in fdinfo order.
    pub marks: Vec<FanotifyMark>,
}

/// The `key:value` tokens of one line.
struct Tokens<'a>(Vec<(&'a str, &'a str)>);

impl<'a> Tokens<'a> {
    fn new(rest: &'a str) -> Self {
        Tokens(
            rest.split_whitespace()
                .filter_map(|t| t.split_once(':'))
                .collect(),
        )
    }

    fn get(&self, key: &str) -> Option<&'a str> {
        self.0.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    fn hex(&self, key: &str, line: &str) -> Result<u64, String> {
        let v = self
            .get(key)
            .ok_or_else(|| format!("no {key} in {line:?}"))?;
        u64::from_str_radix(v, 16).map_err(|_| format!("{key}:{v} is not hex in {line:?}"))
    }

    fn hex32(&self, key: &str, line: &str) -> Result<u32, String> {
        let v = self.hex(key, line)?;
        u32::try_from(v).map_err(|_| format!("{key}:{v:x} does not fit 32 bits in {line:?}"))
    }

    /// The handle, `None` when the line has no `fhandle-bytes`.
    fn handle(&self, line: &str) -> Result<Option<FileHandle>, String> {
        if self.get("fhandle-bytes").is_none() {
            return Ok(None);
        }
        let n = self.hex("fhandle-bytes", line)? as usize;
        let handle_type = self.hex32("fhandle-type", line)? as i32;
        let hex = self.get("f_handle").unwrap_or("");
        if n > MAX_HANDLE_BYTES || hex.len() != 2 * n {
            return Err(format!("f_handle of {n} bytes expected in {line:?}"));
        }
        let bytes = (0..n)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|_| format!("f_handle is not hex in {line:?}"))?;
        Ok(Some(FileHandle { handle_type, bytes }))
    }
}

/// Every `inotify wd:` line of an fdinfo text, in fdinfo order.
pub fn parse_inotify(raw: &str) -> Result<Vec<InotifyWatch>, String> {
    raw.lines()
        .filter_map(|l| l.strip_prefix("inotify ").map(|rest| (l, rest)))
        .map(|(line, rest)| {
            let t = Tokens::new(rest);
            let wd = t.hex32("wd", line)?;
            Ok(InotifyWatch {
                wd: i32::try_from(wd).map_err(|_| format!("wd {wd:x} out of range"))?,
                ino: t.hex("ino", line)?,
                sdev: t.hex32("sdev", line)?,
                mask: t.hex32("mask", line)?,
                ignored_mask: t.hex32("ignored_mask", line)?,
                handle: t.handle(line)?,
            })
        })
        .collect()
}

/// The `fanotify` lines of an fdinfo text. A mark of a kind this parser does not know (a
/// mount namespace mark, `fanotify mnt_ns:`) is an error naming the line.
pub fn parse_fanotify(raw: &str) -> Result<FanotifyInfo, String> {
    let mut info = FanotifyInfo::default();
    let mut seen_flags = false;
    for line in raw.lines() {
        let Some(rest) = line.strip_prefix("fanotify ") else {
            continue;
        };
        let t = Tokens::new(rest);
        let first = rest.split(':').next().unwrap_or("");
        let target = match first {
            "flags" => {
                info.flags = t.hex32("flags", line)?;
                info.event_flags = t.hex32("event-flags", line)?;
                seen_flags = true;
                continue;
            }
            "ino" => MarkTarget::Inode {
                ino: t.hex("ino", line)?,
                handle: t.handle(line)?,
            },
            "mnt_id" => MarkTarget::Mount {
                mnt_id: t.hex32("mnt_id", line)?,
            },
            "sdev" => MarkTarget::Filesystem,
            _ => return Err(format!("a fanotify mark of an unknown kind: {line:?}")),
        };
        info.marks.push(FanotifyMark {
            sdev: match target {
                MarkTarget::Mount { .. } => 0,
                _ => t.hex32("sdev", line)?,
            },
            target,
            mflags: t.hex32("mflags", line)?,
            mask: t.hex32("mask", line)?,
            ignored_mask: t.hex32("ignored_mask", line)?,
        });
    }
    if !seen_flags {
        return Err("no \"fanotify flags:\" line".into());
    }
    Ok(info)
}
