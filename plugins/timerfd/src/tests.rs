use std::os::fd::AsFd;
use std::time::Duration;

use criu_plugin_api::testing::{MemoryImages, own_fd_desc};
use criu_plugin_api::{FdInfo, FileRestorer};
use nix::sys::time::{TimeSpec, TimeValLike};
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use proptest::prelude::*;

use super::rearm::{Dumped, MARGIN_NS, NSEC, Rearm, rearm};
use super::*;

#[test]
fn fdinfo_fields() {
    let info = FdInfo {
        raw: "pos:\t0\nflags:\t02004002\nmnt_id:\t17\nino:\t1039\nclockid: 0\nticks: 5\n\
              settime flags: 03\nit_value: (12, 49406829)\nit_interval: (1, 500)\n"
            .into(),
        ..FdInfo::default()
    };
    let t = dump::parse_timerfd(&info).unwrap();
    assert_eq!((t.clockid, t.ticks, t.settime_flags), (0, 5, 3));
    assert_eq!((t.vsec, t.vnsec, t.isec, t.insec), (12, 49406829, 1, 500));
    let bad = FdInfo {
        raw: "clockid: 0\nticks: 5\nsettime flags: 0\nit_value: (1, 2, 3)\nit_interval: (0, 0)\n"
            .into(),
        ..FdInfo::default()
    };
    let e = dump::parse_timerfd(&bad).unwrap_err().to_string();
    assert!(e.contains("it_value"), "{e}");
}

const S: u128 = NSEC;

#[test]
fn rearm_cases() {
    let d = |remaining, interval, ticks, at| Dumped {
        remaining,
        interval,
        ticks,
        clock_at_dump: at,
    };
    // Disarmed: only the ticks.
    assert_eq!(
        rearm(&d(0, 0, 3, Some(S)), 9 * S),
        Rearm {
            next: None,
            ticks: 3
        }
    );
    // CRIU's images: the remaining time restarts.
    assert_eq!(rearm(&d(2 * S, S, 0, None), 100 * S).next, Some(102 * S));
    // Not due yet: same deadline.
    assert_eq!(
        rearm(&d(10 * S, S, 1, Some(100 * S)), 105 * S),
        Rearm {
            next: Some(110 * S),
            ticks: 1
        }
    );
    // Periodic, 3 expiries in the gap (101, 102, 103): phase kept.
    assert_eq!(
        rearm(&d(S, S, 2, Some(100 * S)), 103 * S + S / 2),
        Rearm {
            next: Some(104 * S),
            ticks: 5
        }
    );
    // One-shot due in the gap: one tick, disarmed.
    assert_eq!(
        rearm(&d(S, 0, 0, Some(100 * S)), 200 * S),
        Rearm {
            next: None,
            ticks: 1
        }
    );
    // A clock behind the dump (another boot): restart.
    assert_eq!(rearm(&d(S, 0, 0, Some(100 * S)), 50 * S).next, Some(51 * S));
    // Periodic caught expired (0 left, the expiry in its ticks): next a period later.
    assert_eq!(
        rearm(&d(0, S, 1, Some(100 * S)), 100 * S + S / 2),
        Rearm {
            next: Some(101 * S),
            ticks: 1
        }
    );
    // Ticks to set and an expiry within the margin: counted now.
    let r = rearm(&d(S, S, 1, Some(100 * S)), 101 * S - MARGIN_NS / 2);
    assert_eq!(
        r,
        Rearm {
            next: Some(102 * S),
            ticks: 2
        }
    );
}

