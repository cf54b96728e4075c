//! CRIU's `file_lock_entry` (`filelocks.img`): what one lock becomes in the image and what
//! the restore does with an entry. Values as CRIU's `criu/include/file-lock.h`: `flag` is
//! the kind (FL_POSIX 1, FL_FLOCK 2, FL_OFD 4, FL_LEASE 8), `type` the `F_RDLCK` (0) /
//! `F_WRLCK` (1) / `F_UNLCK` (2) type, or'ed with LEASE_BREAKING (4) for a lease being
//! broken (the type is then its target), `len` 0 for "to end of file", `pid` and `fd` the
//! task and fd through which the lock is taken again.

use criu_proto::images::FileLockEntry;

use crate::lockline::{Kind, LockLine, Mode};

/// `flag` of a POSIX lock.
pub const FL_POSIX: u32 = 1;
/// `flag` of a flock.
pub const FL_FLOCK: u32 = 2;
/// `flag` of an OFD lock.
pub const FL_OFD: u32 = 4;
/// `flag` of a lease.
pub const FL_LEASE: u32 = 8;
/// Or'ed into a lease's `type` while it is being broken.
pub const LEASE_BREAKING: u32 = 4;

const F_RDLCK: u32 = libc::F_RDLCK as u32;
const F_WRLCK: u32 = libc::F_WRLCK as u32;
const F_UNLCK: u32 = libc::F_UNLCK as u32;

/// The entry for `lock`, taken again through fd `fd` of task `pid`.
pub fn to_entry(lock: &LockLine, pid: i32, fd: i32) -> FileLockEntry {
    let flag = match lock.kind {
        Kind::Posix => FL_POSIX,
        Kind::Flock => FL_FLOCK,
        Kind::Ofd => FL_OFD,
        Kind::Lease => FL_LEASE,
    };
    let ty = match lock.mode {
        Mode::Read => F_RDLCK,
        Mode::Write => F_WRLCK,
        Mode::Unlock => F_UNLCK,
    };
    let breaking = if lock.breaking { LEASE_BREAKING } else { 0 };
    // The kernel keeps offsets as loff_t: both fit in i64.
    let start = lock.start as i64;
    let len = lock.end.map_or(0, |e| (e - lock.start + 1) as i64);
    FileLockEntry {
        flag,
        r#type: ty | breaking,
        pid,
        fd,
        start,
        len,
    }
}

/// A record lock's type and range (`struct flock`, `SEEK_SET`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// `F_RDLCK` or `F_WRLCK`.
    pub ty: i16,
    /// First byte.
    pub start: i64,
    /// Length, 0 for "to end of file".
    pub len: i64,
}

/// What the restore does for one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `fcntl(fd, F_SETLK)` in the owner.
    Posix(Range),
    /// `fcntl(fd, F_OFD_SETLK)`.
    Ofd(Range),
    /// `flock(fd, LOCK_SH or LOCK_EX | LOCK_NB)`.
    Flock {
        /// `LOCK_EX` rather than `LOCK_SH`.
        exclusive: bool,
    },
    /// `fcntl(fd, F_SETLEASE, ty)`.
    Lease {
        /// `F_RDLCK` or `F_WRLCK`.
        ty: i32,
    },
    /// A lease taken as the description's access mode allows, then broken again to
    /// `target` (`F_RDLCK` or `F_UNLCK`) by an open that conflicts with it.
    BreakingLease {
        /// The type the break ends in.
        target: i32,
    },
}

impl Action {
    /// Restore order: locks first, then leases, leases being broken last (breaking one
    /// breaks every lease on the file).
    pub fn order(&self) -> u8 {
        match self {
            Action::Posix(_) | Action::Ofd(_) | Action::Flock { .. } => 0,
            Action::Lease { .. } => 1,
            Action::BreakingLease { .. } => 2,
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ty = |t: i32| match t {
            libc::F_RDLCK => "read",
            libc::F_WRLCK => "write",
            _ => "no",
        };
        let range = |f: &mut std::fmt::Formatter<'_>, r: &Range| match r.len {
            0 => write!(f, "{}-EOF", r.start),
            n => write!(f, "{}-{}", r.start, r.start + n - 1),
        };
        match self {
            Action::Posix(r) => {
                write!(f, "POSIX {} lock ", ty(r.ty.into()))?;
                range(f, r)
            }
            Action::Ofd(r) => {
                write!(f, "OFD {} lock ", ty(r.ty.into()))?;
                range(f, r)
            }
            Action::Flock { exclusive: true } => f.write_str("exclusive flock"),
            Action::Flock { exclusive: false } => f.write_str("shared flock"),
            Action::Lease { ty: t } => write!(f, "{} lease", ty(*t)),
            Action::BreakingLease { target } => {
                write!(f, "lease being broken to {} lease", ty(*target))
            }
        }
    }
}

