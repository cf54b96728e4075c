use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};

use criu_plugin_api::testing::{MemoryImages, own_fd_desc};
use criu_plugin_api::{FdHandler, read_messages};
use criu_proto::images::{FdTypes, FileEntry, MemfdInodeEntry};
use nix::fcntl::{FcntlArg, OFlag, SealFlag, fcntl};
use nix::sys::memfd::{MFdFlags, memfd_create};

use super::*;

fn memfd(name: &str, sealing: bool) -> File {
    let mut flags = MFdFlags::MFD_CLOEXEC;
    if sealing {
        flags |= MFdFlags::MFD_ALLOW_SEALING;
    }
    File::from(memfd_create(name, flags).unwrap())
}

fn reopen(f: &File, flags: libc::c_int) -> File {
    let path = format!("/proc/self/fd/{}", f.as_raw_fd());
    File::from(
        nix::fcntl::open(
            path.as_str(),
            OFlag::from_bits_truncate(flags) | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .unwrap(),
    )
}

fn seals(fd: impl AsFd) -> i32 {
    fcntl(fd.as_fd(), FcntlArg::F_GET_SEALS).unwrap()
}

fn dump(images: &mut MemoryImages, f: &File) -> FileEntry {
    let desc = own_fd_desc(f.as_fd()).unwrap();
    assert!(PLUGIN.claims(&desc), "{}", desc.link);
    let id = criu_plugin_api::DumpContext::new_file_id(images);
    PLUGIN.dump_file(images, &desc, id).unwrap()
}

#[test]
fn descriptions_share_one_inode_and_keep_their_own_state() {
    let mut a = memfd("unit test", true);
    let data: Vec<u8> = (0..3 * 4096 + 100).map(|i| (i % 251) as u8).collect();
    a.write_all(&data).unwrap();
    a.seek(SeekFrom::Start(100)).unwrap();
    a.set_permissions(std::fs::Permissions::from_mode(0o640))
        .unwrap();
    let mut b = reopen(&a, libc::O_RDONLY | libc::O_NONBLOCK);
    b.seek(SeekFrom::Start(7)).unwrap();
    let want_seals = libc::F_SEAL_GROW | libc::F_SEAL_SHRINK;
    fcntl(
        a.as_fd(),
        FcntlArg::F_ADD_SEALS(SealFlag::from_bits_retain(want_seals)),
    )
    .unwrap();

    let mut images = MemoryImages::for_plugin(0, &crate::PLUGIN).unwrap();
    let ea = dump(&mut images, &a);
    let eb = dump(&mut images, &b);
    assert_eq!(ea.r#type, FdTypes::Memfd as i32);
    let (ma, mb) = (ea.memfd.unwrap(), eb.memfd.unwrap());
    assert_eq!(ma.inode_id, mb.inode_id);
    assert_eq!((ma.pos, mb.pos), (100, 7));
    assert_eq!(mb.flags & libc::O_ACCMODE as u32, libc::O_RDONLY as u32);
    assert_ne!(mb.flags & libc::O_NONBLOCK as u32, 0);
    assert_eq!(ma.flags & libc::O_ACCMODE as u32, libc::O_RDWR as u32);
    let inodes: Vec<MemfdInodeEntry> = read_messages(&mut images, MEMFD_INODES).unwrap();
    assert_eq!(inodes.len(), 1, "one memfd.img entry per inode");
    let mie = &inodes[0];
    assert_eq!(mie.name, "unit test");
    assert_eq!(mie.size, data.len() as u64);
    assert_eq!(mie.seals, want_seals as u32);
    assert_eq!(mie.mode, Some(libc::S_IFREG | 0o640));
    assert_eq!(u64::from(mie.shmid), a.metadata().unwrap().ino());
    assert_eq!(mie.hugetlb_flag, None);
    assert_eq!(images.shmem[&u64::from(mie.shmid)], data);
    // Dumping did not move the task's offsets.
    assert_eq!(a.stream_position().unwrap(), 100);
    assert_eq!(b.stream_position().unwrap(), 7);

    let mut r = PLUGIN
        .start_restore(&mut images, &[ea.clone(), eb.clone()])
        .unwrap();
    let ra = File::from(r.open_file(&mut images, &ea).unwrap());
    let mut rb = File::from(r.open_file(&mut images, &eb).unwrap());
    let (sa, sb) = (ra.metadata().unwrap(), rb.metadata().unwrap());
    assert_eq!((sa.dev(), sa.ino()), (sb.dev(), sb.ino()), "one inode");
    assert_ne!(sa.ino(), a.metadata().unwrap().ino(), "a new memfd");
    assert_eq!(sa.len(), data.len() as u64);
    assert_eq!(sa.mode(), libc::S_IFREG | 0o640);
    let link = std::fs::read_link(format!("/proc/self/fd/{}", ra.as_raw_fd())).unwrap();
    assert_eq!(link.to_str(), Some("/memfd:unit test (deleted)"));
    let mut got = vec![0u8; data.len()];
    ra.read_exact_at(&mut got, 0).unwrap();
    assert_eq!(got, data);
    assert_eq!(rb.stream_position().unwrap(), 7);
    let fl = fcntl(rb.as_fd(), FcntlArg::F_GETFL).unwrap();
    assert_eq!(fl & libc::O_ACCMODE, libc::O_RDONLY);
    assert_ne!(fl & libc::O_NONBLOCK, 0);
    // A write through one description is seen through the other: one inode.
    ra.write_all_at(b"shared", 4096).unwrap();
    let mut six = [0u8; 6];
    rb.read_exact_at(&mut six, 4096).unwrap();
    assert_eq!(&six, b"shared");
    // Seals come last.
    assert_eq!(seals(&ra), 0);
    restore::apply_seals(&mut images).unwrap();
    assert_eq!(seals(&ra), want_seals);
    assert!(ra.set_len(10).is_err(), "F_SEAL_SHRINK holds");
    drop(r);
}

#[test]
fn unsealable_memfd_stays_unsealable() {
    let a = memfd("plain", false);
    a.set_len(5).unwrap();
    assert_eq!(seals(&a), libc::F_SEAL_SEAL);
    let mut images = MemoryImages::for_plugin(0, &crate::PLUGIN).unwrap();
    let e = dump(&mut images, &a);
    let mut r = PLUGIN
        .start_restore(&mut images, std::slice::from_ref(&e))
        .unwrap();
    let fd: OwnedFd = r.open_file(&mut images, &e).unwrap();
    restore::apply_seals(&mut images).unwrap();
    assert_eq!(seals(&fd), libc::F_SEAL_SEAL);
    assert_eq!(File::from(fd).metadata().unwrap().len(), 5);
}

#[test]
fn claims_only_memfds() {
    let m = memfd("x", false);
    assert!(PLUGIN.claims(&own_fd_desc(m.as_fd()).unwrap()));
    let null = File::open("/dev/null").unwrap();
    assert!(!PLUGIN.claims(&own_fd_desc(null.as_fd()).unwrap()));
    // A deleted file that merely looks like one, on another file system.
    let dir = std::env::temp_dir().join(format!("memfd-claims-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("f");
    let f = File::create(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let mut d = own_fd_desc(f.as_fd()).unwrap();
    d.link = "/memfd:x (deleted)".into();
    let on_tmpfs_shm = nix::sys::statfs::fstatfs(&f)
        .map(|s| s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC)
        .unwrap_or(false);
    if !on_tmpfs_shm {
        assert!(!PLUGIN.claims(&d));
    }
    let _ = std::fs::remove_dir(&dir);
}

#[test]
fn a_missing_inode_is_a_bad_image() {
    let mut images = MemoryImages::for_plugin(0, &crate::PLUGIN).unwrap();
    let e = FileEntry {
        r#type: FdTypes::Memfd as i32,
        id: 1,
        memfd: Some(criu_proto::images::MemfdFileEntry {
            id: 1,
            inode_id: 9,
            ..Default::default()
        }),
        ..Default::default()
    };
    assert!(matches!(
        PLUGIN.start_restore(&mut images, &[e]),
        Err(PluginError::BadImage { .. })
    ));
}
