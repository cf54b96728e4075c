//! Fanotify workload (FAN_CLASS_NOTIF): marks in directory DIR, the root of a filesystem of
//! its own (the test mounts a tmpfs there, so that mount and filesystem marks see only the
//! test's files):
//! - an inode mark, `FAN_MODIFY`, on DIR/file;
//! - a mount mark, `FAN_CLOSE_WRITE`, on DIR's mount;
//! - an ignored mask `FAN_CLOSE_WRITE` (surviving modify) on DIR/file;
//! - a filesystem mark, `FAN_OPEN`, on DIR's filesystem;
//! - an inode mark, `FAN_MODIFY`, on DIR/held, a file it holds open and the test unlinks
//!   (restored as a ghost file, the mark on it): when DIR/poke appears the workload removes
//!   it and writes to `held`. Its fdinfo line keeps its mask only (the inode is the ghost).
//!
//! It reports every event bit by bit with the file's name, and checks itself every 20 ms:
//! its fdinfo's `fanotify` lines (flags, every mark) are those it had at start; the fd is
//! non-blocking and close-on-exec.
//!
//! Report lines: `ready <pid>`, then `event <modify|close_write|open|other:HEX> <name>` and
//! `tick <n> <ok|bad:...>`.
//! Usage: wl_fanotify REPORT_FILE DIR

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd};

use nix::fcntl::{AT_FDCWD, FcntlArg, FdFlag, OFlag, fcntl};
use nix::sys::fanotify::{EventFFlags, Fanotify, InitFlags, MarkFlags as M, MaskFlags as K};

/// The `fanotify` lines of `fd`; the mark of inode `held` cut to its flags and masks.
fn fdinfo_lines(fd: i32, held: u64) -> Vec<String> {
    let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap_or_default();
    let held = format!("fanotify ino:{held:x} ");
    let mut v: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("fanotify "))
        .map(|l| {
            if l.starts_with(&held) {
                let keep: Vec<&str> = l
                    .split(' ')
                    .filter(|t| t.starts_with("mflags:") || t.contains("mask:"))
                    .collect();
                format!("fanotify held {}", keep.join(" "))
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
        _ => panic!("usage: wl_fanotify REPORT_FILE DIR"),
    };
    let _ = nix::unistd::setsid();
    let group = Fanotify::init(
        InitFlags::FAN_CLASS_NOTIF | InitFlags::FAN_CLOEXEC | InitFlags::FAN_NONBLOCK,
        EventFFlags::O_RDONLY | EventFFlags::O_LARGEFILE,
    )
    .expect("fanotify_init");
    let file = format!("{dir}/file");
    let mark = |flags: M, mask: K, path: &str| {
        group
            .mark(M::FAN_MARK_ADD | flags, mask, AT_FDCWD, Some(path))
            .unwrap_or_else(|e| panic!("fanotify_mark {flags:?} {mask:?} {path}: {e}"))
    };
    mark(M::empty(), K::FAN_MODIFY, &file);
    mark(M::FAN_MARK_MOUNT, K::FAN_CLOSE_WRITE, &dir);
    mark(
        M::FAN_MARK_IGNORED_MASK | M::FAN_MARK_IGNORED_SURV_MODIFY,
        K::FAN_CLOSE_WRITE,
        &file,
    );
    mark(M::FAN_MARK_FILESYSTEM, K::FAN_OPEN, &dir);
    let held_path = format!("{dir}/held");
    let held = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&held_path)
        .expect("held");
    let held_ino = std::os::unix::fs::MetadataExt::ino(&held.metadata().expect("stat held"));
    mark(M::empty(), K::FAN_MODIFY, &held_path);
    let fd = group.as_fd().as_raw_fd();
    let at_start = fdinfo_lines(fd, held_ino);
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&report)
        .expect("report file");
    writeln!(out, "ready {}", std::process::id()).expect("report");
    let bits = [
        (K::FAN_MODIFY, "modify"),
        (K::FAN_CLOSE_WRITE, "close_write"),
        (K::FAN_OPEN, "open"),
    ];
    for n in 0u64.. {
        while let Ok(events) = group.read_events() {
            if events.is_empty() {
                break;
            }
            for e in events {
                // `held` by identity: unlinked, its path says nothing (a ghost's after restore).
                let is_held = e.fd().is_some_and(|f| {
                    let (a, b) = (nix::sys::stat::fstat(f), nix::sys::stat::fstat(&held));
                    matches!((a, b), (Ok(a), Ok(b)) if (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino))
                });
                let name = e
                    .fd()
                    .filter(|_| !is_held)
                    .and_then(|f| {
                        nix::fcntl::readlink(format!("/proc/self/fd/{}", f.as_raw_fd()).as_str())
                            .ok()
                    })
                    .map(|p| {
                        p.to_string_lossy()
                            .rsplit('/')
                            .next()
                            .unwrap_or("")
                            .to_string()
                    })
                    .unwrap_or_else(|| if is_held { "held" } else { "-" }.into());
                let mut rest = e.mask();
                for (bit, label) in bits {
                    if rest.contains(bit) {
                        writeln!(out, "event {label} {name}").expect("report");
                        rest.remove(bit);
                    }
                }
                if !rest.is_empty() {
                    writeln!(out, "event other:{:x} {name}", rest.bits()).expect("report");
                }
            }
        }
        let mut bad = Vec::new();
        if std::fs::remove_file(format!("{dir}/poke")).is_ok()
            && let Err(e) = std::os::unix::fs::FileExt::write_all_at(&held, b"poked", 0)
        {
            bad.push(format!("write held: {e}"));
        }
        // After a restore `held` is the restored ghost file: another inode.
        let held_now = held
            .metadata()
            .map_or(held_ino, |m| std::os::unix::fs::MetadataExt::ino(&m));
        let now = fdinfo_lines(fd, held_now);
        if now != at_start {
            bad.push(format!("fdinfo {now:?} != {at_start:?}"));
        }
        let fl = OFlag::from_bits_retain(fcntl(group.as_fd(), FcntlArg::F_GETFL).unwrap_or(0));
        let fdfl = FdFlag::from_bits_retain(fcntl(group.as_fd(), FcntlArg::F_GETFD).unwrap_or(0));
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
