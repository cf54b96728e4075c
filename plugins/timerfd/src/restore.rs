//! Restore: the timerfd is created (clock, `TFD_NONBLOCK`) when its description is opened
//! and armed in `finish`, the last step before the tree resumes, so that no time passes
//! between the arming and the tasks running again (see [`crate::rearm`] for the ticks).

use std::os::fd::{AsFd, OwnedFd};

use criu_plugin_api::{FileRestorer, InstalledFd, PluginError, RestoreContext};
use criu_proto::images::{FileEntry, TimerfdEntry};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use nix::time::clock_gettime;

use crate::rearm::{Dumped, NSEC, rearm};
use crate::{LINK, sys};

const IMAGE: &str = "files.img";

/// The clocks a timerfd can use, by `clockid`.
fn clock_of(id: u32) -> Option<ClockId> {
    Some(match id as i32 {
        libc::CLOCK_REALTIME => ClockId::CLOCK_REALTIME,
        libc::CLOCK_MONOTONIC => ClockId::CLOCK_MONOTONIC,
        libc::CLOCK_BOOTTIME => ClockId::CLOCK_BOOTTIME,
        libc::CLOCK_REALTIME_ALARM => ClockId::CLOCK_REALTIME_ALARM,
        libc::CLOCK_BOOTTIME_ALARM => ClockId::CLOCK_BOOTTIME_ALARM,
        _ => return None,
    })
}

/// The entry's timer in nanoseconds, or why the entry is bad.
pub fn dumped(id: u32, t: &TimerfdEntry) -> Result<Dumped, PluginError> {
    let bad = |what: String| PluginError::bad_image(IMAGE, format!("TIMERFD entry {id}: {what}"));
    if clock_of(t.clockid).is_none() {
        return Err(bad(format!("clockid {} is not a timerfd clock", t.clockid)));
    }
    let known = (libc::TFD_TIMER_ABSTIME | libc::TFD_TIMER_CANCEL_ON_SET) as u32;
    if t.settime_flags & !known != 0 {
        return Err(bad(format!("settime flags {:#o}", t.settime_flags)));
    }
    let ns = |s: u64, n: u64, what: &str| {
        if n >= NSEC as u64 {
            return Err(bad(format!("{what} nanoseconds {n}")));
        }
        Ok(s as u128 * NSEC + n as u128)
    };
    let clock_at_dump = match (t.criu_rs_clock_sec, t.criu_rs_clock_nsec) {
        (Some(s), Some(n)) => Some(ns(s, n, "clock")?),
        (None, None) => None,
        _ => return Err(bad("half of criu_rs_clock_sec/nsec".into())),
    };
    Ok(Dumped {
        remaining: ns(t.vsec, t.vnsec, "it_value")?,
        interval: ns(t.isec, t.insec, "it_interval")?,
        ticks: t.ticks,
        clock_at_dump,
    })
}

fn spec(ns: u128) -> TimeSpec {
    TimeSpec::new((ns / NSEC) as i64, (ns % NSEC) as i64)
}

/// One restore: every timer created, to be armed in `finish`.
#[derive(Debug, Default)]
pub struct Restorer {
    timers: Vec<(u32, TimerFd, TimerfdEntry)>,
}

impl Restorer {
    fn arm(id: u32, timer: &TimerFd, t: &TimerfdEntry) -> Result<(), PluginError> {
        let fail = |op: &'static str, e: nix::errno::Errno| PluginError::Restore {
            id,
            what: LINK.into(),
            op,
            source: e.into(),
        };
        let d = dumped(id, t)?;
        let now = clock_gettime(nix::time::ClockId::from_raw(t.clockid as i32))
            .map_err(|e| fail("clock_gettime", e))?;
        let now = now.tv_sec() as u128 * NSEC + now.tv_nsec() as u128;
        let r = rearm(&d, now);
        tracing::debug!(id, ?d, now, ?r, "arming timerfd");
        if let Some(next) = r.next {
            let flags = TimerSetTimeFlags::from_bits_truncate(t.settime_flags as i32);
            let value = if flags.contains(TimerSetTimeFlags::TFD_TIMER_ABSTIME) {
                spec(next)
            } else {
                spec(next - now)
            };
            let exp = if d.interval == 0 {
                Expiration::OneShot(value)
            } else {
                Expiration::IntervalDelayed(value, spec(d.interval))
            };
            timer
                .set(exp, flags)
                .map_err(|e| fail("timerfd_settime", e))?;
        }
        if r.ticks > 0 {
            sys::set_ticks(timer.as_fd(), r.ticks)
                .map_err(|e| fail("ioctl(TFD_IOC_SET_TICKS)", e))?;
        }
        Ok(())
    }
}

impl FileRestorer for Restorer {
    fn open_file(
        &mut self,
        _ctx: &mut dyn RestoreContext,
        entry: &FileEntry,
    ) -> Result<OwnedFd, PluginError> {
        let t = entry.tfd.as_ref().ok_or_else(|| {
            PluginError::bad_image(IMAGE, format!("TIMERFD entry {} without tfd", entry.id))
        })?;
        dumped(entry.id, t)?;
        let clock = clock_of(t.clockid).ok_or_else(|| {
            PluginError::bad_image(IMAGE, format!("TIMERFD entry {}: clockid", entry.id))
        })?;
        let mut flags = TimerFlags::TFD_CLOEXEC;
        if t.flags & libc::O_NONBLOCK as u32 != 0 {
            flags |= TimerFlags::TFD_NONBLOCK;
        }
        let fail = |op: &'static str, source: std::io::Error| PluginError::Restore {
            id: entry.id,
            what: LINK.into(),
            op,
            source,
        };
        let timer = TimerFd::new(clock, flags).map_err(|e| fail("timerfd_create", e.into()))?;
        // A duplicate for the tasks; the restorer keeps the TimerFd to arm it in finish.
        let fd = timer
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| fail("dup", e))?;
        self.timers.push((entry.id, timer, *t));
        Ok(fd)
    }

    /// Arms every timer, just before the tree resumes.
    fn finish(
        &mut self,
        _ctx: &mut dyn RestoreContext,
        _installed: &[InstalledFd],
    ) -> Result<(), PluginError> {
        for (id, timer, t) in &self.timers {
            Self::arm(*id, timer, t)?;
        }
        Ok(())
    }
}
