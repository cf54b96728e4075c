//! `timens-N.img`: the root's time namespace, created by the root itself as CRIU does.
//!
//! A time namespace's offsets can only be written before any task entered it, so it is not
//! a clone flag: the new root, still single-threaded and stopped, runs
//! `unshare(CLONE_NEWTIME)` (the namespace becomes its children's), criu writes the offsets
//! into `/proc/ROOT/timens_offsets` (chosen so that the clocks go on from the values the
//! image recorded at dump), then the root joins it with `setns` on its
//! `/proc/self/ns/time_for_children`. Every task the root forks later inherits it, and the
//! vDSO mapped afterwards reads the namespace's clocks.

use std::io::Write;

use criu_proto::ImageKind;
use criu_proto::images::TimensEntry;
use nix::time::{ClockId, clock_gettime};

use crate::dump::ns::time::{Offsets, read_offsets, shift};
use crate::restore::error::{RestoreError, Result, bad};
use crate::restore::imgread::Images;
use crate::restore::rexec::{RemoteThread, write_mem};

/// The kernel's bound on a namespace clock (`KTIME_SEC_MAX / 2`): a value past it is
/// refused with ERANGE.
pub const CLOCK_SEC_MAX: u64 = (i64::MAX as u64 / 1_000_000_000) / 2;

/// The clocks (sec, nsec) the tree read at dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeState {
    pub monotonic: (i64, i64),
    pub boottime: (i64, i64),
}

impl TimeState {
    /// Reads `timens-<id>.img`; a clock out of the kernel's range is an error naming it.
    pub fn load(images: &Images, id: u32) -> Result<TimeState> {
        let kind = ImageKind::Timens;
        let name = kind.file_name(u64::from(id));
        if !images.exists(&name) {
            return Err(bad(&name, None, "missing (the root's time namespace)"));
        }
        let e: TimensEntry = images.single(&name, kind.magic())?;
        Self::from_entry(&e).map_err(|reason| bad(&name, Some(0), reason))
    }

    /// Checks both clocks of an entry.
    pub fn from_entry(e: &TimensEntry) -> std::result::Result<TimeState, String> {
        let check = |field: &str, t: &criu_proto::images::Timespec| {
            if t.tv_sec > CLOCK_SEC_MAX || t.tv_nsec >= 1_000_000_000 {
                return Err(format!(
                    "{field} {}.{:09} s out of range (at most {CLOCK_SEC_MAX} s, \
                     nanoseconds below 1e9)",
                    t.tv_sec, t.tv_nsec
                ));
            }
            Ok((t.tv_sec as i64, t.tv_nsec as i64))
        };
        Ok(TimeState {
            monotonic: check("monotonic", &e.monotonic)?,
            boottime: check("boottime", &e.boottime)?,
        })
    }

    /// The offsets that make a new namespace's clocks read the dumped values now: the dumped
    /// value minus the host's clock (criu's clock minus criu's offsets `own`).
    pub fn offsets(&self, now_mono: (i64, i64), now_boot: (i64, i64), own: Offsets) -> Offsets {
        Offsets {
            monotonic: shift(self.monotonic, own.monotonic, now_mono),
            boottime: shift(self.boottime, own.boottime, now_boot),
        }
    }

