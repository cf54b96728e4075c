//! The `lock:` lines of `/proc/PID/fdinfo/FD` (the kernel's `lock_get_status`, the text of
//! `/proc/locks` without the leading ordinal's `lock:` tag), e.g.
//! `1: POSIX  ADVISORY  WRITE 1234 fe:00:5678 0 EOF` or `1: LEASE  BREAKING  UNLCK ...`.
//!
//! An fd's fdinfo lists the locks whose file is that fd's open file description and whose
//! owner is the description itself (flock, OFD locks, leases) or the task's fd table (POSIX
//! locks): a POSIX lock shows only in its owner's fdinfo, the others in every holder's.

/// The kind of a lock as the kernel names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `fcntl(F_SETLK)` record lock (`POSIX`), owned by the process's fd table.
    Posix,
    /// `flock(2)` lock (`FLOCK`), owned by the open file description.
    Flock,
    /// `fcntl(F_OFD_SETLK)` record lock (`OFDLCK`), owned by the open file description.
    Ofd,
    /// `fcntl(F_SETLEASE)` lease (`LEASE`), owned by the open file description.
    Lease,
}

impl Kind {
    /// How messages name it.
    pub const fn describe(self) -> &'static str {
        match self {
            Kind::Posix => "POSIX lock",
            Kind::Flock => "flock",
            Kind::Ofd => "OFD lock",
            Kind::Lease => "lease",
        }
    }
}

/// The lock's type; for a lease being broken, the type it is being broken to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mode {
    /// `READ`: shared.
    Read,
    /// `WRITE`: exclusive.
    Write,
    /// `UNLCK`: only for a lease being broken to nothing.
    Unlock,
}

/// One parsed `lock:` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockLine {
    /// The kind.
    pub kind: Kind,
    /// A lease whose break has started (`BREAKING`): [`LockLine::mode`] is its target.
    pub breaking: bool,
    /// Read, write (or unlock: the target of a breaking lease).
    pub mode: Mode,
    /// The pid the kernel records (the task that took it; -1 for OFD locks).
    pub pid: i32,
    /// Device (`major:minor`, hex) and inode of the locked file.
    pub dev: (u32, u32),
    /// Inode number.
    pub ino: u64,
    /// First byte.
    pub start: u64,
    /// Last byte, `None` for "to end of file" (`EOF`).
    pub end: Option<u64>,
}

/// A `lock:` line this plugin cannot read or cannot keep.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LockLineError {
    /// Not in the kernel's format.
    #[error("malformed lock line {line:?}: {what}")]
    Malformed {
        /// The line (after `lock:`).
        line: String,
        /// What is missing or wrong.
        what: &'static str,
    },
    /// A kind or state that cannot be taken again by a restored task: NFS delegations
    /// (`DELEG`), transient mandatory-lock checks (`ACCESS`), mandatory locks.
    #[error("{what} ({line:?}) cannot be restored")]
    Unkeepable {
        /// The line.
        line: String,
        /// What it is.
        what: &'static str,
    },
}

/// Parses the value of one `lock:` line.
pub fn parse_line(value: &str) -> Result<LockLine, LockLineError> {
    let line = value.trim();
    let bad = |what| LockLineError::Malformed {
        line: line.to_string(),
        what,
    };
    let unkeepable = |what| LockLineError::Unkeepable {
        line: line.to_string(),
        what,
    };
    let mut words = line.split_whitespace();
    words
        .next()
        .filter(|w| w.ends_with(':') && w[..w.len() - 1].parse::<u64>().is_ok())
        .ok_or_else(|| bad("no ordinal"))?;
    let kind = match words.next().ok_or_else(|| bad("no kind"))? {
        "POSIX" => Kind::Posix,
        "FLOCK" => Kind::Flock,
        "OFDLCK" => Kind::Ofd,
        "LEASE" => Kind::Lease,
        "DELEG" => return Err(unkeepable("an NFS delegation")),
        "ACCESS" => return Err(unkeepable("a mandatory-lock access check")),
        _ => return Err(bad("unknown kind")),
    };
    let state = words.next().ok_or_else(|| bad("no state"))?;
    let breaking = match (kind, state) {
        (Kind::Lease, "ACTIVE") => false,
        (Kind::Lease, "BREAKING") => true,
        (Kind::Lease, "BREAKER") => return Err(unkeepable("a lease breaker")),
        (Kind::Lease, _) => return Err(bad("unknown lease state")),
        (_, "ADVISORY") => false,
        (_, "MANDATORY" | "MSNFS") => return Err(unkeepable("a mandatory lock")),
        _ => return Err(bad("unknown lock state")),
    };
    let mode = match words.next().ok_or_else(|| bad("no type"))? {
        "READ" => Mode::Read,
        "WRITE" => Mode::Write,
        "UNLCK" if breaking => Mode::Unlock,
        _ => return Err(bad("unknown type")),
    };
    let pid = words
        .next()
        .and_then(|w| w.parse::<i32>().ok())
        .ok_or_else(|| bad("no pid"))?;
    let (dev, ino) = words
        .next()
        .and_then(parse_dev_ino)
        .ok_or_else(|| bad("no major:minor:inode"))?;
    let start = words
        .next()
        .and_then(|w| w.parse::<u64>().ok())
        .ok_or_else(|| bad("no start"))?;
    let end = match words.next().ok_or_else(|| bad("no end"))? {
        "EOF" => None,
        e => Some(e.parse::<u64>().map_err(|_| bad("bad end"))?),
    };
    if end.is_some_and(|e| e < start) {
        return Err(bad("end before start"));
    }
    if words.next().is_some() {
        return Err(bad("trailing words"));
    }
    Ok(LockLine {
        kind,
        breaking,
        mode,
        pid,
        dev,
        ino,
        start,
        end,
    })
}

