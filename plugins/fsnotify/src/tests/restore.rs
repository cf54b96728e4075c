//! Restore-side cases: bad images, CRIU's ghost files, the wd without INOTIFY_IOC_SETNEXTWD,
//! refusals at dump.

use super::*;

fn restore_err(e: &FileEntry) -> String {
    let mut ctx = MemoryImages::new(0);
    let h: &dyn FdHandler = if e.ify.is_some() {
        &INOTIFY_HANDLER
    } else {
        &FANOTIFY_HANDLER
    };
    let mut r = h.start_restore(&mut ctx, std::slice::from_ref(e)).unwrap();
    match r.open_file(&mut ctx, e) {
        Err(err @ PluginError::BadImage { .. }) => err.to_string(),
        other => panic!("expected a bad image error, got {other:?}"),
    }
}

#[test]
fn entries_without_handle_or_path_are_bad_images_naming_the_entry() {
    let wd = InotifyWdEntry {
        id: 4,
        wd: 3,
        f_handle: to_fh_entry(None, None),
        ..Default::default()
    };
    let e = FileEntry {
        r#type: FdTypes::Inotify as i32,
        id: 4,
        ify: Some(InotifyFileEntry {
            id: 4,
            wd: vec![wd.clone()],
            ..Default::default()
        }),
        ..Default::default()
    };
    let msg = restore_err(&e);
    assert!(
        msg.contains("files.img")
            && msg.contains("INOTIFY entry 4, watch wd 3")
            && msg.contains("neither"),
        "{msg}"
    );
    let mut e0 = e.clone();
    e0.ify.as_mut().unwrap().wd[0].wd = 0;
    assert!(restore_err(&e0).contains("out of range"));

    let mark = FanotifyMarkEntry {
        id: 5,
        r#type: MarkType::Inode as i32,
        ..Default::default()
    };
    let mut f = FileEntry {
        r#type: FdTypes::Fanotify as i32,
        id: 5,
        ffy: Some(FanotifyFileEntry {
            id: 5,
            mark: vec![mark],
            ..Default::default()
        }),
        ..Default::default()
    };
    let msg = restore_err(&f);
    assert!(
        msg.contains("FANOTIFY entry 5, mark 0: inode mark without"),
        "{msg}"
    );
    let m = &mut f.ffy.as_mut().unwrap().mark[0];
    m.r#type = MarkType::Mount as i32;
    m.me = Some(Default::default());
    assert!(restore_err(&f).contains("mount mark without a path"));
    let none = FileEntry {
        r#type: FdTypes::Inotify as i32,
        id: 9,
        ..Default::default()
    };
    let mut ctx = MemoryImages::new(0);
    let mut r = INOTIFY_HANDLER.start_restore(&mut ctx, &[]).unwrap();
    assert!(
        r.open_file(&mut ctx, &none)
            .unwrap_err()
            .to_string()
            .contains("without ify")
    );
}

/// CRIU's ghost files give the file a pathless watch is on: device in the kernel's encoding
/// (CRIU) or as `st_dev` (criu-rs's files plugin), GHOST remaps only.
#[test]
fn ghosts_are_found_by_device_and_inode_in_either_encoding() {
    use criu_plugin_api::{ImageRef, write_message};
    use criu_proto::images::{GhostFileEntry, RemapFilePathEntry, RemapType};
    let mut ctx = MemoryImages::new(0);
    assert!(
        deferred::Ghosts::read(&mut ctx)
            .unwrap()
            .find(1, 1)
            .is_none()
    );
    let remaps = [
        (10, 1, RemapType::Ghost, 0xfe00000, 77),
        (11, 2, RemapType::Ghost, 0xfe00, 78),
        (12, 3, RemapType::Linked, 0xfe00000, 79),
    ];
    for (orig_id, remap_id, kind, dev, ino) in remaps {
        let r = RemapFilePathEntry {
            orig_id,
            remap_id,
            remap_type: Some(kind as i32),
        };
        write_message(&mut ctx, ImageRef::REMAP_FPATH, &r, &[]).unwrap();
        let g = GhostFileEntry {
            dev: Some(dev),
            ino: Some(ino),
            ..Default::default()
        };
        write_message(&mut ctx, ImageRef::ghost_file(remap_id), &g, b"data").unwrap();
    }
    let ghosts = deferred::Ghosts::read(&mut ctx).unwrap();
    assert_eq!(ghosts.find(0xfe00000, 77), Some(10));
    assert_eq!(
        ghosts.find(0xfe00000, 78),
        Some(11),
        "st_dev 254:0 is 0xfe00"
    );
    assert_eq!(ghosts.find(0xfe00000, 79), None, "a link remap is no ghost");
    assert_eq!(ghosts.find(0xfe00001, 77), None);
}

/// A watch on a file that cannot be found again (procfs: no decodable handle) is refused at
/// dump, naming the watch, its inode and the fd.
#[test]
fn a_watch_that_cannot_be_found_again_is_refused_naming_it() {
    let ino = Inotify::init(InitFlags::IN_CLOEXEC).unwrap();
    ino.add_watch("/proc/self/status", F::IN_MODIFY).unwrap();
    let desc = own_fd_desc(ino.as_fd()).unwrap();
    let mut ctx = MemoryImages::new(0);
    match INOTIFY_HANDLER.dump_file(&mut ctx, &desc, 1) {
        Err(e @ PluginError::Unsupported { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("inotify watch wd 1 (inode") && msg.contains(&desc.describe()),
                "{msg}"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Without INOTIFY_IOC_SETNEXTWD watches are added and removed until the kernel hands out
/// the dumped wd; the IN_IGNORED events of the removed ones are emptied with the queue.
#[test]
fn without_setnextwd_the_wd_is_reached_and_the_queue_emptied() {
    let ino = Inotify::init(InitFlags::IN_CLOEXEC).unwrap();
    let target = nix::fcntl::open(
        "/",
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .unwrap();
    let w = InotifyWdEntry {
        wd: 5,
        mask: libc::IN_CREATE,
        ..Default::default()
    };
    inotify::add_watch_as(&ino, &target, &w, false).unwrap();
    let lines = fdinfo_of(ino.as_fd(), "inotify");
    assert!(
        lines.len() == 1 && lines[0].starts_with("inotify wd:5 "),
        "{lines:?}"
    );
    assert!(
        sys::queued_bytes(ino.as_fd()).unwrap() > 0,
        "IN_IGNORED of wds 1-4"
    );
    deferred::drain(1, ino.as_fd()).unwrap();
    assert_eq!(sys::queued_bytes(ino.as_fd()).unwrap(), 0);
    // A lower wd cannot be had any more: an error, not a wrong wd.
    let w1 = InotifyWdEntry { wd: 1, ..w };
    let other = nix::fcntl::open(
        "/proc",
        nix::fcntl::OFlag::O_PATH,
        nix::sys::stat::Mode::empty(),
    )
    .unwrap();
    assert!(inotify::add_watch_as(&ino, &other, &w1, false).is_err());
}
