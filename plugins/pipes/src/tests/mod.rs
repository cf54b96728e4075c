//! Real pipes and FIFOs of the test process, dumped into and restored from memory images.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use criu_plugin_api::testing::{MemoryImages, own_fd_desc};
use criu_plugin_api::{
    FdHandler, ImageCursor, ImageRef, PluginError, RestoreContext, builtin_plugins, frame_entries,
};
use criu_proto::images::{FdTypes, FileEntry, PipeDataEntry};
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl, open};
use nix::sys::stat::Mode;
use nix::unistd::{mkfifo, pipe2, read, write};
use prost::Message;

use crate::PipesPlugin;

fn write_all(fd: BorrowedFd<'_>, data: &[u8]) {
    let mut done = 0;
    while done < data.len() {
        done += write(fd, &data[done..]).expect("write");
    }
}

/// Reads what is buffered now (the fd is made non-blocking first).
fn drain(fd: BorrowedFd<'_>) -> Vec<u8> {
    let fl = fcntl(fd, FcntlArg::F_GETFL).unwrap();
    let nb = OFlag::from_bits_retain(fl) | OFlag::O_NONBLOCK;
    fcntl(fd, FcntlArg::F_SETFL(nb)).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match read(fd, &mut buf) {
            Ok(0) | Err(Errno::EAGAIN) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => panic!("read: {e}"),
        }
    }
    fcntl(fd, FcntlArg::F_SETFL(OFlag::from_bits_retain(fl))).unwrap();
    out
}

fn dump(plugin: &PipesPlugin, images: &mut MemoryImages, fd: BorrowedFd<'_>, id: u32) -> FileEntry {
    let desc = own_fd_desc(fd).expect("describe fd");
    assert!(plugin.claims(&desc), "not claimed: {}", desc.link);
    plugin.dump_file(images, &desc, id).expect("dump_file")
}

fn files_img(images: &MemoryImages) -> Vec<FileEntry> {
    let Some(body) = images.image(ImageRef::FILES) else {
        return Vec::new();
    };
    let mut c = ImageCursor::new(ImageRef::FILES, body);
    let mut out = Vec::new();
    while let Some(e) = c.next_entry::<FileEntry>().unwrap() {
        out.push(e);
    }
    out
}

fn data_entries(images: &MemoryImages, image: ImageRef) -> Vec<(PipeDataEntry, Vec<u8>)> {
    let Some(body) = images.image(image) else {
        return Vec::new();
    };
    let mut c = ImageCursor::new(image, body);
    let mut out = Vec::new();
    while let Some(e) = c.next_entry::<PipeDataEntry>().unwrap() {
        let data = c.raw(e.bytes as usize).unwrap().to_vec();
        out.push((e, data));
    }
    out
}

fn pipe_size(fd: BorrowedFd<'_>) -> i32 {
    fcntl(fd, FcntlArg::F_GETPIPE_SZ).unwrap()
}

mod more;

