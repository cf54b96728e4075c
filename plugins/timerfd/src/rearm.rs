//! When a restored timer fires next and how many ticks it holds: pure arithmetic on
//! nanoseconds, apart from the syscalls.
//!
//! The choice: the gap between dump and restore counts as if the tree had been frozen all
//! along (SIGSTOP, the freezer): the timer kept running on its clock, and every expiry in
//! the gap is a tick a `read` returns after the restore, on top of the ticks not read at the
//! dump; a periodic timer keeps its phase. The dump records the clock's time when it read the
//! remaining time (our fields `criu_rs_clock_sec/nsec`). Without them (CRIU's images), or
//! when the clock is now behind that time (another boot for `CLOCK_MONOTONIC`), it does what
//! CRIU does: the remaining time starts again at the restore, the gap is not counted.

/// Nanoseconds per second.
pub const NSEC: u128 = 1_000_000_000;

/// A tick due within this much of the re-arm is counted at once: the ticks count is set
/// after the timer is armed (arming clears it), so a tick in between would be overwritten.
pub const MARGIN_NS: u128 = 2_000_000;

/// A timer as dumped, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dumped {
    /// Time left until the next expiry (0: disarmed).
    pub remaining: u128,
    /// The period (0: one-shot).
    pub interval: u128,
    /// Expiries not read yet.
    pub ticks: u64,
    /// The timer's clock when `remaining` was read, if recorded.
    pub clock_at_dump: Option<u128>,
}

/// How to arm the restored timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rearm {
    /// The next expiry on the timer's clock (absolute), `None`: stays disarmed.
    pub next: Option<u128>,
    /// The ticks to set after arming.
    pub ticks: u64,
}

/// The re-arm of `d` at clock time `now`.
pub fn rearm(d: &Dumped, now: u128) -> Rearm {
    // Disarmed.
    if d.remaining == 0 && d.interval == 0 {
        return Rearm {
            next: None,
            ticks: d.ticks,
        };
    }
    // A periodic timer with nothing left expired just before it was read, that expiry
    // already in its ticks: the next one is a period later.
    let left = if d.remaining == 0 {
        d.interval
    } else {
        d.remaining
    };
    let due = match d.clock_at_dump {
        Some(at) if at <= now => at + left,
        // CRIU's images, or a clock that went back: restart the remaining time.
        _ => now + left,
    };
    let r = advance(d.ticks, due, d.interval, now);
    match r.next {
        // Ticks to set and an expiry too close: count it now (see MARGIN_NS).
        Some(next) if r.ticks > 0 && next < now + MARGIN_NS => {
            advance(r.ticks, next, d.interval, now + MARGIN_NS)
        }
        _ => r,
    }
}

/// Every expiry from `due` on (one per `interval`, one only for a one-shot) up to `until`
/// included becomes a tick; the next expiry after `until` stays armed.
fn advance(ticks: u64, due: u128, interval: u128, until: u128) -> Rearm {
    if due > until {
        return Rearm {
            next: Some(due),
            ticks,
        };
    }
    // A one-shot fires once; a periodic timer at due, due + interval, ... up to until.
    let missed = (until - due).checked_div(interval).map_or(1, |n| n + 1);
    Rearm {
        ticks: ticks.saturating_add(u64::try_from(missed).unwrap_or(u64::MAX)),
        next: (interval != 0).then(|| due + missed * interval),
    }
}
