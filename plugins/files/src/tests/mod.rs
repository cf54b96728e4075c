//! Real files of the test process, dumped into and restored from memory images.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use criu_plugin_api::testing::{MemoryImages, own_fd_desc};
use criu_plugin_api::{
    FdHandler, ImageCursor, ImageRef, PluginError, builtin_plugins, frame_entries,
};
use criu_proto::images::{
    FdTypes, FileEntry, GhostChunkEntry, GhostFileEntry, RemapFilePathEntry, RemapType,
};
use nix::fcntl::{FcntlArg, fcntl};
use prost::Message;

use crate::FilesPlugin;

/// The kernel's O_LARGEFILE on x86_64 (libc's constant is 0 on 64-bit targets).
#[cfg(target_arch = "x86_64")]
const O_LARGEFILE: u32 = 0o100000;

fn dump(plugin: &FilesPlugin, images: &mut MemoryImages, fd: BorrowedFd<'_>, id: u32) -> FileEntry {
    let desc = own_fd_desc(fd).expect("describe fd");
    assert!(plugin.claims(&desc), "not claimed: {}", desc.link);
    plugin.dump_file(images, &desc, id).expect("dump_file")
}

fn restore_one(plugin: &FilesPlugin, images: &mut MemoryImages, entry: &FileEntry) -> File {
    let mut rs = plugin
        .start_restore(images, std::slice::from_ref(entry))
        .unwrap();
    File::from(rs.open_file(images, entry).expect("open_file"))
}

fn getfl(fd: BorrowedFd<'_>) -> i32 {
    fcntl(fd, FcntlArg::F_GETFL).unwrap()
}

fn messages<M: Message + Default>(images: &MemoryImages, image: ImageRef) -> Vec<M> {
    let Some(body) = images.image(image) else {
        return Vec::new();
    };
    let mut c = ImageCursor::new(image, body);
    let mut out = Vec::new();
    while let Some(m) = c.next_entry::<M>().unwrap() {
        out.push(m);
    }
    out
}

mod ghost;

#[test]
fn regular_file_round_trip() {
    let plugin = FilesPlugin;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.txt");
    std::fs::write(&path, b"hello world").unwrap();
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    f.seek(SeekFrom::Start(5)).unwrap();
    let mut images = MemoryImages::for_plugin(1, &crate::PLUGIN).unwrap();
    let e = dump(&plugin, &mut images, f.as_fd(), 8);
    assert_eq!((e.r#type, e.id), (FdTypes::Reg as i32, 8));
    let reg = e.reg.clone().unwrap();
    assert_eq!(reg.name, path.to_str().unwrap());
    assert_eq!(
        reg.flags,
        libc::O_RDWR as u32 | O_LARGEFILE,
        "O_CLOEXEC is not a file flag"
    );
    assert_eq!(
        (reg.pos, reg.size, reg.mode),
        (5, Some(11), Some(libc::S_IFREG | 0o644))
    );
    assert!(images.images.is_empty(), "no side images for a plain file");
    assert_eq!(
        f.stream_position().unwrap(),
        5,
        "dump must not move the offset"
    );
    drop(f);

    let mut n = restore_one(&plugin, &mut images, &e);
    let mut rest = String::new();
    n.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, " world");
    assert_eq!(getfl(n.as_fd()) & libc::O_ACCMODE, libc::O_RDWR);
}

#[test]
fn append_writer_has_no_size_and_keeps_o_append() {
    let plugin = FilesPlugin;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    std::fs::write(&path, b"line1\n").unwrap();
    let f = OpenOptions::new().append(true).open(&path).unwrap();
    let mut images = MemoryImages::for_plugin(1, &crate::PLUGIN).unwrap();
    let e = dump(&plugin, &mut images, f.as_fd(), 1);
    assert_eq!(e.reg.as_ref().unwrap().size, None);
    drop(f);
    // The log grew after the dump: fine for an append-only writer.
    std::fs::write(&path, b"line1\nline2\n").unwrap();
    let mut n = restore_one(&plugin, &mut images, &e);
    assert_ne!(getfl(n.as_fd()) & libc::O_APPEND, 0);
    n.write_all(b"line3\n").unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"line1\nline2\nline3\n");
}

