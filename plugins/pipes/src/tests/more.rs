//! FIFOs, CRIU's own images, bad input, registration, restores side by side.

use super::*;

#[test]
fn fifo_round_trip() {
    let plugin = PipesPlugin;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fifo");
    mkfifo(&path, Mode::from_bits_truncate(0o600)).unwrap();
    let holder: OwnedFd = open(&path, OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty()).unwrap();
    write_all(holder.as_fd(), b"fifo data");
    let reader: OwnedFd = open(
        &path,
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .unwrap();
    let mut images = MemoryImages::for_plugin(100, &crate::PLUGIN).unwrap();
    let e = dump(&plugin, &mut images, reader.as_fd(), 7);
    assert_eq!(e.r#type, FdTypes::Fifo as i32);
    let fifo = e.fifo.unwrap();
    let regs = files_img(&images);
    assert_eq!(regs.len(), 1);
    let reg = regs[0].reg.clone().unwrap();
    assert_eq!(Some(reg.id), fifo.regf_id);
    assert_eq!(regs[0].r#type, FdTypes::Reg as i32);
    assert_eq!(reg.name, path.to_str().unwrap());
    assert_eq!(
        reg.flags & (libc::O_ACCMODE | libc::O_NONBLOCK) as u32,
        libc::O_NONBLOCK as u32
    );
    assert_eq!(reg.mode, Some(libc::S_IFIFO | 0o600));
    let data = data_entries(&images, ImageRef::FIFO_DATA);
    assert_eq!(data.len(), 1);
    assert_eq!(data[0].1, b"fifo data");
    assert!(images.image(ImageRef::PIPES_DATA).is_none());
    // Not consumed; then empty the FIFO so restore starts from a clean one.
    assert_eq!(drain(reader.as_fd()), b"fifo data");
    drop((holder, reader));

    let mut entries = regs.clone();
    entries.push(e.clone());
    let mut rs = plugin.start_restore(&mut images, &entries).unwrap();
    let n = rs.open_file(&mut images, &e).unwrap();
    assert_eq!(drain(n.as_fd()), b"fifo data");
    let st = nix::sys::stat::fstat(n.as_fd()).unwrap();
    let disk = nix::sys::stat::stat(&path).unwrap();
    assert_eq!((st.st_dev, st.st_ino), (disk.st_dev, disk.st_ino));
}

#[test]
fn corrupt_data_image_is_an_error_not_a_panic() {
    let plugin = PipesPlugin;
    let mut images = MemoryImages::for_plugin(1, &crate::PLUGIN).unwrap();
    let entry = PipeDataEntry {
        pipe_id: 1,
        bytes: 100,
        size: None,
    }
    .encode_to_vec();
    images.images.insert(
        "pipes-data.img".into(),
        frame_entries([(entry.as_slice(), b"short".as_slice())]),
    );
    let err = plugin
        .start_restore(&mut images, &[])
        .err()
        .expect("corrupt image refused");
    assert!(matches!(err, PluginError::BadImage { .. }), "{err}");
}

#[test]
fn entry_without_its_member_is_an_error() {
    let plugin = PipesPlugin;
    let mut images = MemoryImages::for_plugin(1, &crate::PLUGIN).unwrap();
    let entry = FileEntry {
        r#type: FdTypes::Pipe as i32,
        id: 3,
        ..Default::default()
    };
    let mut rs = plugin.start_restore(&mut images, &[]).unwrap();
    // A PIPE entry without its pipe member.
    assert!(rs.open_file(&mut images, &entry).is_err());
}

#[test]
fn claims_only_pipes_and_fifos() {
    let plugin = PipesPlugin;
    let f = std::fs::File::open("/proc/self/status").unwrap();
    assert!(!plugin.claims(&own_fd_desc(f.as_fd()).unwrap()));
    let (a, _b) = nix::sys::socket::socketpair(
        nix::sys::socket::AddressFamily::Unix,
        nix::sys::socket::SockType::Stream,
        None,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
    )
    .unwrap();
    assert!(!plugin.claims(&own_fd_desc(a.as_fd()).unwrap()));
}

#[test]
fn registered_as_builtin() {
    let all = builtin_plugins();
    let p = all
        .iter()
        .find(|p| p.info().name == "pipes")
        .expect("pipes registered");
    let h = p.fd_handler().unwrap();
    let pipe = FileEntry {
        r#type: FdTypes::Pipe as i32,
        ..Default::default()
    };
    assert!(h.restores(&pipe));
}

/// The pipe entries and data CRIU 4.2 wrote for its sample program restore here.
#[test]
fn criu_fixture_pipes_restore() {
    let dir = std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/fixtures/criu-4.2-sample"
    ));
    let (Ok(files), Ok(data)) = (
        std::fs::read(dir.join("files.img")),
        std::fs::read(dir.join("pipes-data.img")),
    ) else {
        eprintln!("skipped: CRIU fixture images not present");
        return;
    };
    let mut images = MemoryImages::for_plugin(1, &crate::PLUGIN).unwrap();
    // Our images hold bodies: drop the 8-byte CRIU header.
    images
        .images
        .insert("files.img".into(), files[8..].to_vec());
    images
        .images
        .insert("pipes-data.img".into(), data[8..].to_vec());
    let entries = files_img(&images);
    let plugin = PipesPlugin;
    let mut rs = plugin.start_restore(&mut images, &entries).unwrap();
    let pipe = |id: u32| entries.iter().find(|e| e.id == id).unwrap().clone();
    // ids 6 and 7: both ends of pipe 211530 holding "pipe-data"; id 10: a lone write end.
    let r = rs.open_file(&mut images, &pipe(6)).unwrap();
    let w = rs.open_file(&mut images, &pipe(7)).unwrap();
    let lone = rs.open_file(&mut images, &pipe(10)).unwrap();
    assert_eq!(drain(r.as_fd()), b"pipe-data");
    write_all(w.as_fd(), b"!");
    assert_eq!(drain(r.as_fd()), b"!");
    assert_eq!(
        fcntl(lone.as_fd(), FcntlArg::F_GETFL).unwrap() & libc::O_ACCMODE,
        libc::O_WRONLY
    );
    assert_eq!(pipe_size(r.as_fd()), 65536);
}

/// Two restores in one process (same file ids, same pipe id, different data) do not mix.
#[test]
fn concurrent_restores_keep_their_own_state() {
    let plugin = PipesPlugin;
    let mut sets = Vec::new();
    for payload in [b"first".as_slice(), b"second".as_slice()] {
        let (r, w) = pipe2(OFlag::O_CLOEXEC).unwrap();
        write_all(w.as_fd(), payload);
        let mut images = MemoryImages::for_plugin(1, &crate::PLUGIN).unwrap();
        let mut e = dump(&plugin, &mut images, r.as_fd(), 1);
        // Same pipe id in both image sets, as two dumps of different machines could have.
        let body = images.images.remove("pipes-data.img").unwrap();
        let mut c = ImageCursor::new(ImageRef::PIPES_DATA, &body);
        let mut d: PipeDataEntry = c.next_entry().unwrap().unwrap();
        let data = c.raw(d.bytes as usize).unwrap().to_vec();
        d.pipe_id = 4242;
        e.pipe.as_mut().unwrap().pipe_id = 4242;
        let enc = d.encode_to_vec();
        images.images.insert(
            "pipes-data.img".into(),
            frame_entries([(enc.as_slice(), data.as_slice())]),
        );
        sets.push((images, e, payload));
    }
    let (mut a, mut b) = (sets.remove(0), sets.remove(0));
    let mut ra = plugin
        .start_restore(&mut a.0, std::slice::from_ref(&a.1))
        .unwrap();
    let mut rb = plugin
        .start_restore(&mut b.0, std::slice::from_ref(&b.1))
        .unwrap();
    let fb = rb.open_file(&mut b.0, &b.1).unwrap();
    let fa = ra.open_file(&mut a.0, &a.1).unwrap();
    assert_eq!(drain(fa.as_fd()), a.2);
    assert_eq!(drain(fb.as_fd()), b.2);
}
