use std::os::fd::{AsFd, AsRawFd};

use criu_plugin_api::testing::{MemoryImages, own_fd_desc};
use criu_plugin_api::{FdHandler, RestoreContext, TaskFd, TaskIds};
use criu_proto::images::{EventpollFileEntry, EventpollTfdEntry, FdTypes};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use nix::sys::eventfd::{EfdFlags, EventFd};

use super::*;
use crate::restore::{Via, event_bytes, place};

fn me() -> i32 {
    std::process::id() as i32
}

#[test]
fn dump_lists_each_registration_with_its_target_id() {
    let (rd, _wr) = nix::unistd::pipe().unwrap();
    let efd = EventFd::from_value_and_flags(0, EfdFlags::EFD_NONBLOCK).unwrap();
    let ep = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).unwrap();
    ep.add(
        &rd,
        EpollEvent::new(EpollFlags::EPOLLIN | EpollFlags::EPOLLET, 11),
    )
    .unwrap();
    ep.add(&efd, EpollEvent::new(EpollFlags::EPOLLIN, u64::MAX))
        .unwrap();
    let mut desc = own_fd_desc(ep.0.as_fd()).unwrap();
    assert!(PLUGIN.claims(&desc));
    // The core reports the task's real fd number; the registrations name ours.
    desc.fd = ep.0.as_raw_fd();
    let (r, e) = (rd.as_raw_fd(), efd.as_fd().as_raw_fd());
    let mut ctx = MemoryImages::new(0);
    ctx.tasks = vec![TaskIds {
        pid: me(),
        tids: vec![me()],
    }];
    ctx.file_ids.insert((me(), r), 7);
    ctx.file_ids.insert((me(), e), 8);
    ctx.epoll_targets.push((me(), desc.fd, r, 0, r));
    ctx.epoll_targets.push((me(), desc.fd, e, 0, e));
    let entry = PLUGIN.dump_file(&mut ctx, &desc, 3).unwrap();
    assert_eq!(entry.r#type, FdTypes::Eventpoll as i32);
    let epfd = entry.epfd.unwrap();
    assert_eq!(epfd.id, 3);
    let mut tfds: Vec<(u32, u32, u32, u64)> = epfd
        .tfd
        .iter()
        .map(|t| (t.id, t.tfd, t.events & 0xffff, t.data))
        .collect();
    tfds.sort();
    let et = (libc::EPOLLIN | libc::EPOLLET) as u32;
    let base = (libc::EPOLLIN | libc::EPOLLERR | libc::EPOLLHUP) as u32;
    assert_eq!(
        tfds,
        vec![
            (7, r as u32, (et | base) & 0xffff, 11),
            (8, e as u32, base, u64::MAX)
        ]
    );
    assert!(
        epfd.tfd
            .iter()
            .all(|t| t.inode.is_some() && t.pos == Some(0))
    );

    assert!(
        ctx.in_flight.is_empty(),
        "found at their numbers: no file in flight"
    );
}

/// A registered target whose number was closed (a duplicate keeps the file) or reused for
/// another file is found by kcmp at the duplicate; with no fd left anywhere the dump refuses.
#[test]
fn dump_finds_a_closed_or_reused_target_at_its_duplicate() {
    let (rd, _wr) = nix::unistd::pipe().unwrap();
    let (other, _w2) = nix::unistd::pipe().unwrap();
    let ep = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).unwrap();
    let mut dup = nix::unistd::dup(&rd).unwrap();
    ep.add(&dup, EpollEvent::new(EpollFlags::EPOLLIN, 5))
        .unwrap();
    let tfd = dup.as_raw_fd();
    let mut desc = own_fd_desc(ep.0.as_fd()).unwrap();
    desc.fd = ep.0.as_raw_fd();
    let mut ctx = MemoryImages::new(0);
    ctx.tasks = vec![TaskIds {
        pid: me(),
        tids: vec![me()],
    }];
    ctx.file_ids.insert((me(), rd.as_raw_fd()), 7);
    ctx.file_ids.insert((me(), tfd), 9);

    // The number now names another pipe: still the first pipe's id.
    nix::unistd::dup2(&other, &mut dup).unwrap();
    let entry = PLUGIN.dump_file(&mut ctx, &desc, 3).unwrap();
    let t = &entry.epfd.unwrap().tfd[0];
    assert_eq!((t.id, t.tfd, t.data), (7, tfd as u32, 5));

    // The number closed: the same.
    drop(dup);
    ctx.file_ids.remove(&(me(), tfd));
    let entry = PLUGIN.dump_file(&mut ctx, &desc, 3).unwrap();
    assert_eq!(entry.epfd.unwrap().tfd[0].id, 7);
}

