//! The small /proc parsers of `criu_core::proc::misc` plus the binary ones: the first input
//! byte picks the parser (so seeds carry that byte), the rest is its input.
//!
//! 0 cgroup, 1 timers, 2 namespace link (`net:[4026531840]`), 3 auxv (bytes),
//! 4 pagemap entries (bytes), 5 an fd link (`/proc/PID/fd/N` text) through the plugin
//! API's `FdDesc` link helpers, 6 `/proc/sysvipc/shm` through
//! `criu_core::restore::sysv::parse_segments`, 7 `/proc/PID/task/TID/syscall` through
//! `misc::parse_syscall`.
#![no_main]

use std::cell::RefCell;

use criu_core::proc::{misc, pagemap};
use criu_plugin_api::{FdDesc, FdInfo, FileOwner, FileStat};
use libfuzzer_sys::fuzz_target;

thread_local! {
    // FdDesc owns an fd: open one once and only swap the link text per input.
    static DESC: RefCell<Option<FdDesc>> = RefCell::new(
        std::fs::File::open("/dev/null").ok().map(|f| FdDesc {
            pid: 1,
            fd: 3,
            link: String::new(),
            fdinfo: FdInfo::default(),
            stat: FileStat::default(),
            owner: FileOwner::default(),
            file: f.into(),
        }),
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    match which % 8 {
        0 => {
            let _ = misc::parse_cgroup(&text);
        }
        1 => {
            let _ = misc::parse_timers(&text);
        }
        2 => {
            let _ = misc::parse_ns_link(&text);
        }
        3 => {
            let v = misc::parse_auxv(rest);
            assert!(v.len() <= rest.len() / 8, "auxv longer than its input");
        }
        4 => {
            let mut out = Vec::new();
            pagemap::parse_entries(rest, &mut out);
            assert_eq!(out.len(), rest.len() / 8, "one entry per 8 bytes");
            for e in &out {
                let _ = (e.present(), e.swapped(), e.file_or_shared(), e.exclusive());
                assert!(e.pfn() <= pagemap::PageEntry::PFN_MASK);
            }
        }
        7 => {
            if let Ok(misc::TaskSyscall::In { nr, .. }) = misc::parse_syscall(&text) {
                assert!(nr >= 0, "a negative number means no syscall");
            }
        }
        6 => {
            let segs = criu_core::restore::sysv::parse_segments(&text);
            assert!(segs.len() <= text.lines().count(), "one segment per line at most");
        }
        _ => DESC.with(|d| {
            let mut d = d.borrow_mut();
            let Some(desc) = d.as_mut() else { return };
            desc.link = text.into_owned();
            for prefix in ["pipe", "socket", "anon_inode", ""] {
                let _ = desc.anon_inode_of(prefix);
            }
            let (path, deleted) = desc.path_and_deleted();
            assert!(path.len() <= desc.link.len());
            assert_eq!(deleted, desc.link.ends_with(" (deleted)"));
            let _ = desc.describe();
        }),
    }
});