/// `fe:00:5678` (major and minor in hex, inode in decimal).
fn parse_dev_ino(w: &str) -> Option<((u32, u32), u64)> {
    let mut parts = w.splitn(3, ':');
    let major = u32::from_str_radix(parts.next()?, 16).ok()?;
    let minor = u32::from_str_radix(parts.next()?, 16).ok()?;
    let ino = parts.next()?.parse().ok()?;
    Some(((major, minor), ino))
}

/// Every `lock:` line of an fdinfo text, parsed.
pub fn parse_fdinfo(text: &str) -> Result<Vec<LockLine>, LockLineError> {
    text.lines()
        .filter_map(|l| l.strip_prefix("lock:"))
        .map(parse_line)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_as_this_kernel_prints_it() {
        let text = "pos:\t0\nflags:\t0100002\nmnt_id:\t30\nino:\t77\n\
                    lock:\t1: FLOCK  ADVISORY  WRITE 412 fe:00:77 0 EOF\n\
                    lock:\t2: POSIX  ADVISORY  READ 412 fe:00:77 5 14\n\
                    lock:\t3: OFDLCK ADVISORY  WRITE -1 fe:00:77 100 EOF\n\
                    lock:\t4: LEASE  ACTIVE    READ 412 fe:00:77 0 EOF\n\
                    lock:\t5: LEASE  BREAKING  UNLCK 412 08:1a:9 0 EOF\n";
        let l = parse_fdinfo(text).unwrap();
        let kinds: Vec<_> = l.iter().map(|l| (l.kind, l.mode, l.breaking)).collect();
        assert_eq!(
            kinds,
            [
                (Kind::Flock, Mode::Write, false),
                (Kind::Posix, Mode::Read, false),
                (Kind::Ofd, Mode::Write, false),
                (Kind::Lease, Mode::Read, false),
                (Kind::Lease, Mode::Unlock, true),
            ]
        );
        assert_eq!((l[1].start, l[1].end, l[1].pid), (5, Some(14), 412));
        assert_eq!((l[2].pid, l[2].end), (-1, None));
        assert_eq!((l[4].dev, l[4].ino), ((8, 0x1a), 9));
    }

    #[test]
    fn no_locks_no_lines() {
        assert!(parse_fdinfo("pos:\t0\nflags:\t02\n").unwrap().is_empty());
    }

    #[test]
    fn what_cannot_be_restored_is_named() {
        for (l, what) in [
            ("1: DELEG  ACTIVE    READ 9 08:01:5 0 EOF", "NFS delegation"),
            ("1: ACCESS ADVISORY  READ 9 08:01:5 0 EOF", "mandatory-lock"),
            (
                "1: POSIX  MANDATORY WRITE 9 08:01:5 0 EOF",
                "mandatory lock",
            ),
            ("1: LEASE  BREAKER   READ 9 08:01:5 0 EOF", "breaker"),
        ] {
            let e = parse_line(l).unwrap_err();
            assert!(matches!(e, LockLineError::Unkeepable { .. }), "{l}: {e}");
            assert!(e.to_string().contains(what), "{e}");
        }
    }

    #[test]
    fn malformed_lines_are_errors_not_panics() {
        for l in [
            "",
            "1:",
            "x: POSIX ADVISORY WRITE 1 0:0:1 0 EOF",
            "1: WEIRD ADVISORY WRITE 1 0:0:1 0 EOF",
            "1: POSIX ADVISORY",
            "1: POSIX ADVISORY UNLCK 1 0:0:1 0 EOF",
            "1: POSIX ADVISORY WRITE x 0:0:1 0 EOF",
            "1: POSIX ADVISORY WRITE 1 0:0 0 EOF",
            "1: POSIX ADVISORY WRITE 1 zz:0:1 0 EOF",
            "1: POSIX ADVISORY WRITE 1 0:0:1 zero EOF",
            "1: POSIX ADVISORY WRITE 1 0:0:1 9 3",
            "1: POSIX ADVISORY WRITE 1 0:0:1 0 EOF more",
            "1: LEASE ODD READ 1 0:0:1 0 EOF",
        ] {
            assert!(
                matches!(parse_line(l), Err(LockLineError::Malformed { .. })),
                "{l:?}"
            );
        }
    }
}