fn ep_entry(id: u32, tfds: &[(u32, u32)]) -> EventpollFileEntry {
    EventpollFileEntry {
        id,
        tfd: tfds
            .iter()
            .map(|&(id, tfd)| EventpollTfdEntry {
                id,
                tfd,
                events: 1,
                data: 9,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn fd(fd: i32, id: u32) -> TaskFd {
    TaskFd {
        fd,
        id,
        fd_type: 0,
        cloexec: false,
    }
}

#[test]
fn registrations_go_to_a_task_holding_epoll_and_target() {
    let t = |pid| TaskIds {
        pid,
        tids: vec![pid],
    };
    let tasks = vec![
        (t(10), vec![fd(3, 1), fd(4, 2)]),
        (t(11), vec![fd(5, 1), fd(4, 3), fd(6, 2)]),
    ];
    let ep = ep_entry(1, &[(3, 4), (2, 6), (9, 4)]);
    let (i, a) = place(&tasks, &ep, &ep.tfd[0]).unwrap();
    assert_eq!((i, a.epfd, a.tfd, a.data), (1, Some(5), 4, 9));
    let (i, a) = place(&tasks, &ep, &ep.tfd[1]).unwrap();
    assert_eq!((i, a.epfd, a.tfd), (1, Some(5), 6));
    assert_eq!(a.via, Via::Direct);
    // Target 9 is held by no task: lent by criu, at the first task holding the epoll.
    let (i, a) = place(&tasks, &ep, &ep.tfd[2]).unwrap();
    assert_eq!((i, a.epfd, a.via), (0, Some(3), Via::Lend));
    // Target 2 held at another number than the registered 8: put there for the call.
    let moved = ep_entry(1, &[(2, 8)]);
    let (i, a) = place(&tasks, &moved, &moved.tfd[0]).unwrap();
    assert_eq!((i, a.via), (0, Via::Dup(4)));
    // CRIU's images (registration ids are the epoll's): by number only.
    let criu = ep_entry(1, &[(1, 4), (1, 8)]);
    let (i, a) = place(&tasks, &criu, &criu.tfd[0]).unwrap();
    assert_eq!((i, a.via), (0, Via::Direct));
    // An epoll no task holds goes to a task holding its target, lent.
    let flying = ep_entry(5, &[(3, 4)]);
    let (i, a) = place(&tasks, &flying, &flying.tfd[0]).unwrap();
    assert_eq!((i, a.epfd, a.via), (1, None, Via::Direct));
    let lonely = ep_entry(1, &[(1, 8)]);
    let err = place(&tasks, &lonely, &lonely.tfd[0])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("target fd 8") && err.contains("epoll file id 1"),
        "{err}"
    );
}

#[test]
fn epoll_event_layout() {
    let b = event_bytes(0x8000_0001, 0x0102_0304_0506_0708);
    assert_eq!(b.len(), std::mem::size_of::<libc::epoll_event>());
    assert_eq!(&b[..4], &0x8000_0001u32.to_ne_bytes());
    assert_eq!(&b[b.len() - 8..], &0x0102_0304_0506_0708u64.to_ne_bytes());
}

#[test]
fn restore_creates_an_empty_epoll_and_fails_loudly_without_tasks() {
    let mut ctx = MemoryImages::new(0);
    let entry = criu_proto::images::FileEntry {
        r#type: FdTypes::Eventpoll as i32,
        id: 4,
        epfd: Some(EventpollFileEntry {
            id: 4,
            flags: libc::O_NONBLOCK as u32 | 2,
            ..ep_entry(4, &[(1, 5)])
        }),
        ..Default::default()
    };
    let mut r = PLUGIN
        .start_restore(&mut ctx, std::slice::from_ref(&entry))
        .unwrap();
    let fd = r.open_file(&mut ctx, &entry).unwrap();
    let d = own_fd_desc(fd.as_fd()).unwrap();
    assert_eq!(d.link, LINK);
    assert_ne!(d.fdinfo.file_flags() & libc::O_NONBLOCK as u32, 0);
    assert!(parse_registrations(&d.fdinfo.raw).unwrap().is_empty());
    // With a task holding the epoll and the target, the fake task refuses the mmap
    // (ENOSYS): the error names it.
    criu_plugin_api::write_message(&mut ctx, criu_plugin_api::ImageRef::FILES, &entry, &[])
        .unwrap();
    ctx.tasks = vec![TaskIds {
        pid: 10,
        tids: vec![10],
    }];
    ctx.host_pids.insert(10, 10);
    ctx.task_fds
        .insert(10, vec![fd_entry(3, 4), fd_entry(5, 1)]);
    let err = r.finish(&mut ctx, &[]).unwrap_err().to_string();
    assert!(err.contains("mmap") || err.contains("/proc/10/fd"), "{err}");
    let _ = ctx.current_pid();
}

fn fd_entry(n: i32, id: u32) -> TaskFd {
    fd(n, id)
}
