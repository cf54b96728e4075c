//! Unlinked files: ghost images and their restore.

use super::*;

#[test]
fn unlinked_file_becomes_a_ghost_and_comes_back() {
    let plugin = FilesPlugin;
    let content: Vec<u8> = (0..5000u32).map(|i| (i % 253) as u8).collect();
    let (dir, mut f, path) = ghost_setup(&content);
    f.seek(SeekFrom::Start(100)).unwrap();
    let f2 = File::open(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&f)
    ))
    .unwrap();
    let mut images = MemoryImages::for_plugin(1, &crate::PLUGIN).unwrap();
    let e1 = dump(&plugin, &mut images, f.as_fd(), 3);
    let e2 = dump(&plugin, &mut images, f2.as_fd(), 4);
    assert_eq!(f.stream_position().unwrap(), 100);
    assert_eq!(e1.reg.as_ref().unwrap().name, path.to_str().unwrap());

    let remaps: Vec<RemapFilePathEntry> = messages(&images, ImageRef::REMAP_FPATH);
    assert_eq!(remaps.len(), 2);
    assert_eq!((remaps[0].orig_id, remaps[0].remap_id), (3, 1));
    assert_eq!(
        (remaps[1].orig_id, remaps[1].remap_id),
        (4, 1),
        "one ghost per inode"
    );
    assert_eq!(remaps[0].remap_type, Some(RemapType::Ghost as i32));
    let body = images.image(ImageRef::ghost_file(1)).unwrap();
    let mut c = ImageCursor::new(ImageRef::ghost_file(1), body);
    let g: GhostFileEntry = c.next_entry().unwrap().unwrap();
    assert_eq!((g.mode, g.chunks), (libc::S_IFREG | 0o640, None));
    assert_eq!(c.rest(), content.as_slice());
    assert!(images.image(ImageRef::ghost_file(2)).is_none());
    drop((f, f2));

    let entries = vec![e1.clone(), e2.clone()];
    let mut rs = plugin.start_restore(&mut images, &entries).unwrap();
    let mut n1 = File::from(rs.open_file(&mut images, &e1).unwrap());
    let n2 = File::from(rs.open_file(&mut images, &e2).unwrap());
    assert_eq!(n1.stream_position().unwrap(), 100);
    let mut all = Vec::new();
    n1.seek(SeekFrom::Start(0)).unwrap();
    n1.read_to_end(&mut all).unwrap();
    assert_eq!(all, content);
    let (m1, m2) = (n1.metadata().unwrap(), n2.metadata().unwrap());
    assert_eq!(
        (m1.dev(), m1.ino()),
        (m2.dev(), m2.ino()),
        "same ghost inode"
    );
    assert_eq!(m1.nlink(), 0);
    assert_eq!(m1.permissions().mode() & 0o7777, 0o640);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no leftovers"
    );
}

#[test]
fn sparse_ghost_is_chunked() {
    let plugin = FilesPlugin;
    let (_dir, f, _path) = ghost_setup(b"head");
    f.write_all_at(b"tail", 512 * 1024).unwrap();
    let mut images = MemoryImages::for_plugin(1, &crate::PLUGIN).unwrap();
    let e = dump(&plugin, &mut images, f.as_fd(), 1);
    drop(f);
    let body = images.image(ImageRef::ghost_file(1)).unwrap();
    let mut c = ImageCursor::new(ImageRef::ghost_file(1), body);
    let g: GhostFileEntry = c.next_entry().unwrap().unwrap();
    assert_eq!((g.chunks, g.size), (Some(true), Some(512 * 1024 + 4)));
    let mut stored = 0;
    while let Some(ch) = c.next_entry::<GhostChunkEntry>().unwrap() {
        c.raw(ch.len as usize).unwrap();
        stored += ch.len;
    }
    assert!(stored < 64 * 1024, "holes are not stored ({stored} bytes)");

    let mut n = restore_one(&plugin, &mut images, &e);
    let mut all = Vec::new();
    n.read_to_end(&mut all).unwrap();
    assert_eq!(all.len(), 512 * 1024 + 4);
    assert_eq!(&all[..4], b"head");
    assert_eq!(&all[512 * 1024..], b"tail");
    assert!(all[4..512 * 1024].iter().all(|&b| b == 0));
}

