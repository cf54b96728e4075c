use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use criu_plugin_api::testing::{MemoryImages, own_fd_desc};
use criu_plugin_api::{FdHandler, PluginError};
use criu_proto::images::{
    FanotifyFileEntry, FanotifyMarkEntry, FdTypes, FhEntry, FileEntry, InotifyFileEntry,
    InotifyWdEntry, MarkType,
};
use nix::sys::inotify::{AddWatchFlags as F, InitFlags, Inotify};
use proptest::prelude::*;

use super::*;
use crate::fdinfo::{MarkTarget, parse_fanotify, parse_inotify};
use crate::handle::{from_fh_entry, kdev_name, parse_mountinfo, to_fh_entry};
use crate::sys::FileHandle;

const INOTIFY_FDINFO: &str = "pos:\t0\nflags:\t02004000\nmnt_id:\t17\nino:\t1039\n\
inotify wd:2 ino:99045c sdev:fe00000 mask:4000fff ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:5c04990056e18715\n\
inotify wd:1 ino:99045b sdev:fe00000 mask:80000002 ignored_mask:0 \n";

#[test]
fn inotify_lines_parse_with_and_without_handle() {
    let w = parse_inotify(INOTIFY_FDINFO).unwrap();
    assert_eq!(w.len(), 2);
    assert_eq!(
        (w[0].wd, w[0].ino, w[0].sdev, w[0].mask),
        (2, 0x99045c, 0xfe00000, 0x4000fff)
    );
    let h = w[0].handle.as_ref().unwrap();
    assert_eq!(h.handle_type, 1);
    assert_eq!(h.bytes, [0x5c, 0x04, 0x99, 0x00, 0x56, 0xe1, 0x87, 0x15]);
    // procfs and friends encode no handle: the line stops after ignored_mask.
    assert_eq!(
        (w[1].wd, w[1].mask, w[1].handle.clone()),
        (1, 0x8000_0002, None)
    );
    assert_eq!(kdev_name(w[0].sdev), "254:0");
    for bad in [
        "inotify wd:zz ino:1 sdev:0 mask:0 ignored_mask:0\n",
        "inotify wd:1 sdev:0 mask:0 ignored_mask:0\n",
        "inotify wd:1 ino:1 sdev:0 mask:0 ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:00\n",
        "inotify wd:1 ino:1 sdev:0 mask:0 ignored_mask:0 fhandle-bytes:1 fhandle-type:1 f_handle:zz\n",
        "inotify wd:1 ino:1 sdev:0 mask:100000000 ignored_mask:0\n",
    ] {
        assert!(parse_inotify(bad).is_err(), "{bad}");
    }
}

#[test]
fn fanotify_lines_parse_every_mark_kind_and_refuse_unknown_ones() {
    let t = "pos:\t0\nfanotify flags:1 event-flags:8000\n\
fanotify ino:99045b sdev:fe00000 mflags:40 mask:0 ignored_mask:1 fhandle-bytes:8 fhandle-type:1 f_handle:5b0499002bc38757\n\
fanotify sdev:fe00000 mflags:0 mask:2 ignored_mask:0\n\
fanotify mnt_id:1b mflags:0 mask:2 ignored_mask:0\n";
    let i = parse_fanotify(t).unwrap();
    assert_eq!((i.flags, i.event_flags, i.marks.len()), (1, 0x8000, 3));
    assert!(matches!(
        i.marks[0].target,
        MarkTarget::Inode {
            ino: 0x99045b,
            handle: Some(_)
        }
    ));
    assert_eq!(
        (i.marks[0].mflags, i.marks[0].mask, i.marks[0].ignored_mask),
        (0x40, 0, 1)
    );
    assert_eq!(i.marks[1].target, MarkTarget::Filesystem);
    assert_eq!(i.marks[1].sdev, 0xfe00000);
    assert_eq!(i.marks[2].target, MarkTarget::Mount { mnt_id: 0x1b });
    let e = parse_fanotify("fanotify flags:0 event-flags:0\nfanotify mnt_ns:4026531841 mflags:0 mask:1 ignored_mask:0\n").unwrap_err();
    assert!(e.contains("unknown kind") && e.contains("mnt_ns"), "{e}");
    assert!(parse_fanotify("pos: 0\n").unwrap_err().contains("flags"));
}

