//! The `lock:` lines of `/proc/PID/fdinfo/FD`: the file locks and leases held through that
//! open file description (the kernel's `show_fd_locks`, same text as `/proc/locks`), e.g.
//! `1: POSIX  ADVISORY  WRITE 1234 00:2a:5678 0 EOF` or `2: LEASE  ACTIVE    READ ...`.

use std::fmt;

use super::fdinfo::FdInfo;
use super::{ParseError, num};

/// The kind of a lock, as the kernel names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    /// `fcntl(F_SETLK)` record lock, owned by the process.
    Posix,
    /// `fcntl(F_OFD_SETLK)` record lock, owned by the open file description.
    Ofd,
    /// `flock(2)` lock.
    Flock,
    /// `fcntl(F_SETLEASE)` lease (or an NFS delegation).
    Lease,
}

impl LockKind {
    fn parse(word: &str) -> Option<Self> {
        Some(match word {
            // ACCESS: a transient mandatory-lock check, seen as POSIX.
            "POSIX" | "ACCESS" => Self::Posix,
            "OFDLCK" => Self::Ofd,
            "FLOCK" => Self::Flock,
            "LEASE" | "DELEG" => Self::Lease,
            _ => return None,
        })
    }
}

impl fmt::Display for LockKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Posix => "POSIX lock",
            Self::Ofd => "OFD lock",
            Self::Flock => "flock",
            Self::Lease => "lease",
        })
    }
}

/// One lock held through an fd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdLock {
    pub kind: LockKind,
    /// `READ`, `WRITE` or `UNLCK` (a lease being broken).
    pub mode: String,
    /// The owner's pid as the kernel reports it (-1 for OFD locks and leases on new kernels).
    pub pid: i32,
    pub start: u64,
    /// Last byte, `None` for "to end of file".
    pub end: Option<u64>,
}

impl fmt::Display for FdLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} ({}-", self.kind, self.mode, self.start)?;
        match self.end {
            Some(e) => write!(f, "{e})"),
            None => f.write_str("EOF)"),
        }
    }
}

/// Parses the value of one `lock:` line (after `lock:`).
pub fn parse_lock(value: &str, line: usize) -> Result<FdLock, ParseError> {
    let bad = |what: &str| ParseError::new(line, format!("{what} in lock line {value:?}"));
    let mut words = value.split_whitespace();
    // "N:" ordinal, then the kind.
    words
        .next()
        .filter(|w| w.ends_with(':'))
        .ok_or_else(|| bad("no ordinal"))?;
    let kind_word = words.next().ok_or_else(|| bad("no kind"))?;
    let kind = LockKind::parse(kind_word).ok_or_else(|| bad("unknown kind"))?;
    // Between the kind and the mode: ADVISORY/MANDATORY, a lease's state; skip to the mode.
    let mode = words
        .find(|w| matches!(*w, "READ" | "WRITE" | "UNLCK"))
        .ok_or_else(|| bad("no READ/WRITE/UNLCK"))?
        .to_string();
    let pid: i32 = num(words.next().ok_or_else(|| bad("no pid"))?, line, "lock pid")?;
    let _inode = words.next().ok_or_else(|| bad("no device:inode"))?;
    let start = num(
        words.next().ok_or_else(|| bad("no start"))?,
        line,
        "lock start",
    )?;
    let end = match words.next().ok_or_else(|| bad("no end"))? {
        "EOF" => None,
        e => Some(num(e, line, "lock end")?),
    };
    Ok(FdLock {
        kind,
        mode,
        pid,
        start,
        end,
    })
}

/// Every lock in a parsed fdinfo.
pub fn fd_locks(fi: &FdInfo) -> Result<Vec<FdLock>, ParseError> {
    fi.extra
        .iter()
        .filter(|(k, _)| k == "lock")
        // The line number is lost in `extra`: the error quotes the line instead.
        .map(|(_, v)| parse_lock(v, 0))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proc::fdinfo::parse_fdinfo;

    #[test]
    fn every_kind_from_a_real_fdinfo() {
        let t = "pos:\t0\nflags:\t0100002\nmnt_id:\t30\nino:\t77\n\
                 lock:\t1: FLOCK  ADVISORY  WRITE 412 00:2a:77 0 EOF\n\
                 lock:\t2: POSIX  ADVISORY  READ 412 00:2a:77 10 19\n\
                 lock:\t3: OFDLCK ADVISORY  WRITE -1 00:2a:77 100 EOF\n\
                 lock:\t4: LEASE  ACTIVE    READ 412 00:2a:77 0 EOF\n";
        let locks = fd_locks(&parse_fdinfo(t).unwrap()).unwrap();
        let kinds: Vec<_> = locks.iter().map(|l| l.kind).collect();
        assert_eq!(
            kinds,
            [
                LockKind::Flock,
                LockKind::Posix,
                LockKind::Ofd,
                LockKind::Lease
            ]
        );
        assert_eq!(locks[1].mode, "READ");
        assert_eq!((locks[1].start, locks[1].end), (10, Some(19)));
        assert_eq!((locks[2].pid, locks[2].end), (-1, None));
        assert_eq!(locks[1].to_string(), "POSIX lock READ (10-19)");
    }

    #[test]
    fn a_breaking_lease_and_no_locks() {
        let l = parse_lock("1: LEASE  BREAKING  UNLCK 9 08:01:5 0 EOF", 1).unwrap();
        assert_eq!((l.kind, l.mode.as_str()), (LockKind::Lease, "UNLCK"));
        let fi = parse_fdinfo("pos:\t0\nflags:\t0\n").unwrap();
        assert!(fd_locks(&fi).unwrap().is_empty());
    }

    #[test]
    fn bad_lines_are_errors_not_panics() {
        for v in [
            "",
            "1:",
            "1: WEIRD ADVISORY WRITE 1 0:0:1 0 EOF",
            "1: POSIX ADVISORY",
            "1: POSIX ADVISORY WRITE x 0:0:1 0 EOF",
            "1: POSIX ADVISORY WRITE 1 0:0:1 zero EOF",
            "POSIX ADVISORY WRITE 1 0:0:1 0 EOF",
        ] {
            assert!(parse_lock(v, 1).is_err(), "{v:?}");
        }
    }
}
