//! Dump: the timer's state from fdinfo, after a `timerfd_gettime` that settles a periodic
//! timer's missed expiries into its ticks (`clockid:`, `ticks:`, `settime flags:` in octal,
//! `it_value: (sec, nsec)` remaining, `it_interval: (sec, nsec)`) and its clock's time.

use std::os::fd::{AsRawFd, BorrowedFd};

use criu_plugin_api::{FdDesc, FdInfo, PluginError};
use criu_proto::images::TimerfdEntry;
use nix::time::{ClockId, clock_gettime};

/// `(sec, nsec)` of a `key: (sec, nsec)` line.
fn pair(info: &FdInfo, key: &str) -> Result<(u64, u64), PluginError> {
    match info.list::<u64>(key)?[..] {
        [s, ns] if ns < 1_000_000_000 => Ok((s, ns)),
        _ => Err(PluginError::BadFdInfo {
            field: key.into(),
            reason: format!("{:?} is not (sec, nsec)", info.field(key)),
        }),
    }
}

/// CRIU's entry from a timerfd's fdinfo (`id`, `flags`, `fown` and our clock fields left for
/// the caller).
pub fn parse_timerfd(info: &FdInfo) -> Result<TimerfdEntry, PluginError> {
    let (vsec, vnsec) = pair(info, "it_value")?;
    let (isec, insec) = pair(info, "it_interval")?;
    Ok(TimerfdEntry {
        clockid: info.parse("clockid")?,
        ticks: info.parse("ticks")?,
        settime_flags: info.octal("settime flags")?,
        vsec,
        vnsec,
        isec,
        insec,
        ..Default::default()
    })
}

fn now(clock: ClockId) -> Result<u128, nix::errno::Errno> {
    let t = clock_gettime(clock)?;
    Ok(t.tv_sec() as u128 * crate::rearm::NSEC + t.tv_nsec() as u128)
}

/// Reads the fdinfo of `file` (criu's duplicate of the task's fd) between two readings of
/// the timer's clock: fdinfo shows ticks and remaining time under one lock, and the clock
/// time recorded is the middle of the two readings.
pub fn snapshot(fd: &FdDesc, file: BorrowedFd<'_>) -> Result<TimerfdEntry, PluginError> {
    let clockid: i32 = fd.fdinfo.parse("clockid")?;
    let clock = ClockId::from_raw(clockid);
    let path = format!("/proc/self/fdinfo/{}", file.as_raw_fd());
    let fail = |op: &'static str, source: std::io::Error| PluginError::Fd {
        pid: fd.pid,
        fd: fd.fd,
        link: fd.link.clone(),
        op,
        source,
    };
    // An expiry between settle and the fdinfo read shows the expired state again (nothing
    // left, ticks counted): read again, a few times (rearm copes with it otherwise).
    let mut tries = 0;
    let (mut e, before, after) = loop {
        crate::sys::settle(file).map_err(|e| fail("timerfd_gettime", e.into()))?;
        let before = now(clock).map_err(|e| fail("clock_gettime", e.into()))?;
        let raw = std::fs::read_to_string(&path).map_err(|e| fail("reading fdinfo", e))?;
        let after = now(clock).map_err(|e| fail("clock_gettime", e.into()))?;
        let info = FdInfo {
            raw,
            ..FdInfo::default()
        };
        let e = parse_timerfd(&info)?;
        tries += 1;
        let expired = e.vsec == 0 && e.vnsec == 0 && (e.isec, e.insec) != (0, 0);
        if !expired || tries == 5 {
            break (e, before, after);
        }
    };
    let at = before + (after - before) / 2;
    e.criu_rs_clock_sec = Some((at / crate::rearm::NSEC) as u64);
    e.criu_rs_clock_nsec = Some((at % crate::rearm::NSEC) as u64);
    Ok(e)
}