#[test]
fn ghost_over_the_limit_is_refused() {
    let plugin = FilesPlugin;
    let (_dir, f, _path) = ghost_setup(&[7u8; 300]);
    let desc = own_fd_desc(f.as_fd()).unwrap();
    let mut images = MemoryImages::for_plugin(1, &crate::PLUGIN).unwrap();
    images.dump_options.ghost_limit = 100;
    let err = plugin.dump_file(&mut images, &desc, 1).unwrap_err();
    assert!(
        matches!(
            err,
            // The limit counts what the file takes on disk (whole blocks), as CRIU does.
            PluginError::GhostTooBig {
                size: 300..,
                limit: 100,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("--ghost-limit"), "{err}");
}

#[test]
fn corrupt_ghost_image_is_an_error() {
    let plugin = FilesPlugin;
    let mut images = MemoryImages::for_plugin(1, &crate::PLUGIN).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let name = dir.path().join("x").to_str().unwrap().to_string();
    let entry = FileEntry {
        r#type: FdTypes::Reg as i32,
        id: 1,
        reg: Some(criu_proto::images::RegFileEntry {
            id: 1,
            name,
            ..Default::default()
        }),
        ..Default::default()
    };
    let remap = RemapFilePathEntry {
        orig_id: 1,
        remap_id: 9,
        remap_type: Some(RemapType::Ghost as i32),
    }
    .encode_to_vec();
    images.images.insert(
        "remap-fpath.img".into(),
        frame_entries([(remap.as_slice(), &[][..])]),
    );
    let mut rs = plugin
        .start_restore(&mut images, std::slice::from_ref(&entry))
        .unwrap();
    let err = rs.open_file(&mut images, &entry).unwrap_err();
    assert!(
        err.to_string().contains("missing ghost file image"),
        "{err}"
    );

    let g = GhostFileEntry {
        mode: libc::S_IFREG | 0o600,
        chunks: Some(true),
        size: Some(10),
        ..Default::default()
    }
    .encode_to_vec();
    let chunk = GhostChunkEntry { len: 50, off: 0 }.encode_to_vec();
    images.images.insert(
        "ghost-file-9.img".into(),
        frame_entries([
            (g.as_slice(), &[][..]),
            (chunk.as_slice(), b"short".as_slice()),
        ]),
    );
    let err = rs.open_file(&mut images, &entry).unwrap_err();
    assert!(matches!(err, PluginError::BadImage { .. }), "{err}");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no leftovers on failure"
    );
}

#[test]
fn replaced_file_is_a_ghost_and_hard_linked_one_is_refused() {
    let plugin = FilesPlugin;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a");
    std::fs::write(&path, b"old").unwrap();
    let f = File::open(&path).unwrap();
    // Renamed over: the open inode has no name left, it is carried as a ghost.
    let tmp = dir.path().join("b");
    std::fs::write(&tmp, b"new").unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    let mut images = MemoryImages::for_plugin(1, &crate::PLUGIN).unwrap();
    let e = dump(&plugin, &mut images, f.as_fd(), 1);
    assert_eq!(e.reg.unwrap().name, path.to_str().unwrap());
    assert_eq!(
        messages::<RemapFilePathEntry>(&images, ImageRef::REMAP_FPATH).len(),
        1
    );

    // Still linked elsewhere, but not under the name it was opened by.
    let c = dir.path().join("c");
    std::fs::write(&c, b"x").unwrap();
    let g = File::open(&c).unwrap();
    std::fs::hard_link(&c, dir.path().join("d")).unwrap();
    std::fs::remove_file(&c).unwrap();
    let desc = own_fd_desc(g.as_fd()).unwrap();
    let err = plugin.dump_file(&mut images, &desc, 2).unwrap_err();
    assert!(matches!(err, PluginError::Unsupported { .. }), "{err}");
    assert!(err.to_string().contains("--link-remap"), "{err}");
}

/// crit (CRIU's decoder), when installed, reads our chunked ghost image.
#[test]
fn crit_decodes_a_chunked_ghost() {
    let plugin = FilesPlugin;
    let (_dir, f, _path) = ghost_setup(&[b'x'; 20000]);
    let mut images = MemoryImages::for_plugin(1, &crate::PLUGIN).unwrap();
    dump(&plugin, &mut images, f.as_fd(), 1);
    let kind = criu_proto::ImageKind::GhostFile;
    let mut bytes = criu_proto::framing::header_bytes(kind).unwrap();
    bytes.extend_from_slice(images.image(ImageRef::ghost_file(1)).unwrap());
    let out_dir = tempfile::tempdir().unwrap();
    let img = out_dir.path().join("ghost-file-1.img");
    std::fs::write(&img, &bytes).unwrap();
    let out = match std::process::Command::new("crit")
        .args(["decode", "-i"])
        .arg(&img)
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            eprintln!("skipped: crit not runnable: {e}");
            return;
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "crit: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("GHOST_FILE") && stdout.contains("\"chunks\": true"),
        "{stdout}"
    );
}