#[test]
fn pipe_round_trip_keeps_the_original_data() {
    let plugin = PipesPlugin;
    let (r, w) = pipe2(OFlag::O_CLOEXEC).unwrap();
    write_all(w.as_fd(), b"hello pipe");
    let mut images = MemoryImages::for_plugin(100, &crate::PLUGIN).unwrap();

    let er = dump(&plugin, &mut images, r.as_fd(), 1);
    let ew = dump(&plugin, &mut images, w.as_fd(), 2);
    let ino = nix::sys::stat::fstat(r.as_fd()).unwrap().st_ino as u32;
    assert_eq!(er.r#type, FdTypes::Pipe as i32);
    let (pr, pw) = (er.pipe.unwrap(), ew.pipe.unwrap());
    assert_eq!((pr.id, pr.pipe_id, pr.flags), (1, ino, 0));
    assert_eq!(
        (pw.id, pw.pipe_id, pw.flags),
        (2, ino, libc::O_WRONLY as u32)
    );

    // Data once per pipe, with its size; the task's pipe still holds it.
    let data = data_entries(&images, ImageRef::PIPES_DATA);
    assert_eq!(data.len(), 1);
    assert_eq!(
        (data[0].0.pipe_id, data[0].0.bytes, data[0].0.size),
        (ino, 10, Some(65536))
    );
    assert_eq!(data[0].1, b"hello pipe");
    assert_eq!(drain(r.as_fd()), b"hello pipe");
    drop((r, w));

    let entries = vec![er.clone(), ew.clone()];
    let mut rs = plugin.start_restore(&mut images, &entries).unwrap();
    let nr = rs.open_file(&mut images, &er).unwrap();
    let nw = rs.open_file(&mut images, &ew).unwrap();
    assert_eq!(drain(nr.as_fd()), b"hello pipe");
    // Both ends belong to one pipe.
    write_all(nw.as_fd(), b"more");
    assert_eq!(drain(nr.as_fd()), b"more");
    let fl = fcntl(nw.as_fd(), FcntlArg::F_GETFL).unwrap();
    assert_eq!(fl & libc::O_ACCMODE, libc::O_WRONLY);
    assert_eq!(
        fl & libc::O_NONBLOCK,
        0,
        "dumped blocking, restored blocking"
    );
    assert_eq!(pipe_size(nr.as_fd()), 65536);
}

#[test]
fn write_end_alone_still_dumps_data_and_flags_and_size() {
    let plugin = PipesPlugin;
    let (r, w) = pipe2(OFlag::O_CLOEXEC).unwrap();
    fcntl(w.as_fd(), FcntlArg::F_SETPIPE_SZ(256 * 1024)).unwrap();
    fcntl(w.as_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).unwrap();
    let payload: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    write_all(w.as_fd(), &payload);
    let mut images = MemoryImages::for_plugin(100, &crate::PLUGIN).unwrap();
    let ew = dump(&plugin, &mut images, w.as_fd(), 5);
    assert_eq!(
        ew.pipe.unwrap().flags,
        (libc::O_WRONLY | libc::O_NONBLOCK) as u32
    );
    let data = data_entries(&images, ImageRef::PIPES_DATA);
    assert_eq!(data.len(), 1);
    assert_eq!(data[0].0.size, Some(256 * 1024));
    assert_eq!(data[0].1, payload);
    assert_eq!(drain(r.as_fd()), payload, "dump must not consume");
    drop((r, w));

    let mut rs = plugin
        .start_restore(&mut images, std::slice::from_ref(&ew))
        .unwrap();
    let nw = rs.open_file(&mut images, &ew).unwrap();
    let fl = fcntl(nw.as_fd(), FcntlArg::F_GETFL).unwrap();
    assert_ne!(fl & libc::O_NONBLOCK, 0);
    assert_eq!(pipe_size(nw.as_fd()), 256 * 1024);
    // The read end is kept by the context: the data is there.
    let kept = images
        .kept_fd(&format!("pipes:pipe:{}:r", data[0].0.pipe_id))
        .unwrap();
    assert_eq!(drain(kept), payload);
}

#[test]
fn reopened_description_is_a_new_description_of_the_same_pipe() {
    let plugin = PipesPlugin;
    let (r, w) = pipe2(OFlag::O_CLOEXEC).unwrap();
    write_all(w.as_fd(), b"abc");
    // A second read description, opened through /proc (gets O_LARGEFILE, like CRIU sees it).
    let r2: OwnedFd = open(
        format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&r)).as_str(),
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .unwrap();
    let mut images = MemoryImages::for_plugin(100, &crate::PLUGIN).unwrap();
    let e1 = dump(&plugin, &mut images, r.as_fd(), 1);
    let e2 = dump(&plugin, &mut images, r2.as_fd(), 2);
    let e3 = dump(&plugin, &mut images, w.as_fd(), 3);
    assert_ne!(e2.pipe.unwrap().flags & crate::restore::O_LARGEFILE, 0);
    assert_eq!(data_entries(&images, ImageRef::PIPES_DATA).len(), 1);
    drop((r, r2, w));

    let entries = vec![e1.clone(), e2.clone(), e3.clone()];
    let mut rs = plugin.start_restore(&mut images, &entries).unwrap();
    let n1 = rs.open_file(&mut images, &e1).unwrap();
    let n2 = rs.open_file(&mut images, &e2).unwrap();
    let n3 = rs.open_file(&mut images, &e3).unwrap();
    // Distinct descriptions: O_NONBLOCK only on the second.
    assert_eq!(
        fcntl(n1.as_fd(), FcntlArg::F_GETFL).unwrap() & libc::O_NONBLOCK,
        0
    );
    assert_ne!(
        fcntl(n2.as_fd(), FcntlArg::F_GETFL).unwrap() & libc::O_NONBLOCK,
        0
    );
    assert_eq!(drain(n2.as_fd()), b"abc");
    write_all(n3.as_fd(), b"z");
    assert_eq!(drain(n1.as_fd()), b"z");
}