    /// Puts the new root (`rt`, single-threaded, stopped at the gadget whose data page is
    /// `data`) into a new time namespace with this state (see the module docs).
    pub fn enter(&self, rt: &mut RemoteThread, data: u64) -> Result<()> {
        let pid = rt.pid;
        let host = rt.tid.as_raw();
        rt.step = "time namespace: unshare".into();
        rt.call(
            "unshare(CLONE_NEWTIME)",
            libc::SYS_unshare,
            [libc::CLONE_NEWTIME as u64, 0, 0, 0, 0, 0],
        )?;
        let local = |step: &str, source| RestoreError::Local {
            pid,
            step: format!("time namespace: {step}"),
            source,
        };
        let own = read_offsets("self").map_err(|reason| RestoreError::Task {
            pid,
            tid: host,
            step: "time namespace: criu's offsets".into(),
            reason,
        })?;
        let now = |c| {
            clock_gettime(c)
                .map(|t| (t.tv_sec(), t.tv_nsec()))
                .map_err(|e| local("clock_gettime", e))
        };
        let off = self.offsets(
            now(ClockId::CLOCK_MONOTONIC)?,
            now(ClockId::CLOCK_BOOTTIME)?,
            own,
        );
        // Both lines in one write: the kernel applies a write whole or not at all.
        let text = format!(
            "{} {} {}\n{} {} {}\n",
            libc::CLOCK_MONOTONIC,
            off.monotonic.0,
            off.monotonic.1,
            libc::CLOCK_BOOTTIME,
            off.boottime.0,
            off.boottime.1
        );
        tracing::debug!(pid, offsets = %text.trim(), "time namespace offsets");
        let path = format!("/proc/{host}/timens_offsets");
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e| RestoreError::Task {
                pid,
                tid: host,
                step: format!("time namespace: writing {path}"),
                reason: format!("{e} (offsets {:?})", text.trim()),
            })?;
        rt.step = "time namespace: join".into();
        let link = b"/proc/self/ns/time_for_children\0";
        write_mem(rt, data, link)?;
        let fd = rt.call(
            "open(/proc/self/ns/time_for_children)",
            libc::SYS_openat,
            [
                libc::AT_FDCWD as u64,
                data,
                (libc::O_RDONLY | libc::O_CLOEXEC) as u64,
                0,
                0,
                0,
            ],
        )?;
        let joined = rt.call(
            "setns(CLONE_NEWTIME)",
            libc::SYS_setns,
            [fd, libc::CLONE_NEWTIME as u64, 0, 0, 0, 0],
        );
        rt.call("close", libc::SYS_close, [fd, 0, 0, 0, 0, 0])?;
        joined?;
        tracing::info!(pid, "root entered its new time namespace");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use criu_proto::images::Timespec;
    use proptest::prelude::*;

    fn entry(ms: u64, bs: u64, ns: u64) -> TimensEntry {
        TimensEntry {
            monotonic: Timespec {
                tv_sec: ms,
                tv_nsec: ns,
            },
            boottime: Timespec {
                tv_sec: bs,
                tv_nsec: ns,
            },
        }
    }

    #[test]
    fn out_of_range_clocks_are_refused() {
        assert!(TimeState::from_entry(&entry(5, 6, 7)).is_ok());
        let e = TimeState::from_entry(&entry(CLOCK_SEC_MAX + 1, 6, 7)).unwrap_err();
        assert!(e.contains("monotonic"), "{e}");
        let e = TimeState::from_entry(&entry(1, u64::MAX, 7)).unwrap_err();
        assert!(e.contains("boottime"), "{e}");
        assert!(TimeState::from_entry(&entry(1, 1, 1_000_000_000)).is_err());
    }

    proptest! {
        /// Offsets put on the host's clock give back the dumped value.
        #[test]
        fn offsets_give_back_the_dumped_clocks(
            ms in 0..CLOCK_SEC_MAX, bs in 0..CLOCK_SEC_MAX, dn in 0u64..1_000_000_000,
            now_s in 0i64..1_000_000_000, now_n in 0i64..1_000_000_000,
            own_s in -1_000_000i64..1_000_000, own_n in 0i64..1_000_000_000,
        ) {
            let st = TimeState::from_entry(&entry(ms, bs, dn)).unwrap();
            let own = Offsets { monotonic: (own_s, own_n), boottime: (own_s, own_n) };
            let now = (now_s, now_n);
            let off = st.offsets(now, now, own);
            // criu's clock minus its offsets is the host's; plus the new offsets.
            let host = shift(now, (0, 0), own.monotonic);
            prop_assert_eq!(shift(host, off.monotonic, (0, 0)), st.monotonic);
            prop_assert_eq!(shift(host, off.boottime, (0, 0)), st.boottime);
            prop_assert!((0..1_000_000_000).contains(&off.monotonic.1));
        }
    }
}