#[test]
fn large_ghost_is_split_into_bounded_chunks() {
    let plugin = FilesPlugin;
    let content: Vec<u8> = (0..2_500_000u32).map(|i| (i % 239) as u8).collect();
    let (_dir, f, _path) = ghost_setup(&content);
    let mut images = MemoryImages::for_plugin(1, &crate::PLUGIN).unwrap();
    images.dump_options.ghost_limit = 4 << 20;
    let e = dump(&plugin, &mut images, f.as_fd(), 1);
    drop(f);
    let body = images.image(ImageRef::ghost_file(1)).unwrap();
    let mut c = ImageCursor::new(ImageRef::ghost_file(1), body);
    let _: GhostFileEntry = c.next_entry().unwrap().unwrap();
    let mut chunks = 0;
    while let Some(ch) = c.next_entry::<GhostChunkEntry>().unwrap() {
        assert!(ch.len <= 1 << 20);
        c.raw(ch.len as usize).unwrap();
        chunks += 1;
    }
    assert_eq!(chunks, 3);
    let mut n = restore_one(&plugin, &mut images, &e);
    let mut all = Vec::new();
    n.read_to_end(&mut all).unwrap();
    assert_eq!(all, content);
}

#[test]
fn o_tmpfile_file_comes_back_as_a_ghost() {
    let plugin = FilesPlugin;
    let dir = tempfile::tempdir().unwrap();
    let fd = match nix::fcntl::open(
        dir.path(),
        nix::fcntl::OFlag::O_TMPFILE | nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    ) {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("skipped: O_TMPFILE unsupported here: {e}");
            return;
        }
    };
    let f = File::from(fd);
    f.write_all_at(b"tmp", 0).unwrap();
    let mut images = MemoryImages::for_plugin(1, &crate::PLUGIN).unwrap();
    let e = dump(&plugin, &mut images, f.as_fd(), 1);
    assert_ne!(e.reg.as_ref().unwrap().flags & libc::O_TMPFILE as u32, 0);
    drop(f);
    let mut n = restore_one(&plugin, &mut images, &e);
    let mut s = String::new();
    n.read_to_string(&mut s).unwrap();
    assert_eq!(s, "tmp");
}

#[test]
fn removed_directory_comes_back_as_a_removed_directory() {
    let plugin = FilesPlugin;
    let top = tempfile::tempdir().unwrap();
    let path = top.path().join("gone");
    std::fs::create_dir(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o750)).unwrap();
    let d = File::open(&path).unwrap();
    std::fs::remove_dir(&path).unwrap();
    let mut images = MemoryImages::for_plugin(1, &crate::PLUGIN).unwrap();
    let e = dump(&plugin, &mut images, d.as_fd(), 1);
    assert_eq!(e.reg.as_ref().unwrap().name, path.to_str().unwrap());
    let body = images.image(ImageRef::ghost_file(1)).unwrap();
    let mut c = ImageCursor::new(ImageRef::ghost_file(1), body);
    let g: GhostFileEntry = c.next_entry().unwrap().unwrap();
    assert_eq!(g.mode, libc::S_IFDIR | 0o750);
    assert!(c.is_empty(), "no contents for a directory");
    drop(d);

    let n = restore_one(&plugin, &mut images, &e);
    let m = n.metadata().unwrap();
    assert!(m.is_dir());
    assert_eq!((m.nlink(), m.permissions().mode() & 0o7777), (0, 0o750));
    // Recreated at its own path (as CRIU does): it reads back as the same removed path.
    let link = std::fs::read_link(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&n)
    ))
    .unwrap();
    assert_eq!(
        link.to_str().unwrap(),
        format!("{} (deleted)", path.display())
    );
    assert_eq!(
        std::fs::read_dir(top.path()).unwrap().count(),
        0,
        "no leftovers"
    );
}

#[test]
fn removed_device_node_comes_back() {
    let plugin = FilesPlugin;
    let top = tempfile::tempdir().unwrap();
    let path = top.path().join("null");
    // The /dev/null device (1, 3) under another, soon removed, name.
    let made = nix::sys::stat::mknod(
        &path,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 3),
    );
    if let Err(e) = made {
        eprintln!("skipped: mknod here: {e}");
        return;
    }
    let f = match OpenOptions::new().write(true).open(&path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("skipped: device nodes unusable here (nodev?): {e}");
            return;
        }
    };
    std::fs::remove_file(&path).unwrap();
    let mut images = MemoryImages::for_plugin(1, &crate::PLUGIN).unwrap();
    let e = dump(&plugin, &mut images, f.as_fd(), 1);
    drop(f);
    let mut n = restore_one(&plugin, &mut images, &e);
    n.write_all(b"into the void").unwrap();
    let m = n.metadata().unwrap();
    assert_eq!((m.rdev(), m.nlink()), (nix::sys::stat::makedev(1, 3), 0));
    assert_eq!(getfl(n.as_fd()) & libc::O_ACCMODE, libc::O_WRONLY);
    assert_eq!(
        std::fs::read_dir(top.path()).unwrap().count(),
        0,
        "no leftovers"
    );
}
