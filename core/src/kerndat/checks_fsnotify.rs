//! Checks for the inotify and fanotify plugins: fdinfo with file handles (what a dump
//! reads), reopening a file from its handle (restore of a watch whose path was gone), and
//! choosing the next inotify wd (restore of the wds the program knows).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use nix::fcntl::{AT_FDCWD, OFlag, open};
use nix::sys::stat::Mode;

use super::{Check, KernelFeatures, Need};
use crate::sys::probe;

type Outcome = Result<Option<String>, String>;

pub(super) static CHECKS: &[Check] = &[
    Check {
        name: "inotify",
        criu_feature: false,
        what: "an inotify watch on / and its fdinfo line with the file handle",
        need: Need::Optional,
        hint: "needs CONFIG_INOTIFY_USER and CONFIG_EXPORTFS; inotify fds cannot be dumped \
               without it",
        probe: inotify,
    },
    Check {
        name: "inotify_setnextwd",
        criu_feature: false,
        what: "ioctl(INOTIFY_IOC_SETNEXTWD) then a watch getting that wd",
        need: Need::Optional,
        hint: "needs CONFIG_CHECKPOINT_RESTORE; without it a restore adds and removes watches \
               until the kernel hands out the dumped wd, and a watch on an unlinked file the \
               tree holds (added last) cannot get its wd back",
        probe: inotify_setnextwd,
    },
    Check {
        name: "fanotify",
        criu_feature: false,
        what: "fanotify_init(FAN_CLASS_NOTIF), an inode mark on / and its fdinfo lines",
        need: Need::Optional,
        hint: "needs CONFIG_FANOTIFY and CAP_SYS_ADMIN; fanotify fds cannot be dumped without it",
        probe: fanotify,
    },
    Check {
        name: "open_by_handle_at",
        criu_feature: false,
        what: "name_to_handle_at(/) then open_by_handle_at",
        need: Need::Optional,
        hint: "needs CONFIG_FHANDLE and CAP_DAC_READ_SEARCH; inotify and fanotify marks on \
               files without a path (unlinked) cannot be dumped or restored without it",
        probe: open_by_handle_at,
    },
];

/// The fdinfo lines of `fd` starting with `prefix`; an error when there are none.
fn fdinfo_lines(fd: BorrowedFd<'_>, prefix: &str) -> Result<Vec<String>, String> {
    let p = format!("/proc/self/fdinfo/{}", fd.as_raw_fd());
    let s = std::fs::read_to_string(&p).map_err(|e| format!("{p}: {e}"))?;
    let v: Vec<String> = s
        .lines()
        .filter(|l| l.starts_with(prefix))
        .map(String::from)
        .collect();
    if v.is_empty() {
        return Err(format!("no {prefix:?} line in {p}"));
    }
    Ok(v)
}

fn inotify(_: &mut KernelFeatures) -> Outcome {
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
    let ino = Inotify::init(InitFlags::IN_CLOEXEC).map_err(|e| format!("inotify_init1: {e}"))?;
    ino.add_watch("/", AddWatchFlags::IN_CREATE)
        .map_err(|e| format!("inotify_add_watch /: {e}"))?;
    let lines = fdinfo_lines(ino.as_fd(), "inotify wd:")?;
    if lines.iter().all(|l| l.contains("fhandle-bytes:")) {
        Ok(None)
    } else {
        Err(format!("no file handle in {lines:?} (CONFIG_EXPORTFS?)"))
    }
}

fn inotify_setnextwd(_: &mut KernelFeatures) -> Outcome {
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
    let ino = Inotify::init(InitFlags::IN_CLOEXEC).map_err(|e| format!("inotify_init1: {e}"))?;
    probe::inotify_set_next_wd(ino.as_fd(), 7).map_err(|e| e.to_string())?;
    let wd = ino
        .add_watch("/", AddWatchFlags::IN_CREATE)
        .map_err(|e| format!("inotify_add_watch /: {e}"))?;
    match wd.as_raw() {
        7 => Ok(None),
        n => Err(format!("asked for wd 7, got {n}")),
    }
}

fn fanotify(_: &mut KernelFeatures) -> Outcome {
    use nix::sys::fanotify::{EventFFlags, Fanotify, InitFlags, MarkFlags, MaskFlags};
    let group = Fanotify::init(
        InitFlags::FAN_CLASS_NOTIF | InitFlags::FAN_CLOEXEC,
        EventFFlags::O_RDONLY,
    )
    .map_err(|e| format!("fanotify_init: {e}"))?;
    group
        .mark(
            MarkFlags::FAN_MARK_ADD,
            MaskFlags::FAN_MODIFY,
            AT_FDCWD,
            Some("/"),
        )
        .map_err(|e| format!("fanotify_mark /: {e}"))?;
    fdinfo_lines(group.as_fd(), "fanotify flags:")?;
    let marks = fdinfo_lines(group.as_fd(), "fanotify ino:")?;
    if marks.iter().all(|l| l.contains("fhandle-bytes:")) {
        Ok(None)
    } else {
        Err(format!("no file handle in {marks:?} (CONFIG_EXPORTFS?)"))
    }
}

fn open_by_handle_at(_: &mut KernelFeatures) -> Outcome {
    let root = open(
        "/",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("open /: {e}"))?;
    probe::reopen_by_handle(c"/", root.as_fd()).map_err(|e| e.to_string())?;
    Ok(None)
}