#[test]
fn mountinfo_parses_ids_devices_and_escaped_mount_points() {
    let m = parse_mountinfo(
        "27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n\
         40 27 0:55 / /tmp/a\\040b rw - tmpfs t rw\nbroken\n",
    );
    assert_eq!(m.len(), 2);
    assert_eq!((m[0].mnt_id, m[0].sdev), (27, 0xfe00000));
    assert_eq!(m[1].mountpoint, std::path::Path::new("/tmp/a b"));
    assert_eq!(m[1].sdev, 55);
}

proptest! {
    /// Any handle survives CRIU's 16-word `fh_entry` form, path kept.
    #[test]
    fn handles_round_trip_through_fh_entry(
        bytes in proptest::collection::vec(any::<u8>(), 1..=128),
        handle_type in any::<i32>(),
        path in proptest::option::of("/[a-z]{1,8}"),
    ) {
        let h = FileHandle { handle_type, bytes };
        let fh = to_fh_entry(Some(&h), path.clone());
        prop_assert_eq!(fh.handle.len(), 16);
        prop_assert_eq!(fh.path.clone(), path);
        prop_assert_eq!(from_fh_entry(&fh).unwrap(), Some(h));
    }
}

#[test]
fn a_handle_longer_than_its_words_is_an_error() {
    let fh = FhEntry {
        bytes: 9,
        r#type: 1,
        handle: vec![1],
        path: None,
        mnt_id: None,
    };
    assert!(
        from_fh_entry(&fh)
            .unwrap_err()
            .contains("9 bytes in 1 words")
    );
    assert_eq!(from_fh_entry(&FhEntry { bytes: 0, ..fh }).unwrap(), None);
}

fn fdinfo_of(fd: BorrowedFd<'_>, prefix: &str) -> Vec<String> {
    let t = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).unwrap();
    let mut v: Vec<String> = t
        .lines()
        .filter(|l| l.starts_with(prefix))
        .map(String::from)
        .collect();
    v.sort();
    v
}

fn can_open_handles() -> bool {
    let ok = crate::sys::name_to_handle(c"/", 0)
        .and_then(|(h, _)| {
            let root = nix::fcntl::open(
                "/",
                nix::fcntl::OFlag::O_RDONLY,
                nix::sys::stat::Mode::empty(),
            )?;
            crate::sys::open_by_handle(root.as_fd(), &h, libc::O_PATH)
        })
        .is_ok();
    if !ok {
        eprintln!("skipped: open_by_handle_at does not work here (needs CAP_DAC_READ_SEARCH)");
    }
    ok
}

