//! What the core tells a handler about one fd of a dumped task.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::str::FromStr;

use crate::PluginError;

/// `O_CLOEXEC`: shown in `/proc/PID/fdinfo/N` `flags:` but an fd flag, not a file flag.
pub const O_CLOEXEC: u32 = libc::O_CLOEXEC as u32;

/// The fields of `/proc/PID/fdinfo/N` every fd has, plus the whole text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FdInfo {
    /// `pos:` the file offset.
    pub pos: u64,
    /// `flags:` (octal in the file): the open flags of the description, plus `O_CLOEXEC`
    /// when the fd is close-on-exec. Use [`FdInfo::file_flags`] for the description's flags.
    pub flags: u32,
    /// `mnt_id:` the mount the file lives on.
    pub mnt_id: i32,
    /// `ino:` the inode number (kernel 5.14+; 0 when absent).
    pub ino: u64,
    /// The whole fdinfo text, for kind-specific lines (`eventfd-count:`, `tfd:`, ...).
    pub raw: String,
}

impl FdInfo {
    /// The open file description's flags (what `F_GETFL` returns): `flags` minus `O_CLOEXEC`.
    /// This is what CRIU stores in `reg_file_entry.flags`, `pipe_entry.flags`, ...
    pub fn file_flags(&self) -> u32 {
        self.flags & !O_CLOEXEC
    }

    /// Whether the fd is close-on-exec.
    pub fn cloexec(&self) -> bool {
        self.flags & O_CLOEXEC != 0
    }

    /// The value of a `key:` line of [`FdInfo::raw`], trimmed (`None` when absent).
    pub fn field(&self, key: &str) -> Option<&str> {
        self.raw.lines().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            (k.trim() == key).then(|| v.trim())
        })
    }

    fn required(&self, key: &str) -> Result<&str, PluginError> {
        self.field(key)
            .ok_or_else(|| bad_field(key, None, "present"))
    }

    /// The `key:` field parsed as a `T` written in decimal (or any `FromStr` form:
    /// `fdinfo.parse::<i32>("clockid")`). (API 0.5) A missing or malformed field is a
    /// [`PluginError::BadFdInfo`] naming the field and its text.
    pub fn parse<T: FromStr>(&self, key: &str) -> Result<T, PluginError> {
        let v = self.required(key)?;
        v.parse()
            .map_err(|_| bad_field(key, Some(v), std::any::type_name::<T>()))
    }

    /// The `key:` field as a hexadecimal number, with or without `0x`
    /// (`eventfd-count`, `sigmask`). (API 0.5)
    pub fn hex<T: TryFrom<u64>>(&self, key: &str) -> Result<T, PluginError> {
        let v = self.required(key)?;
        let digits = v.strip_prefix("0x").unwrap_or(v);
        u64::from_str_radix(digits, 16)
            .ok()
            .and_then(|n| T::try_from(n).ok())
            .ok_or_else(|| bad_field(key, Some(v), "a hexadecimal number in range"))
    }

    /// The `key:` field as an octal number (`flags`). (API 0.5)
    pub fn octal<T: TryFrom<u64>>(&self, key: &str) -> Result<T, PluginError> {
        let v = self.required(key)?;
        u64::from_str_radix(v, 8)
            .ok()
            .and_then(|n| T::try_from(n).ok())
            .ok_or_else(|| bad_field(key, Some(v), "an octal number in range"))
    }

    /// The `key:` field as a list of `T`: items separated by commas and/or blanks, the
    /// whole optionally in parentheses (timerfd's `it_value: (0, 49406829)`). An empty value
    /// is an empty list. (API 0.5)
    pub fn list<T: FromStr>(&self, key: &str) -> Result<Vec<T>, PluginError> {
        let v = self.required(key)?;
        let inner = v
            .strip_prefix('(')
            .and_then(|x| x.strip_suffix(')'))
            .unwrap_or(v);
        inner
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|item| !item.is_empty())
            .map(|item| {
                item.parse().map_err(|_| {
                    bad_field(
                        key,
                        Some(v),
                        &format!("a list of {}", std::any::type_name::<T>()),
                    )
                })
            })
            .collect()
    }
}

fn bad_field(key: &str, value: Option<&str>, expected: &str) -> PluginError {
    PluginError::BadFdInfo {
        field: key.to_string(),
        reason: match value {
            None => "no such line".into(),
            Some(v) => format!("{v:?} is not {expected}"),
        },
    }
}

/// A timestamp as `stat` reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timespec {
    /// Seconds since the epoch.
    pub sec: i64,
    /// Nanoseconds.
    pub nsec: i64,
}

/// `fstat` of the file behind the fd.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileStat {
    /// `st_mode`: type and permission bits.
    pub mode: u32,
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
    /// `st_rdev` (devices).
    pub rdev: u64,
    /// `st_size`.
    pub size: i64,
    /// `st_nlink` (0 for an unlinked file).
    pub nlink: u64,
    /// `st_uid`.
    pub uid: u32,
    /// `st_gid`.
    pub gid: u32,
    /// `st_atime`.
    pub atime: Timespec,
    /// `st_mtime`.
    pub mtime: Timespec,
}