/// The action of an entry, or what is wrong with it (for an error naming the image entry).
pub fn action(e: &FileLockEntry) -> Result<Action, String> {
    let range = || -> Result<Range, String> {
        if e.start < 0 || e.len < 0 || e.start.checked_add(e.len).is_none() {
            return Err(format!("bad range start {} len {}", e.start, e.len));
        }
        let ty = match e.r#type {
            F_RDLCK | F_WRLCK => e.r#type as i16,
            t => return Err(format!("record lock of type {t}")),
        };
        Ok(Range {
            ty,
            start: e.start,
            len: e.len,
        })
    };
    match e.flag {
        FL_POSIX => range().map(Action::Posix),
        FL_OFD => range().map(Action::Ofd),
        FL_FLOCK => match e.r#type {
            F_RDLCK => Ok(Action::Flock { exclusive: false }),
            F_WRLCK => Ok(Action::Flock { exclusive: true }),
            t => Err(format!(
                "flock of type {t} (CRIU's LOCK_MAND flocks no longer exist in Linux)"
            )),
        },
        FL_LEASE => match (e.r#type & LEASE_BREAKING != 0, e.r#type & !LEASE_BREAKING) {
            (false, t @ (F_RDLCK | F_WRLCK)) => Ok(Action::Lease { ty: t as i32 }),
            (true, t @ (F_RDLCK | F_UNLCK)) => Ok(Action::BreakingLease { target: t as i32 }),
            _ => Err(format!("lease of type {:#x}", e.r#type)),
        },
        f => Err(format!("unknown lock flag {f}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn line(kind: Kind, breaking: bool, mode: Mode, start: u64, end: Option<u64>) -> LockLine {
        LockLine {
            kind,
            breaking,
            mode,
            pid: 7,
            dev: (8, 1),
            ino: 9,
            start,
            end,
        }
    }

    #[test]
    fn as_criu_writes_them() {
        let e = to_entry(&line(Kind::Posix, false, Mode::Read, 5, Some(14)), 7, 3);
        assert_eq!((e.flag, e.r#type, e.start, e.len), (1, 0, 5, 10));
        assert_eq!((e.pid, e.fd), (7, 3));
        let e = to_entry(&line(Kind::Ofd, false, Mode::Write, 100, None), 7, 3);
        assert_eq!((e.flag, e.r#type, e.start, e.len), (4, 1, 100, 0));
        let e = to_entry(&line(Kind::Flock, false, Mode::Write, 0, None), 7, 3);
        assert_eq!((e.flag, e.r#type), (2, 1));
        let e = to_entry(&line(Kind::Lease, true, Mode::Unlock, 0, None), 7, 3);
        assert_eq!((e.flag, e.r#type), (8, 2 | 4));
        assert_eq!(action(&e), Ok(Action::BreakingLease { target: 2 }));
        assert_eq!(
            action(&e).unwrap().to_string(),
            "lease being broken to no lease"
        );
    }

    #[test]
    fn bad_entries_are_refused_with_a_reason() {
        let ok = to_entry(&line(Kind::Posix, false, Mode::Write, 0, Some(9)), 1, 1);
        for (e, why) in [
            (FileLockEntry { flag: 16, ..ok }, "flag"),
            (FileLockEntry { flag: 3, ..ok }, "flag"),
            (FileLockEntry { r#type: 2, ..ok }, "type"),
            (FileLockEntry { start: -1, ..ok }, "range"),
            (FileLockEntry { len: -5, ..ok }, "range"),
            (
                FileLockEntry {
                    start: i64::MAX,
                    len: 2,
                    ..ok
                },
                "range",
            ),
            (
                FileLockEntry {
                    flag: FL_FLOCK,
                    r#type: 32 | 64,
                    ..ok
                },
                "LOCK_MAND",
            ),
            (
                FileLockEntry {
                    flag: FL_LEASE,
                    r#type: 2,
                    ..ok
                },
                "lease",
            ),
            (
                FileLockEntry {
                    flag: FL_LEASE,
                    r#type: 1 | 4,
                    ..ok
                },
                "lease",
            ),
        ] {
            let err = action(&e).unwrap_err();
            assert!(err.contains(why), "{e:?}: {err}");
        }
    }

    fn any_line() -> impl Strategy<Value = LockLine> {
        let kind = prop_oneof![
            Just(Kind::Posix),
            Just(Kind::Flock),
            Just(Kind::Ofd),
            Just(Kind::Lease)
        ];
        (
            kind,
            any::<bool>(),
            any::<bool>(),
            0u64..1 << 40,
            proptest::option::of(0u64..1 << 40),
        )
            .prop_map(|(kind, write, breaking, start, len)| {
                let breaking = breaking && kind == Kind::Lease;
                let mode = match (breaking, write) {
                    (true, true) => Mode::Unlock,
                    (_, true) => Mode::Write,
                    (_, false) => Mode::Read,
                };
                // Flocks and leases cover the whole file.
                let (start, end) = match kind {
                    Kind::Posix | Kind::Ofd => (start, len.map(|l| start + l)),
                    _ => (0, None),
                };
                line(kind, breaking, mode, start, end)
            })
    }

    proptest! {
        /// Every lock the kernel can show becomes an entry whose action takes the same
        /// lock again: kind, type and range survive the image.
        #[test]
        fn entry_round_trip(l in any_line()) {
            let e = to_entry(&l, 5, 6);
            let a = action(&e).unwrap();
            let ty = |m: Mode| match m {
                Mode::Read => libc::F_RDLCK,
                Mode::Write => libc::F_WRLCK,
                Mode::Unlock => libc::F_UNLCK,
            };
            let range = Range {
                ty: ty(l.mode) as i16,
                start: l.start as i64,
                len: l.end.map_or(0, |e| (e - l.start + 1) as i64),
            };
            let want = match (l.kind, l.breaking) {
                (Kind::Posix, _) => Action::Posix(range),
                (Kind::Ofd, _) => Action::Ofd(range),
                (Kind::Flock, _) => Action::Flock { exclusive: l.mode == Mode::Write },
                (Kind::Lease, false) => Action::Lease { ty: ty(l.mode) },
                (Kind::Lease, true) => Action::BreakingLease { target: ty(l.mode) },
            };
            prop_assert_eq!(a, want);
            // And through the wire format.
            use prost::Message;
            let back = FileLockEntry::decode(e.encode_to_vec().as_slice()).unwrap();
            prop_assert_eq!(back, e);
        }
    }
}