fn scratch(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("criu-fsnotify-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Dump an inotify of our own, restore it: same wds, inodes and masks, by fdinfo.
#[test]
fn inotify_round_trip_in_process() {
    if !can_open_handles() {
        return;
    }
    let d = scratch("ify");
    std::fs::write(d.join("f"), b"x").unwrap();
    std::fs::write(d.join("g"), b"x").unwrap();
    let ino = Inotify::init(InitFlags::IN_NONBLOCK).unwrap();
    ino.add_watch(&d, F::IN_CREATE).unwrap();
    let gap = ino.add_watch(&d.join("g"), F::IN_OPEN).unwrap();
    ino.rm_watch(gap).unwrap();
    ino.add_watch(
        &d.join("f"),
        F::IN_MODIFY | F::IN_ONESHOT | F::from_bits_retain(libc::IN_EXCL_UNLINK),
    )
    .unwrap();
    ino.add_watch(&d.join("g"), F::IN_ATTRIB).unwrap();
    // A watch on a symlink itself (zdtm's inotify_system): restored on the link, not on f.
    std::os::unix::fs::symlink("f", d.join("l")).unwrap();
    ino.add_watch(&d.join("l"), F::IN_ATTRIB | F::IN_DONT_FOLLOW)
        .unwrap();
    let desc = own_fd_desc(ino.as_fd()).unwrap();
    assert!(INOTIFY_HANDLER.claims(&desc));
    let mut ctx = MemoryImages::new(0);
    let e = INOTIFY_HANDLER.dump_file(&mut ctx, &desc, 7).unwrap();
    let ify = e.ify.as_ref().unwrap();
    assert_eq!(ify.flags & libc::O_NONBLOCK as u32, libc::O_NONBLOCK as u32);
    let mut r = INOTIFY_HANDLER
        .start_restore(&mut ctx, std::slice::from_ref(&e))
        .unwrap();
    let back = r.open_file(&mut ctx, &e).unwrap();
    assert_eq!(
        fdinfo_of(back.as_fd(), "inotify"),
        fdinfo_of(ino.as_fd(), "inotify")
    );
    let fl = nix::fcntl::fcntl(&back, nix::fcntl::FcntlArg::F_GETFL).unwrap();
    assert_ne!(fl & libc::O_NONBLOCK, 0);
    let _ = std::fs::remove_dir_all(&d);
}

/// Dump a fanotify group of our own with an inode mark and an ignored mask, restore it.
#[test]
fn fanotify_round_trip_in_process() {
    use nix::sys::fanotify::{
        EventFFlags, Fanotify, InitFlags as I, MarkFlags as M, MaskFlags as K,
    };
    if !can_open_handles() {
        return;
    }
    let Ok(group) = Fanotify::init(I::FAN_CLASS_NOTIF, EventFFlags::O_RDONLY) else {
        eprintln!("skipped: fanotify_init needs CAP_SYS_ADMIN");
        return;
    };
    let d = scratch("ffy");
    let f = d.join("f");
    std::fs::write(&f, b"x").unwrap();
    let at = nix::fcntl::AT_FDCWD;
    group
        .mark(
            M::FAN_MARK_ADD,
            K::FAN_MODIFY | K::FAN_CLOSE_WRITE,
            at,
            Some(&f),
        )
        .unwrap();
    group
        .mark(
            M::FAN_MARK_ADD | M::FAN_MARK_IGNORED_MASK | M::FAN_MARK_IGNORED_SURV_MODIFY,
            K::FAN_OPEN,
            at,
            Some(&d),
        )
        .unwrap();
    // Non-blocking by F_SETFL, not by FAN_NONBLOCK: both come back as they were.
    let fl = nix::fcntl::fcntl(&group, nix::fcntl::FcntlArg::F_GETFL).unwrap();
    let fl = nix::fcntl::OFlag::from_bits_retain(fl | libc::O_NONBLOCK);
    nix::fcntl::fcntl(&group, nix::fcntl::FcntlArg::F_SETFL(fl)).unwrap();
    let desc = own_fd_desc(group.as_fd()).unwrap();
    assert!(FANOTIFY_HANDLER.claims(&desc) && !INOTIFY_HANDLER.claims(&desc));
    let mut ctx = MemoryImages::new(0);
    let e = FANOTIFY_HANDLER.dump_file(&mut ctx, &desc, 3).unwrap();
    assert_eq!(e.ffy.as_ref().unwrap().mark.len(), 2);
    let mut r = FANOTIFY_HANDLER
        .start_restore(&mut ctx, std::slice::from_ref(&e))
        .unwrap();
    let back = r.open_file(&mut ctx, &e).unwrap();
    assert_eq!(
        fdinfo_of(back.as_fd(), "fanotify"),
        fdinfo_of(group.as_fd(), "fanotify")
    );
    let fl = nix::fcntl::fcntl(&back, nix::fcntl::FcntlArg::F_GETFL).unwrap();
    assert_ne!(fl & libc::O_NONBLOCK, 0);
    let _ = std::fs::remove_dir_all(&d);
}

mod restore;