#[test]
fn changed_file_is_refused_with_its_path() {
    let plugin = FilesPlugin;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ro.txt");
    std::fs::write(&path, b"12345").unwrap();
    let f = File::open(&path).unwrap();
    let mut images = MemoryImages::for_plugin(1, &crate::PLUGIN).unwrap();
    let e = dump(&plugin, &mut images, f.as_fd(), 1);
    drop(f);

    std::fs::write(&path, b"1234567").unwrap();
    let mut rs = plugin
        .start_restore(&mut images, std::slice::from_ref(&e))
        .unwrap();
    let err = rs.open_file(&mut images, &e).unwrap_err();
    assert!(matches!(err, PluginError::FileChanged { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("ro.txt") && msg.contains("size 7, dumped 5"),
        "{msg}"
    );

    std::fs::write(&path, b"12345").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let msg = rs.open_file(&mut images, &e).unwrap_err().to_string();
    assert!(msg.contains("mode 100600, dumped 100644"), "{msg}");

    images.restore_options.skip_file_checks = true;
    assert!(rs.open_file(&mut images, &e).is_ok());
}

#[test]
fn dev_null_is_a_reg_entry_like_criu_writes() {
    let plugin = FilesPlugin;
    let f = OpenOptions::new().write(true).open("/dev/null").unwrap();
    let mut images = MemoryImages::for_plugin(1, &crate::PLUGIN).unwrap();
    let e = dump(&plugin, &mut images, f.as_fd(), 5);
    let reg = e.reg.clone().unwrap();
    // As in the CRIU 4.2 fixture: name, O_WRONLY | O_LARGEFILE, mode 8630, no size.
    assert_eq!(reg.name, "/dev/null");
    assert_eq!(reg.flags, libc::O_WRONLY as u32 | O_LARGEFILE);
    assert_eq!((reg.mode, reg.size), (Some(8630), None));
    let n = restore_one(&plugin, &mut images, &e);
    assert_eq!(getfl(n.as_fd()) & libc::O_ACCMODE, libc::O_WRONLY);
}

#[test]
fn criu_fixture_dev_null_entries_restore() {
    let img = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/fixtures/criu-4.2-sample/files.img"
    ));
    let Ok(bytes) = std::fs::read(img) else {
        eprintln!("skipped: {} not present", img.display());
        return;
    };
    let entries = {
        let mut c = ImageCursor::new(ImageRef::FILES, &bytes[8..]);
        let mut v = Vec::new();
        while let Some(e) = c.next_entry::<FileEntry>().unwrap() {
            v.push(e);
        }
        v
    };
    let plugin = FilesPlugin;
    let mut images = MemoryImages::for_plugin(1, &crate::PLUGIN).unwrap();
    let mut rs = plugin.start_restore(&mut images, &entries).unwrap();
    let nulls: Vec<_> = entries
        .iter()
        .filter(|e| e.reg.as_ref().is_some_and(|r| r.name == "/dev/null"))
        .collect();
    assert_eq!(nulls.len(), 3);
    for e in nulls {
        assert!(plugin.restores(e));
        rs.open_file(&mut images, e)
            .expect("fixture /dev/null entry");
    }
}

#[test]
fn directory_round_trip() {
    let plugin = FilesPlugin;
    let dir = tempfile::tempdir().unwrap();
    let d = File::open(dir.path()).unwrap();
    let mut images = MemoryImages::for_plugin(1, &crate::PLUGIN).unwrap();
    let e = dump(&plugin, &mut images, d.as_fd(), 1);
    let reg = e.reg.clone().unwrap();
    assert_eq!(reg.mode.unwrap() & libc::S_IFMT, libc::S_IFDIR);
    assert_eq!(reg.size, None);
    let n = restore_one(&plugin, &mut images, &e);
    assert!(n.metadata().unwrap().is_dir());
}

fn ghost_setup(content: &[u8]) -> (tempfile::TempDir, File, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gone.bin");
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o640)
        .open(&path)
        .unwrap();
    f.write_all_at(content, 0).unwrap();
    std::fs::remove_file(&path).unwrap();
    (dir, f, path)
}

#[test]
fn claims_files_not_pipes_sockets_or_terminals_dump_refuses() {
    let plugin = FilesPlugin;
    let (r, _w) = nix::unistd::pipe().unwrap();
    assert!(!plugin.claims(&own_fd_desc(r.as_fd()).unwrap()));
    let null = File::open("/dev/null").unwrap();
    assert!(plugin.claims(&own_fd_desc(null.as_fd()).unwrap()));
    match File::open("/dev/ptmx") {
        Ok(ptmx) => {
            let desc = own_fd_desc(ptmx.as_fd()).unwrap();
            assert!(plugin.claims(&desc));
            let mut images = MemoryImages::for_plugin(1, &crate::PLUGIN).unwrap();
            let err = plugin.dump_file(&mut images, &desc, 1).unwrap_err();
            assert!(err.to_string().contains("terminals"), "{err}");
        }
        Err(e) => eprintln!("skipped the terminal case: /dev/ptmx: {e}"),
    }
}

#[test]
fn registered_as_builtin_for_reg_entries() {
    let all = builtin_plugins();
    let p = all
        .iter()
        .find(|p| p.info().name == "files")
        .expect("files registered");
    let reg = FileEntry {
        r#type: FdTypes::Reg as i32,
        ..Default::default()
    };
    assert!(p.fd_handler().unwrap().restores(&reg));
}

#[test]
fn o_async_is_restored() {
    let plugin = FilesPlugin;
    // /dev/urandom supports SIGIO (fasync); /dev/null and regular files ignore O_ASYNC.
    let f = File::open("/dev/urandom").unwrap();
    let fl = getfl(f.as_fd());
    fcntl(
        f.as_fd(),
        FcntlArg::F_SETFL(nix::fcntl::OFlag::from_bits_retain(fl | libc::O_ASYNC)),
    )
    .unwrap();
    let mut images = MemoryImages::for_plugin(1, &crate::PLUGIN).unwrap();
    let e = dump(&plugin, &mut images, f.as_fd(), 1);
    assert_ne!(e.reg.as_ref().unwrap().flags & libc::O_ASYNC as u32, 0);
    let n = restore_one(&plugin, &mut images, &e);
    assert_ne!(getfl(n.as_fd()) & libc::O_ASYNC, 0);
}

#[test]
fn o_path_symlink_fd_round_trip() {
    let plugin = FilesPlugin;
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("target");
    std::fs::write(&target, b"t").unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let fd = nix::fcntl::open(
        &link,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .unwrap();
    let mut images = MemoryImages::for_plugin(1, &crate::PLUGIN).unwrap();
    let e = dump(&plugin, &mut images, fd.as_fd(), 1);
    let reg = e.reg.clone().unwrap();
    assert_eq!(reg.name, link.to_str().unwrap());
    assert_eq!(reg.mode.unwrap() & libc::S_IFMT, libc::S_IFLNK);
    let n = restore_one(&plugin, &mut images, &e);
    assert_ne!(getfl(n.as_fd()) & libc::O_PATH, 0);
    let st = nix::sys::stat::fstat(n.as_fd()).unwrap();
    assert_eq!(
        st.st_mode & libc::S_IFMT,
        libc::S_IFLNK,
        "the link itself, not its target"
    );
}