proptest! {
    /// Whatever the gap, the ticks grow by exactly the expiries up to the re-arm (or its
    /// margin), the next expiry is after it and on the period's phase.
    #[test]
    fn rearm_counts_every_expiry(
        remaining in 0u128..10_000_000_000,
        interval in prop_oneof![Just(0u128), 1_000u128..3_000_000_000],
        ticks in 0u64..5,
        at in 1u128..1_000_000_000_000,
        gap in 0u128..50_000_000_000,
    ) {
        let d = Dumped { remaining, interval, ticks, clock_at_dump: Some(at) };
        let now = at + gap;
        let r = rearm(&d, now);
        if remaining == 0 && interval == 0 {
            prop_assert_eq!(r, Rearm { next: None, ticks });
            return Ok(());
        }
        let due = at + if remaining == 0 { interval } else { remaining };
        let until = if r.ticks > 0 { now + MARGIN_NS } else { now };
        let fired = r.ticks - ticks;
        match r.next {
            Some(next) => {
                prop_assert!(interval != 0 || fired == 0);
                prop_assert!(next > now);
                if r.ticks > 0 { prop_assert!(next >= until); }
                prop_assert_eq!(next, due + fired as u128 * interval);
                prop_assert!(fired == 0 || next - interval <= until);
            }
            None => {
                prop_assert_eq!(interval, 0);
                prop_assert_eq!(fired, 1);
                prop_assert!(due <= until);
            }
        }
    }
}

fn dump_restore(timer: &TimerFd, gap: Duration) -> (FileEntry, TimerFd) {
    let mut ctx = MemoryImages::new(0);
    let desc = own_fd_desc(timer.as_fd()).unwrap();
    assert!(PLUGIN.claims(&desc));
    let e = PLUGIN.dump_file(&mut ctx, &desc, 1).unwrap();
    std::thread::sleep(gap);
    let mut r = PLUGIN
        .start_restore(&mut ctx, std::slice::from_ref(&e))
        .unwrap();
    let fd = r.open_file(&mut ctx, &e).unwrap();
    r.finish(&mut ctx, &[]).unwrap();
    (e, timer_from(fd))
}

#[allow(unsafe_code)]
fn timer_from(fd: std::os::fd::OwnedFd) -> TimerFd {
    use std::os::fd::{FromRawFd, IntoRawFd};
    // SAFETY: `fd` is a timerfd we own; TimerFd takes it over.
    unsafe { TimerFd::from_raw_fd(fd.into_raw_fd()) }
}

fn ticks_of(t: &TimerFd) -> u64 {
    let d = own_fd_desc(t.as_fd()).unwrap();
    d.fdinfo.parse("ticks").unwrap()
}

#[test]
fn periodic_timer_keeps_its_period_and_gets_the_missed_ticks() {
    let t = TimerFd::new(ClockId::CLOCK_MONOTONIC, TimerFlags::TFD_NONBLOCK).unwrap();
    let p = TimeSpec::from(Duration::from_millis(40));
    t.set(
        Expiration::IntervalDelayed(p, p),
        TimerSetTimeFlags::empty(),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(100)); // 2 unread ticks
    let (e, back) = dump_restore(&t, Duration::from_millis(200));
    let tfd = e.tfd.unwrap();
    assert!(tfd.ticks >= 2 && tfd.criu_rs_clock_sec.is_some(), "{tfd:?}");
    // 2 unread + about 5 in the gap.
    let n = ticks_of(&back);
    assert!((6..=9).contains(&n), "ticks after restore: {n}");
    let Some(Expiration::IntervalDelayed(left, period)) = back.get().unwrap() else {
        panic!("not periodic")
    };
    assert_eq!(period, p);
    assert!(left <= p, "{left:?}");
    let fl = nix::fcntl::fcntl(&back, nix::fcntl::FcntlArg::F_GETFL).unwrap();
    assert_ne!(fl & libc::O_NONBLOCK, 0);
}

