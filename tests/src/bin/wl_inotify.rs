//! Inotify workload: watches a directory and files in it, then reports every event it reads
//! with the name it gave the watch, and checks itself every 20 ms:
//! - its fdinfo's `inotify` lines (wd, inode, device, mask, handle) are those it had at start;
//! - adding a watch again on the directory and on `watched` (`IN_MASK_ADD`, same mask)
//!   returns the wd it got at start (the kernel answers with the existing watch);
//! - the fd is still non-blocking and close-on-exec.
//!
//! Watches, in this order: DIR (create, delete, modify: `dir`), DIR/watched (modify,
//! close-write: `file`), a watch added and removed (so that wds have a gap), DIR/oneshot
//! (attrib, `IN_ONESHOT`: `oneshot`), DIR/gone (modify: `gone`, a file the test unlinks
//! while holding it open), DIR/held (modify: `held`, a file the workload holds open and the
//! test unlinks: restored as a ghost file, the watch on it). When DIR/poke appears the
//! workload removes it and writes to `held`. The fdinfo line of `held` keeps its wd and
//! mask only (its inode is the restored ghost).
//!
//! Report lines: `ready <pid> dir=<wd> file=<wd> oneshot=<wd> gone=<wd> held=<wd>`, then
//! `event <name> <mask hex> <file name>` per event and `tick <n> <ok|bad:...>`.
//! Usage: wl_inotify REPORT_FILE DIR

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::FileExt;

use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
use nix::sys::inotify::{AddWatchFlags as F, InitFlags, Inotify, WatchDescriptor};

/// The `inotify` lines of fd `fd`; the line of wd `held` cut to its wd and mask.
fn fdinfo_lines(fd: i32, held: i32) -> Vec<String> {
    let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap_or_default();
    let held = format!("inotify wd:{held:x} ");
    let mut v: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("inotify "))
        .map(|l| {
            if l.starts_with(&held) {
                let mask = l.split(' ').find(|t| t.starts_with("mask:")).unwrap_or("");
                format!("{held}{mask}")
            } else {
                l.to_string()
            }
        })
        .collect();
    v.sort();
    v
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (report, dir) = match (args.next(), args.next()) {
        (Some(r), Some(d)) => (r, d),
        _ => panic!("usage: wl_inotify REPORT_FILE DIR"),
    };
    let _ = nix::unistd::setsid();
    let ino = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).expect("inotify");
    let p = |name: &str| format!("{dir}/{name}");
    let dir_mask = F::IN_CREATE | F::IN_DELETE | F::IN_MODIFY;
    let file_mask = F::IN_MODIFY | F::IN_CLOSE_WRITE;
    let wd_dir = ino.add_watch(dir.as_str(), dir_mask).expect("watch dir");
    let wd_file = ino
        .add_watch(p("watched").as_str(), file_mask)
        .expect("watch file");
    let gap = ino
        .add_watch(p("oneshot").as_str(), F::IN_OPEN)
        .expect("gap");
    ino.rm_watch(gap).expect("rm gap");
    let wd_one = ino
        .add_watch(p("oneshot").as_str(), F::IN_ATTRIB | F::IN_ONESHOT)
        .expect("watch oneshot");
    let wd_gone = ino
        .add_watch(p("gone").as_str(), F::IN_MODIFY)
        .expect("watch gone");
    let held = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(p("held"))
        .expect("held");
    let wd_held = ino
        .add_watch(p("held").as_str(), F::IN_MODIFY)
        .expect("watch held");
    let names: Vec<(WatchDescriptor, &str)> = vec![
        (wd_dir, "dir"),
        (wd_file, "file"),
        (wd_one, "oneshot"),
        (wd_gone, "gone"),
        (wd_held, "held"),
        (gap, "gap"),
    ];
    let fd = ino.as_fd().as_raw_fd();
    let at_start = fdinfo_lines(fd, wd_held.as_raw());
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&report)
        .expect("report file");
    writeln!(
        out,
        "ready {} dir={} file={} oneshot={} gone={} held={}",
        std::process::id(),
        wd_dir.as_raw(),
        wd_file.as_raw(),
        wd_one.as_raw(),
        wd_gone.as_raw(),
        wd_held.as_raw()
    )
    .expect("report");
    let mut oneshot_fired = false;
    for n in 0u64.. {
        let mut bad = Vec::new();
        if std::fs::remove_file(p("poke")).is_ok()
            && let Err(e) = held.write_all_at(b"poked", 0)
        {
            bad.push(format!("write held: {e}"));
        }
        // A oneshot watch that fired is gone from fdinfo, as the kernel does it. fdinfo is
        // read before the events: the kernel queues the event before it drops the watch, so a
        // watch missing from this read has its event in the queue drained next.
        let fired_before = oneshot_fired;
        let now: Vec<String> = fdinfo_lines(fd, wd_held.as_raw());
        while let Ok(events) = ino.read_events() {
            if events.is_empty() {
                break;
            }
            for e in events {
                let name = names
                    .iter()
                    .find(|(w, _)| *w == e.wd)
                    .map_or("unknown", |(_, n)| n);
                if name == "oneshot" && e.mask.intersects(F::IN_ATTRIB | F::IN_IGNORED) {
                    oneshot_fired = true;
                }
                let file = e.name.map(|s| s.to_string_lossy().into_owned());
                writeln!(
                    out,
                    "event {name} {:x} {}",
                    e.mask.bits(),
                    file.as_deref().unwrap_or("-")
                )
                .expect("report");
            }
        }
        // Fired during this drain: the watch may or may not have been in the read above.
        let one = format!("inotify wd:{:x} ", wd_one.as_raw());
        let now: Vec<&String> = now
            .iter()
            .filter(|l| fired_before || !oneshot_fired || !l.starts_with(&one))
            .collect();
        let want: Vec<&String> = at_start
            .iter()
            .filter(|l| !(oneshot_fired && l.starts_with(&one)))
            .collect();
        if now != want {
            bad.push(format!("fdinfo {now:?} != {want:?}"));
        }
        for (path, mask, wd) in [
            (dir.clone(), dir_mask, wd_dir),
            (p("watched"), file_mask, wd_file),
        ] {
            match ino.add_watch(path.as_str(), mask | F::from_bits_retain(libc::IN_MASK_ADD)) {
                Ok(got) if got == wd => {}
                Ok(got) => bad.push(format!("{path} wd {} != {}", got.as_raw(), wd.as_raw())),
                Err(e) => bad.push(format!("{path}: {e}")),
            }
        }
        let fl = OFlag::from_bits_retain(fcntl(ino.as_fd(), FcntlArg::F_GETFL).unwrap_or(0));
        let fdfl = FdFlag::from_bits_retain(fcntl(ino.as_fd(), FcntlArg::F_GETFD).unwrap_or(0));
        if !fl.contains(OFlag::O_NONBLOCK) || !fdfl.contains(FdFlag::FD_CLOEXEC) {
            bad.push(format!("flags {fl:?} {fdfl:?}"));
        }
        let verdict = if bad.is_empty() {
            "ok".to_string()
        } else {
            format!("bad:{}", bad.join("; "))
        };
        writeln!(out, "tick {n} {verdict}").expect("report");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
