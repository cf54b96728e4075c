use std::os::fd::AsRawFd;

use criu_plugin_api::{FdInfo, FileOwner, FileStat};

use super::*;

/// The FdDesc criu would build for `file`, an fd of this process.
fn desc_of(file: OwnedFd) -> FdDesc {
    let n = file.as_raw_fd();
    let raw = std::fs::read_to_string(format!("/proc/self/fdinfo/{n}")).unwrap();
    let link = std::fs::read_link(format!("/proc/self/fd/{n}")).unwrap();
    let flags = raw
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .map(|v| u32::from_str_radix(v.trim(), 8).unwrap())
        .unwrap();
    FdDesc {
        pid: std::process::id() as i32,
        fd: n,
        link: link.to_string_lossy().into_owned(),
        fdinfo: FdInfo {
            flags,
            raw,
            ..FdInfo::default()
        },
        stat: FileStat::default(),
        owner: FileOwner::default(),
        file,
    }
}

/// SIGUSR1 (10), SIGTERM (15) and the real-time signal 40.
const MASK: u64 = (1 << 9) | (1 << 14) | (1 << 39);

#[test]
fn a_real_signalfd_dumps_its_mask_and_flags_and_comes_back_the_same() {
    let fd = desc_of(signalfd(MASK, true).unwrap());
    assert!(PLUGIN.claims(&fd), "{}", fd.link);
    let e = entry_of(&fd, 7).unwrap();
    assert_eq!(e.id, 7);
    assert_eq!(e.sigmask, MASK);
    assert_ne!(e.flags & libc::O_NONBLOCK as u32, 0);
    assert_eq!(
        e.flags & libc::O_CLOEXEC as u32,
        0,
        "cloexec is the fd's, not the file's"
    );

    // What restore opens from that entry has the same fdinfo mask and flags.
    let entry = FileEntry {
        r#type: FdTypes::Signalfd as i32,
        id: 7,
        sgfd: Some(e),
        ..Default::default()
    };
    assert!(PLUGIN.restores(&entry));
    let mut ctx = criu_plugin_api::testing::MemoryImages::new(0);
    let mut r = PLUGIN.start_restore(&mut ctx, &[]).unwrap();
    let again = desc_of(r.open_file(&mut ctx, &entry).unwrap());
    assert_eq!(entry_of(&again, 7).unwrap(), e);

    let blocking = desc_of(signalfd(1 << 1, false).unwrap());
    assert_eq!(
        entry_of(&blocking, 1).unwrap().flags & libc::O_NONBLOCK as u32,
        0
    );
}

#[test]
fn other_fds_are_not_claimed_and_a_missing_mask_is_named() {
    let mut fd = desc_of(std::fs::File::open("/dev/null").unwrap().into());
    assert!(!PLUGIN.claims(&fd));
    fd.link = LINK.into();
    let err = entry_of(&fd, 1).unwrap_err().to_string();
    assert!(err.contains("sigmask") && err.contains(LINK), "{err}");
}

#[test]
fn an_entry_without_sgfd_is_a_bad_image() {
    let entry = FileEntry {
        r#type: FdTypes::Signalfd as i32,
        id: 3,
        ..Default::default()
    };
    let mut ctx = criu_plugin_api::testing::MemoryImages::new(0);
    let mut r = PLUGIN.start_restore(&mut ctx, &[]).unwrap();
    let err = r.open_file(&mut ctx, &entry).unwrap_err().to_string();
    assert!(
        err.contains("files.img") && err.contains("entry 3"),
        "{err}"
    );
}

proptest::proptest! {
    /// Any mask (SIGKILL and SIGSTOP aside, which the kernel drops) and either flag: the
    /// dumped entry of a real signalfd, restored, dumps to the same entry.
    #[test]
    fn any_mask_round_trips_through_a_real_signalfd(mask in proptest::prelude::any::<u64>(), nonblock: bool) {
        let unblockable = (1u64 << (libc::SIGKILL - 1)) | (1u64 << (libc::SIGSTOP - 1));
        let mask = mask & !unblockable;
        let e = entry_of(&desc_of(signalfd(mask, nonblock).unwrap()), 1).unwrap();
        proptest::prop_assert_eq!(e.sigmask, mask);
        let entry = FileEntry {
            r#type: FdTypes::Signalfd as i32,
            id: 1,
            sgfd: Some(e),
            ..Default::default()
        };
        let mut ctx = criu_plugin_api::testing::MemoryImages::new(0);
        let mut r = PLUGIN.start_restore(&mut ctx, &[]).unwrap();
        let again = entry_of(&desc_of(r.open_file(&mut ctx, &entry).unwrap()), 1).unwrap();
        proptest::prop_assert_eq!(again, e);
    }
}
