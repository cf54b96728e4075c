//! `timens-N.img`: the clocks of the root's time namespace.
//!
//! CRIU records a time namespace as the values CLOCK_MONOTONIC and CLOCK_BOOTTIME read
//! inside it at dump time (not its offsets): the restore picks offsets that make the clocks
//! go on from there. A namespace's clocks are the host's plus its offsets
//! (`/proc/PID/timens_offsets`), so criu reads them from here: its own clocks, minus its own
//! offsets, plus the root's. Entering a time namespace would need a single-threaded criu.
//!
//! A task whose children would get another time namespace than its own (it called
//! `unshare(CLONE_NEWTIME)` and stays outside) is refused, as CRIU refuses it: the restore
//! has no way to give it that pending namespace.

use criu_proto::images::{TimensEntry, Timespec};
use nix::time::{ClockId, clock_gettime};

use crate::image::{ImageDir, ImageKind};

use super::super::DumpError;
use super::super::run::img;

const NSEC_PER_SEC: i64 = 1_000_000_000;

/// Offsets of a time namespace, as (seconds, nanoseconds in 0..1e9).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offsets {
    pub monotonic: (i64, i64),
    pub boottime: (i64, i64),
}

/// Parses `/proc/PID/timens_offsets` (`monotonic SEC NSEC` and `boottime SEC NSEC` lines;
/// the kernel may also name the clocks by number, 1 and 7).
pub fn parse_offsets(text: &str) -> Result<Offsets, String> {
    let mut out = Offsets::default();
    let (mut mono, mut boot) = (false, false);
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let w: Vec<&str> = line.split_whitespace().collect();
        let [clock, sec, nsec] = w[..] else {
            return Err(format!("line {line:?}: expected CLOCK SEC NSEC"));
        };
        let sec: i64 = sec.parse().map_err(|_| format!("line {line:?}: seconds"))?;
        let nsec: i64 = nsec
            .parse()
            .ok()
            .filter(|n| (0..NSEC_PER_SEC).contains(n))
            .ok_or_else(|| format!("line {line:?}: nanoseconds"))?;
        match clock {
            "monotonic" | "1" => (out.monotonic, mono) = ((sec, nsec), true),
            "boottime" | "7" => (out.boottime, boot) = ((sec, nsec), true),
            other => return Err(format!("unknown clock {other:?}")),
        }
    }
    if !(mono && boot) {
        return Err("monotonic or boottime line missing".into());
    }
    Ok(out)
}

/// `a + b - c` for (sec, nsec) pairs, normalized to nsec in 0..1e9.
pub fn shift(a: (i64, i64), b: (i64, i64), c: (i64, i64)) -> (i64, i64) {
    let total = (a.0 + b.0 - c.0) as i128 * NSEC_PER_SEC as i128 + (a.1 + b.1 - c.1) as i128;
    (
        total.div_euclid(NSEC_PER_SEC as i128) as i64,
        total.rem_euclid(NSEC_PER_SEC as i128) as i64,
    )
}

/// The offsets of `pid`'s time namespace for its children (its own unless it unshared one).
pub fn read_offsets(pid: &str) -> Result<Offsets, String> {
    let path = format!("/proc/{pid}/timens_offsets");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    parse_offsets(&text).map_err(|e| format!("{path}: {e}"))
}

/// Refuses `pid` when its children's time namespace is not its own (see the module docs).
/// A kernel without time namespaces has neither link: nothing to check.
pub fn check_for_children(pid: i32) -> Result<(), DumpError> {
    let own = crate::proc::misc::read_ns_inode(pid, "time");
    let kids = crate::proc::misc::read_ns_inode(pid, "time_for_children");
    match (own, kids) {
        (Ok(a), Ok(b)) if a != b => Err(DumpError::Unsupported {
            pid,
            step: "namespaces",
            what: format!(
                "a time namespace for its children (time:[{b}]) other than its own \
                 (time:[{a}]), a nested time namespace"
            ),
            hint: "CRIU refuses it too: let the task enter that namespace (setns to \
                   /proc/PID/ns/time_for_children) or fork into it before the dump",
        }),
        _ => Ok(()),
    }
}

/// The clocks as read in criu's time namespace, minus criu's offsets, plus `pid`'s.
fn clocks_of(pid: Option<i32>) -> Result<TimensEntry, DumpError> {
    let who = pid.unwrap_or(std::process::id() as i32);
    let off_err = |what: String| DumpError::Unexpected {
        pid: who,
        step: "timens",
        what,
    };
    let (mine, theirs) = match pid {
        Some(p) => (
            read_offsets("self").map_err(off_err)?,
            read_offsets(&p.to_string()).map_err(off_err)?,
        ),
        None => Default::default(),
    };
    let now = |c| {
        clock_gettime(c)
            .map(|t| (t.tv_sec(), t.tv_nsec()))
            .map_err(|e| DumpError::sys(who, "timens", "clock_gettime", e))
    };
    let ts = |(sec, nsec): (i64, i64)| Timespec {
        tv_sec: sec as u64,
        tv_nsec: nsec as u64,
    };
    let m = now(ClockId::CLOCK_MONOTONIC)?;
    let b = now(ClockId::CLOCK_BOOTTIME)?;
    Ok(TimensEntry {
        monotonic: ts(shift(m, theirs.monotonic, mine.monotonic)),
        boottime: ts(shift(b, theirs.boottime, mine.boottime)),
    })
}

/// Writes `timens-<id>.img`: the clocks of `pid`'s time namespace when the root has one of
/// its own (`pid` Some), or criu's as `timens-0.img` (CRIU writes that one for a tree in
/// criu's time namespace).
pub fn dump(dir: &ImageDir, pid: Option<i32>, id: u32) -> Result<(), DumpError> {
    let who = pid.unwrap_or(std::process::id() as i32);
    if pid.is_some() {
        // criu's own offsets are read from its children's view (see read_offsets).
        check_for_children(std::process::id() as i32)?;
    }
    let entry = clocks_of(pid)?;
    tracing::info!(pid = who, id, monotonic = ?entry.monotonic, boottime = ?entry.boottime, "time namespace clocks");
    dir.write_single(ImageKind::Timens, u64::from(id), &entry)
        .map_err(img(who, "timens"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_parse_as_the_kernel_prints_them() {
        let o =
            parse_offsets("monotonic      86400         5\nboottime      -3  999999999\n").unwrap();
        assert_eq!(o.monotonic, (86400, 5));
        assert_eq!(o.boottime, (-3, 999_999_999));
        assert_eq!(parse_offsets("1 2 3\n7 4 5\n").unwrap().boottime, (4, 5));
        for bad in [
            "monotonic 1 2\n",
            "monotonic 1 2\nboottime 1\n",
            "monotonic 1 1000000000\nboottime 0 0\n",
            "realtime 1 2\nmonotonic 1 2\nboottime 0 0\n",
            "monotonic x 2\nboottime 0 0\n",
        ] {
            assert!(parse_offsets(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn shift_normalizes() {
        assert_eq!(
            shift((10, 900_000_000), (0, 200_000_000), (0, 0)),
            (11, 100_000_000)
        );
        assert_eq!(shift((10, 0), (0, 0), (0, 1)), (9, 999_999_999));
        assert_eq!(shift((5, 0), (-10, 0), (0, 0)), (-5, 0));
    }

    #[test]
    fn nested_time_namespace_is_not_ours() {
        // criu's own task has no pending time namespace.
        check_for_children(std::process::id() as i32).unwrap();
    }
}
