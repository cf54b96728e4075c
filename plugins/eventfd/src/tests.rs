use std::os::fd::AsFd;

use criu_plugin_api::testing::{MemoryImages, own_fd_desc};
use criu_plugin_api::{DumpContext, FdHandler, ImageRef, RestoreContext, read_messages};
use criu_proto::images::{FdTypes, FileEntry};
use nix::sys::eventfd::{EfdFlags, EventFd};

use super::*;

#[test]
fn fdinfo_lines() {
    let t = "pos:\t0\nflags:\t02004002\nmnt_id:\t16\nino:\t1057\neventfd-count:                2a\neventfd-id: 3\neventfd-semaphore: 1\n";
    assert_eq!(
        parse_eventfd(t),
        Ok(EventfdState {
            counter: 42,
            semaphore: true
        })
    );
    // Older kernels: no semaphore line.
    let t = "eventfd-count: fffffffffffffffe\n";
    assert_eq!(parse_eventfd(t).unwrap().counter, u64::MAX - 1);
    assert!(parse_eventfd("pos: 0\n").is_err());
    assert!(parse_eventfd("eventfd-count: zz\n").is_err());
    assert!(parse_eventfd("eventfd-count: 1\neventfd-semaphore: 7\n").is_err());
}

fn dump_one(ctx: &mut MemoryImages, efd: &EventFd) -> FileEntry {
    let desc = own_fd_desc(efd.as_fd()).expect("describe");
    assert!(PLUGIN.claims(&desc));
    let id = ctx.new_file_id();
    let e = PLUGIN.dump_file(ctx, &desc, id).expect("dump");
    criu_plugin_api::write_message(ctx, ImageRef::FILES, &e, &[]).expect("write");
    e
}

fn read_state(fd: std::os::fd::BorrowedFd<'_>) -> EventfdState {
    let desc = own_fd_desc(fd).expect("describe");
    parse_eventfd(&desc.fdinfo.raw).expect("parse")
}

#[test]
fn round_trip_counter_flags_and_semaphore_mode() {
    let mut ctx = MemoryImages::new(0);
    let plain = EventFd::from_value_and_flags(7, EfdFlags::EFD_NONBLOCK).unwrap();
    plain.write(u64::from(u32::MAX) + 5).unwrap();
    let sem = EventFd::from_value_and_flags(3, EfdFlags::EFD_SEMAPHORE).unwrap();
    let a = dump_one(&mut ctx, &plain);
    let b = dump_one(&mut ctx, &sem);
    assert_eq!(a.efd.as_ref().unwrap().counter, u64::from(u32::MAX) + 12);
    assert_eq!(b.efd.as_ref().unwrap().counter, 3);
    // Semaphore mode in our field of CRIU's entry, no side file; a counter-mode eventfd's
    // entry is CRIU's to the byte (no field of ours).
    assert_eq!(b.efd.as_ref().unwrap().criu_rs_semaphore, Some(true));
    assert_eq!(a.efd.as_ref().unwrap().criu_rs_semaphore, None);
    assert!(ctx.plugin_files.is_empty(), "{:?}", ctx.plugin_files.keys());

    let entries: Vec<FileEntry> = read_messages(&mut ctx, ImageRef::FILES).unwrap();
    assert_eq!(entries.len(), 2);
    assert!(entries.iter().all(|e| e.r#type == FdTypes::Eventfd as i32));
    let mut r = PLUGIN.start_restore(&mut ctx, &entries).unwrap();
    let fa = r.open_file(&mut ctx, &entries[0]).unwrap();
    let fb = r.open_file(&mut ctx, &entries[1]).unwrap();
    let sa = read_state(fa.as_fd());
    assert_eq!(sa.counter, u64::from(u32::MAX) + 12);
    assert!(!sa.semaphore);
    let flags = nix::fcntl::fcntl(&fa, nix::fcntl::FcntlArg::F_GETFL).unwrap();
    assert_ne!(flags & libc::O_NONBLOCK, 0);
    // Semaphore mode: a read takes 1, not the whole counter.
    let mut buf = [0u8; 8];
    assert_eq!(nix::unistd::read(&fb, &mut buf).unwrap(), 8);
    assert_eq!(u64::from_ne_bytes(buf), 1);
    assert_eq!(read_state(fb.as_fd()).counter, 2);
}

#[test]
fn bad_side_file_and_missing_efd_are_errors() {
    assert!(parse_semaphore_file("4\n\n9\n").unwrap().contains(&9));
    assert!(parse_semaphore_file("x\n").is_err());
    let mut ctx = MemoryImages::new(0);
    ctx.plugin_files
        .insert(SEMAPHORE_FILE.into(), b"nope\n".to_vec());
    let e = FileEntry {
        r#type: FdTypes::Eventfd as i32,
        id: 1,
        ..Default::default()
    };
    assert!(
        PLUGIN
            .start_restore(&mut ctx, std::slice::from_ref(&e))
            .is_err()
    );
    ctx.plugin_files.clear();
    let mut r = PLUGIN
        .start_restore(&mut ctx, std::slice::from_ref(&e))
        .unwrap();
    let err = r.open_file(&mut ctx, &e).unwrap_err().to_string();
    assert!(err.contains("without efd"), "{err}");
    let _ = ctx.current_pid();
}

/// The semaphore field's wire form: field 1001, varint 1 (tag bytes 0xc8 0x3e), after CRIU's
/// four fields; an entry without it decodes as counter mode.
#[test]
fn semaphore_field_is_field_1001_and_optional() {
    use prost::Message;
    let entry = criu_proto::images::EventfdFileEntry {
        id: 1,
        flags: 2,
        fown: Default::default(),
        counter: 3,
        criu_rs_semaphore: Some(true),
    };
    let bytes = entry.encode_to_vec();
    assert!(bytes.ends_with(&[0xc8, 0x3e, 0x01]), "{bytes:02x?}");
    let plain = criu_proto::images::EventfdFileEntry {
        criu_rs_semaphore: None,
        ..entry
    };
    let without = plain.encode_to_vec();
    assert_eq!(&bytes[..without.len()], without.as_slice());
    let back = criu_proto::images::EventfdFileEntry::decode(without.as_slice()).unwrap();
    assert_eq!(back.criu_rs_semaphore, None);
}

/// Images of earlier criu-rs builds: no field, the semaphore ids in the side file. Still
/// restored in semaphore mode.
#[test]
fn old_images_with_the_side_file_still_restore_semaphores() {
    let mut ctx = MemoryImages::new(0);
    let sem = EventFd::from_value_and_flags(2, EfdFlags::EFD_SEMAPHORE).unwrap();
    let mut e = dump_one(&mut ctx, &sem);
    e.efd.as_mut().unwrap().criu_rs_semaphore = None;
    ctx.plugin_files
        .insert(SEMAPHORE_FILE.into(), format!("{}\n", e.id).into_bytes());
    let mut r = PLUGIN
        .start_restore(&mut ctx, std::slice::from_ref(&e))
        .unwrap();
    let fd = r.open_file(&mut ctx, &e).unwrap();
    assert!(read_state(fd.as_fd()).semaphore);
}