impl FileStat {
    /// The file type bits of [`FileStat::mode`] (`S_IFREG`, `S_IFIFO`, ...).
    pub fn file_type(&self) -> u32 {
        self.mode & libc::S_IFMT
    }

    /// A regular file.
    pub fn is_reg(&self) -> bool {
        self.file_type() == libc::S_IFREG
    }

    /// A directory.
    pub fn is_dir(&self) -> bool {
        self.file_type() == libc::S_IFDIR
    }

    /// A character device.
    pub fn is_chr(&self) -> bool {
        self.file_type() == libc::S_IFCHR
    }

    /// A pipe or FIFO.
    pub fn is_fifo(&self) -> bool {
        self.file_type() == libc::S_IFIFO
    }
}

/// The owner of the description for `SIGIO` (`F_GETOWN_EX`, `F_GETSIG`), as CRIU's
/// `fown_entry` stores it. All zero when no owner is set (the common case).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileOwner {
    /// The owner's real uid (0 when unknown).
    pub uid: u32,
    /// The owner's effective uid (0 when unknown).
    pub euid: u32,
    /// `F_GETSIG`: the signal sent (0: `SIGIO`).
    pub signum: u32,
    /// `f_owner_ex.type` (`F_OWNER_TID` 0, `F_OWNER_PID` 1, `F_OWNER_PGRP` 2).
    pub pid_type: u32,
    /// `f_owner_ex.pid` (0: no owner).
    pub pid: u32,
}

impl FileOwner {
    /// As CRIU's `fown_entry`.
    pub fn to_entry(&self) -> criu_proto::images::FownEntry {
        criu_proto::images::FownEntry {
            uid: self.uid,
            euid: self.euid,
            signum: self.signum,
            pid_type: self.pid_type,
            pid: self.pid,
        }
    }
}

/// Refuses a description that had a `SIGIO` owner (`F_SETOWN_EX`/`F_SETSIG`). criu's core
/// sets the owner of every `files.img` entry itself once the tree exists, so plugins that
/// restore such entries need not call this; it remains for a plugin that restores an owned
/// description some other way and cannot keep its owner.
pub fn require_no_owner(
    fown: &criu_proto::images::FownEntry,
    resource: &str,
    pid: i32,
) -> Result<(), crate::PluginError> {
    if fown.pid == 0 && fown.signum == 0 {
        return Ok(());
    }
    Err(crate::PluginError::Unsupported {
        resource: format!(
            "{resource} with SIGIO owner pid {} (signal {})",
            fown.pid, fown.signum
        ),
        pid,
        hint: "restoring F_SETOWN/F_SETSIG owners is not supported yet".into(),
    })
}

/// Everything the core knows about one fd of a dumped task, handed to
/// [`FdHandler::claims`](crate::FdHandler::claims) and
/// [`FdHandler::dump_file`](crate::FdHandler::dump_file).
#[derive(Debug)]
pub struct FdDesc {
    /// Pid of the task (as seen by criu).
    pub pid: i32,
    /// The fd number in that task; -1 for a file reached by path (the executable, a
    /// mapped file, cwd/root), [`FdDesc::IN_FLIGHT`] for a file in flight
    /// ([`crate::DumpContext::dump_file_in_flight`]).
    pub fd: i32,
    /// The text of the `/proc/PID/fd/N` link (`/path`, `/path (deleted)`, `pipe:[123]`,
    /// `socket:[45]`, `anon_inode:[eventfd]`, ...).
    pub link: String,
    /// Parsed `/proc/PID/fdinfo/N`.
    pub fdinfo: FdInfo,
    /// `fstat` of the file.
    pub stat: FileStat,
    /// The `SIGIO` owner of the description.
    pub owner: FileOwner,
    /// The task's fd duplicated into criu's process (`pidfd_getfd`): the same open file
    /// description, so offsets, flags and the object's state are shared with the task, which
    /// may go on running after the dump (`--leave-running`, or a failed dump).
    ///
    /// Allowed at dump: calls that only read, such as `fstat`, `timerfd_gettime`,
    /// `ioctl(FIONREAD)`, `getsockopt`, `getsockname`, `tee` from a pipe, `pread` (no offset
    /// change), `fcntl(F_GETFL/F_GETOWN_EX/F_GETSIG)`, and reopening
    /// [`FdDesc::reopen_path`] for a description of one's own. Not allowed: anything that
    /// consumes or changes state the task sees: `read`/`recv` (use `MSG_PEEK`), `lseek`,
    /// `timerfd_settime`, `fcntl(F_SETFL)`, writes, `close` of the task's own fd through
    /// remote syscalls without putting it back.
    pub file: OwnedFd,
}

impl FdDesc {
    /// [`FdDesc::fd`] of a file in flight: held by criu, in no task's fd table (its
    /// `pid` is the task whose resource carries it). Task services that take an fd number
    /// of that task do not apply to it. (API 0.6)
    pub const IN_FLIGHT: i32 = -2;