#[test]
fn abstime_realtime_with_cancel_on_set_keeps_its_deadline() {
    let t = TimerFd::new(ClockId::CLOCK_REALTIME, TimerFlags::empty()).unwrap();
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_REALTIME).unwrap();
    let deadline = now + TimeSpec::from(Duration::from_secs(30));
    let flags = TimerSetTimeFlags::TFD_TIMER_ABSTIME | TimerSetTimeFlags::TFD_TIMER_CANCEL_ON_SET;
    t.set(Expiration::OneShot(deadline), flags).unwrap();
    let (_, back) = dump_restore(&t, Duration::from_millis(50));
    let d = own_fd_desc(back.as_fd()).unwrap();
    assert_eq!(d.fdinfo.octal::<u32>("settime flags").unwrap(), 3);
    let Some(Expiration::OneShot(left)) = back.get().unwrap() else {
        panic!("not armed")
    };
    let want = deadline - nix::time::clock_gettime(nix::time::ClockId::CLOCK_REALTIME).unwrap();
    let diff = (left - want).num_milliseconds().abs();
    assert!(diff < 5, "deadline moved by {diff} ms");
}

#[test]
fn one_shot_due_in_the_gap_is_one_tick() {
    let t = TimerFd::new(ClockId::CLOCK_BOOTTIME, TimerFlags::empty()).unwrap();
    t.set(
        Expiration::OneShot(TimeSpec::from(Duration::from_millis(30))),
        TimerSetTimeFlags::empty(),
    )
    .unwrap();
    let (_, back) = dump_restore(&t, Duration::from_millis(80));
    assert_eq!(ticks_of(&back), 1);
    assert_eq!(back.get().unwrap(), None);
}

#[test]
fn bad_entries_name_the_image_and_entry() {
    let mut ctx = MemoryImages::new(0);
    let mut r = PLUGIN.start_restore(&mut ctx, &[]).unwrap();
    let entry = |tfd: Option<TimerfdEntry>| FileEntry {
        r#type: FdTypes::Timerfd as i32,
        id: 7,
        tfd,
        ..Default::default()
    };
    let err = |r: &mut Box<dyn FileRestorer>, ctx: &mut MemoryImages, e| {
        r.open_file(ctx, &e).unwrap_err().to_string()
    };
    let m = err(&mut r, &mut ctx, entry(None));
    assert!(
        m.contains("files.img") && m.contains("TIMERFD entry 7 without tfd"),
        "{m}"
    );
    let bad_clock = TimerfdEntry {
        clockid: 99,
        ..Default::default()
    };
    let m = err(&mut r, &mut ctx, entry(Some(bad_clock)));
    assert!(
        m.contains("TIMERFD entry 7") && m.contains("clockid 99"),
        "{m}"
    );
    let bad_ns = TimerfdEntry {
        clockid: 1,
        vnsec: 2_000_000_000,
        ..Default::default()
    };
    assert!(err(&mut r, &mut ctx, entry(Some(bad_ns))).contains("it_value nanoseconds"));
    let half = TimerfdEntry {
        clockid: 1,
        criu_rs_clock_sec: Some(1),
        ..Default::default()
    };
    assert!(err(&mut r, &mut ctx, entry(Some(half))).contains("half of"));
}

proptest! {
    /// Our clock fields round-trip and leave CRIU's part of the entry as CRIU writes it.
    #[test]
    fn entry_round_trip(
        clockid in 0u32..10,
        ticks: u64,
        vsec: u64,
        isec: u64,
        clock in proptest::option::of((any::<u64>(), 0u64..1_000_000_000)),
    ) {
        use prost::Message;
        let e = TimerfdEntry {
            id: 3,
            flags: 2,
            clockid,
            ticks,
            vsec,
            isec,
            criu_rs_clock_sec: clock.map(|c| c.0),
            criu_rs_clock_nsec: clock.map(|c| c.1),
            ..Default::default()
        };
        let bytes = e.encode_to_vec();
        prop_assert_eq!(TimerfdEntry::decode(bytes.as_slice()).unwrap(), e);
        let criu = TimerfdEntry { criu_rs_clock_sec: None, criu_rs_clock_nsec: None, ..e };
        let plain = criu.encode_to_vec();
        prop_assert_eq!(&bytes[..plain.len()], plain.as_slice());
    }
}