#[test]
fn empty_pipe_gets_an_entry_without_bytes() {
    let plugin = PipesPlugin;
    let (r, _w) = pipe2(OFlag::O_CLOEXEC).unwrap();
    let mut images = MemoryImages::for_plugin(100, &crate::PLUGIN).unwrap();
    let e = dump(&plugin, &mut images, r.as_fd(), 1);
    let data = data_entries(&images, ImageRef::PIPES_DATA);
    assert_eq!(data.len(), 1);
    assert_eq!(data[0].0.bytes, 0);
    let mut rs = plugin
        .start_restore(&mut images, std::slice::from_ref(&e))
        .unwrap();
    let n = rs.open_file(&mut images, &e).unwrap();
    assert!(drain(n.as_fd()).is_empty());
}

#[test]
fn packet_mode_is_refused() {
    let plugin = PipesPlugin;
    // The kernel sets O_DIRECT on the write end only.
    let (_r, w) = pipe2(OFlag::O_CLOEXEC | OFlag::O_DIRECT).unwrap();
    let desc = own_fd_desc(w.as_fd()).unwrap();
    let mut images = MemoryImages::for_plugin(1, &crate::PLUGIN).unwrap();
    let err = plugin.dump_file(&mut images, &desc, 1).unwrap_err();
    assert!(matches!(err, PluginError::Unsupported { .. }), "{err}");
    assert!(err.to_string().contains("packet mode"), "{err}");
}

#[test]
fn data_is_written_once_per_dump_state() {
    // The plugin's own state (one per dump) remembers the pipes whose data it wrote.
    let plugin = PipesPlugin;
    let (r, w) = pipe2(OFlag::O_CLOEXEC).unwrap();
    write_all(w.as_fd(), b"x");
    let mut images = MemoryImages::for_plugin(1, &crate::PLUGIN).unwrap();
    for n in 1..=2 {
        dump(&plugin, &mut images, r.as_fd(), 1);
        // The second description of the same pipe in the same dump adds no data entry.
        dump(&plugin, &mut images, w.as_fd(), 2);
        assert_eq!(data_entries(&images, ImageRef::PIPES_DATA).len(), n);
        // A new dump (a new state) writes the data again.
        images
            .start_run(&crate::PLUGIN, criu_plugin_api::RunKind::Dump)
            .unwrap();
    }
    // Without its state the plugin refuses to guess.
    images.state = None;
    let desc = own_fd_desc(r.as_fd()).unwrap();
    let err = plugin.dump_file(&mut images, &desc, 3).unwrap_err();
    assert!(err.to_string().contains("no state"), "{err}");
}

#[test]
fn o_async_survives_a_reopen() {
    let plugin = PipesPlugin;
    let (r, _w) = pipe2(OFlag::O_CLOEXEC).unwrap();
    // A second read description through /proc (not a master), with O_ASYNC.
    let r2: OwnedFd = open(
        format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&r)).as_str(),
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .unwrap();
    let fl = fcntl(r2.as_fd(), FcntlArg::F_GETFL).unwrap();
    fcntl(
        r2.as_fd(),
        FcntlArg::F_SETFL(OFlag::from_bits_retain(fl | libc::O_ASYNC)),
    )
    .unwrap();
    let mut images = MemoryImages::for_plugin(1, &crate::PLUGIN).unwrap();
    let e1 = dump(&plugin, &mut images, r.as_fd(), 1);
    let e2 = dump(&plugin, &mut images, r2.as_fd(), 2);
    assert_ne!(e2.pipe.unwrap().flags & libc::O_ASYNC as u32, 0);
    let mut rs = plugin
        .start_restore(&mut images, &[e1.clone(), e2.clone()])
        .unwrap();
    let _n1 = rs.open_file(&mut images, &e1).unwrap();
    let n2 = rs.open_file(&mut images, &e2).unwrap();
    let got = fcntl(n2.as_fd(), FcntlArg::F_GETFL).unwrap();
    assert_ne!(got & libc::O_ASYNC, 0);
    assert_ne!(got & libc::O_NONBLOCK, 0);
}