    /// Whether this is a file in flight ([`FdDesc::IN_FLIGHT`]). (API 0.6)
    pub fn is_in_flight(&self) -> bool {
        self.fd == Self::IN_FLIGHT
    }

    /// The duplicated fd, borrowed.
    pub fn file(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// `/proc/self/fd/N` of [`FdDesc::file`]: opening it gives a new description of the
    /// same file (works for unlinked files and pipes too).
    pub fn reopen_path(&self) -> String {
        use std::os::fd::AsRawFd;
        format!("/proc/self/fd/{}", self.file.as_raw_fd())
    }

    /// The link with a trailing `" (deleted)"` removed, and whether it was there.
    pub fn path_and_deleted(&self) -> (&str, bool) {
        match self.link.strip_suffix(" (deleted)") {
            Some(p) => (p, true),
            None => (self.link.as_str(), false),
        }
    }

    /// The inode number of an anonymous link like `pipe:[123]` (`prefix` = `"pipe"`).
    pub fn anon_inode_of(&self, prefix: &str) -> Option<u64> {
        self.link
            .strip_prefix(prefix)?
            .strip_prefix(":[")?
            .strip_suffix(']')?
            .parse()
            .ok()
    }

    /// "fd N of pid P (link)": for log and error messages.
    pub fn describe(&self) -> String {
        if self.is_in_flight() {
            return format!(
                "a file in flight carried by pid {} ({})",
                self.pid, self.link
            );
        }
        format!("fd {} of pid {} ({})", self.fd, self.pid, self.link)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(link: &str) -> FdDesc {
        FdDesc {
            pid: 1,
            fd: 3,
            link: link.to_string(),
            fdinfo: FdInfo::default(),
            stat: FileStat::default(),
            owner: FileOwner::default(),
            file: std::fs::File::open("/dev/null").unwrap().into(),
        }
    }

    #[test]
    fn anon_inode_parses_only_exact_form() {
        assert_eq!(desc("pipe:[211530]").anon_inode_of("pipe"), Some(211530));
        assert_eq!(desc("pipe:[x]").anon_inode_of("pipe"), None);
        assert_eq!(desc("socket:[5]").anon_inode_of("pipe"), None);
        assert_eq!(desc("pipe:[5").anon_inode_of("pipe"), None);
    }

    #[test]
    fn deleted_suffix() {
        assert_eq!(
            desc("/tmp/a (deleted)").path_and_deleted(),
            ("/tmp/a", true)
        );
        assert_eq!(desc("/tmp/a").path_and_deleted(), ("/tmp/a", false));
    }

    #[test]
    fn fdinfo_fields_and_flags() {
        let info = FdInfo {
            flags: 0o2100002,
            raw: "pos:\t5\nflags:\t02100002\nmnt_id:\t29\nino:\t42\neventfd-count: 3\n".into(),
            ..FdInfo::default()
        };
        assert!(info.cloexec());
        assert_eq!(info.file_flags(), 0o100002);
        assert_eq!(info.field("eventfd-count"), Some("3"));
        assert_eq!(info.field("mnt_id"), Some("29"));
        assert_eq!(info.field("nope"), None);
    }

    fn info(raw: &str) -> FdInfo {
        FdInfo {
            raw: raw.into(),
            ..FdInfo::default()
        }
    }

    #[test]
    fn typed_fields_parse_or_name_the_field() {
        let i = info(
            "pos:\t0\nflags:\t02004002\nclockid: 1\nticks: 0\neventfd-count: 2a\n\
             sigmask:\t0000000000000200\nit_value: (0, 49406829)\nit_interval: (1, 0)\n\
             empty:\nbad: 12x\n",
        );
        assert_eq!(i.parse::<i32>("clockid").unwrap(), 1);
        assert_eq!(i.parse::<u64>("ticks").unwrap(), 0);
        assert_eq!(i.hex::<u64>("eventfd-count").unwrap(), 42);
        assert_eq!(i.hex::<u64>("sigmask").unwrap(), 0x200);
        assert_eq!(i.octal::<u32>("flags").unwrap(), 0o2004002);
        assert_eq!(i.list::<i64>("it_value").unwrap(), [0, 49406829]);
        assert_eq!(i.list::<u8>("it_interval").unwrap(), [1, 0]);
        assert!(i.list::<u8>("empty").unwrap().is_empty());

        let e = i.parse::<u32>("clockidx").unwrap_err();
        assert!(matches!(&e, PluginError::BadFdInfo { field, .. } if field == "clockidx"));
        assert_eq!(e.to_string(), "fdinfo field clockidx: no such line");
        let e = i.parse::<u32>("bad").unwrap_err().to_string();
        assert!(
            e.contains("bad") && e.contains("\"12x\"") && e.contains("u32"),
            "{e}"
        );
        assert!(i.hex::<u8>("sigmask").is_err(), "0x200 does not fit a u8");
        assert!(i.octal::<u32>("bad").is_err());
        let e = i.list::<i64>("bad").unwrap_err().to_string();
        assert!(e.contains("a list of i64"), "{e}");
    }
}
