use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use criu_plugin_api::testing::{MemoryImages, own_fd_desc};
use criu_plugin_api::{FdHandler, ImageRef, TaskFd, TaskIds, read_messages, write_message};
use criu_proto::images::{FileEntry, PidfdEntry};
use nix::errno::Errno;
use proptest::prelude::*;

use super::dump::{Target, parse_target};
use super::*;

#[test]
fn fdinfo_targets() {
    let info = |raw: &str| criu_plugin_api::FdInfo {
        raw: raw.into(),
        ..Default::default()
    };
    let live = info(
        "pos:\t0\nflags:\t02004002\nmnt_id:\t4\nino:\t450132\nPid:\t23053\nNSpid:\t23053\t12\n",
    );
    assert_eq!(
        parse_target(&live).unwrap(),
        Target::Live {
            pid: 23053,
            nspid: 12
        }
    );
    assert_eq!(
        parse_target(&info("Pid:\t-1\nNSpid:\t-1\n")).unwrap(),
        Target::Reaped
    );
    assert_eq!(parse_target(&info("Pid:\t0\n")).unwrap(), Target::Hidden);
    assert!(parse_target(&info("Pid:\tx\n")).is_err());
    assert!(parse_target(&info("Pid:\t-5\n")).is_err());
    assert!(parse_target(&info("pos:\t0\n")).is_err());
}

/// A child that waits for SIGKILL (the caller kills and reaps it).
fn sleeper() -> nix::unistd::Pid {
    let c = sys::fork_exiting(None).unwrap();
    let pid = c.pid;
    std::mem::forget(c); // its pipe end stays open: it waits until killed
    pid
}

fn kill_reap(pid: nix::unistd::Pid) {
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    let _ = nix::sys::wait::waitpid(pid, None);
}

fn dump(ctx: &mut MemoryImages, fd: &OwnedFd) -> Result<FileEntry, PluginError> {
    let desc = own_fd_desc(fd.as_fd()).unwrap();
    assert!(PLUGIN.claims(&desc));
    let id = ctx.new_file_id();
    PLUGIN.dump_file(ctx, &desc, id)
}

fn pollable(fd: &OwnedFd) -> bool {
    let mut p = [nix::poll::PollFd::new(
        fd.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    nix::poll::poll(&mut p, nix::poll::PollTimeout::ZERO).unwrap() == 1
}

fn send_signal0(fd: &OwnedFd) -> Result<(), Errno> {
    #[allow(unsafe_code)]
    // SAFETY: pidfd_send_signal with a valid fd, signal 0 and no siginfo.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_send_signal, fd.as_raw_fd(), 0, 0, 0) };
    if r < 0 { Err(Errno::last()) } else { Ok(()) }
}

#[test]
fn live_target_must_be_in_the_tree() {
    let child = sleeper();
    let fd = sys::pidfd_open(child.as_raw(), PIDFD_NONBLOCK).unwrap();
    let mut ctx = MemoryImages::new(0);
    let err = dump(&mut ctx, &fd).unwrap_err().to_string();
    assert!(
        err.contains(&format!("process {child}")) && err.contains("not in the dumped tree"),
        "{err}"
    );
    ctx.tasks = vec![TaskIds {
        pid: child.as_raw(),
        tids: vec![child.as_raw()],
    }];
    let e = dump(&mut ctx, &fd).unwrap();
    let p = e.pidfd.unwrap();
    assert_eq!(p.nspid, child.as_raw());
    assert_eq!(p.flags, PIDFD_NONBLOCK);
    assert_eq!(p.criu_rs_exit_status, None);
    kill_reap(child);
}

#[test]
fn reaped_targets_keep_their_status_and_inode() {
    let c = sys::fork_exiting(Some(7 << 8)).unwrap();
    let a = sys::pidfd_open(c.pid.as_raw(), 0).unwrap();
    let b = sys::pidfd_open(c.pid.as_raw(), PIDFD_NONBLOCK).unwrap();
    assert_eq!(c.finish().unwrap(), 7 << 8);
    let mut ctx = MemoryImages::new(0);
    let ea = dump(&mut ctx, &a).unwrap();
    let eb = dump(&mut ctx, &b).unwrap();
    for e in [&ea, &eb] {
        let p = e.pidfd.as_ref().unwrap();
        assert_eq!(p.nspid, -1);
        assert_eq!(p.criu_rs_exit_status, Some(7 << 8));
        write_message(&mut ctx, ImageRef::FILES, e, &[]).unwrap();
    }
    let entries: Vec<FileEntry> = read_messages(&mut ctx, ImageRef::FILES).unwrap();
    let mut r = PLUGIN.start_restore(&mut ctx, &entries).unwrap();
    let ra = r.open_file(&mut ctx, &entries[0]).unwrap();
    let rb = r.open_file(&mut ctx, &entries[1]).unwrap();
    for fd in [&ra, &rb] {
        assert_eq!(sys::exit_status(fd.as_fd()).unwrap(), Some(7 << 8));
        assert!(pollable(fd), "a reaped target polls readable");
        assert_eq!(send_signal0(fd), Err(Errno::ESRCH));
    }
    let ino = |fd: &OwnedFd| nix::sys::stat::fstat(fd).unwrap().st_ino;
    assert_eq!(ino(&ra), ino(&rb), "one helper per dumped target");
    let fl = nix::fcntl::fcntl(&rb, nix::fcntl::FcntlArg::F_GETFL).unwrap();
    assert_ne!(fl & libc::O_NONBLOCK, 0);
    assert!(r.open_file(&mut ctx, &entries[0]).is_err(), "opened twice");
}

#[test]
fn signalled_target_and_criu_images_without_status() {
    let mut entries = Vec::new();
    for (id, (ino, status)) in [(1, Some(libc::SIGTERM)), (2, None)]
        .into_iter()
        .enumerate()
    {
        entries.push(FileEntry {
            r#type: FdTypes::Pidfd as i32,
            id: id as u32 + 1,
            pidfd: Some(PidfdEntry {
                id: id as u32 + 1,
                ino,
                nspid: -1,
                criu_rs_exit_status: status,
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    let mut ctx = MemoryImages::new(0);
    let mut r = PLUGIN.start_restore(&mut ctx, &entries).unwrap();
    let term = r.open_file(&mut ctx, &entries[0]).unwrap();
    let kill = r.open_file(&mut ctx, &entries[1]).unwrap();
    assert_eq!(sys::exit_status(term.as_fd()).unwrap(), Some(libc::SIGTERM));
    assert_eq!(sys::exit_status(kill.as_fd()).unwrap(), Some(libc::SIGKILL));
}

fn live_entry(id: u32, nspid: i32, flags: u32) -> FileEntry {
    FileEntry {
        r#type: FdTypes::Pidfd as i32,
        id,
        pidfd: Some(PidfdEntry {
            id,
            ino: 5,
            flags,
            nspid,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A restore context whose `restored_pid` knows only `pids` (the core's answers for the
/// tree's processes, zombies included), the rest served by [`MemoryImages`].
struct Tree {
    images: MemoryImages,
    pids: Vec<i32>,
}

impl criu_plugin_api::RestoreContext for Tree {
    fn read_image(&mut self, image: ImageRef) -> Result<Option<Vec<u8>>, PluginError> {
        self.images.read_image(image)
    }
    fn read_plugin_file(&mut self, name: &str) -> Result<Option<Vec<u8>>, PluginError> {
        self.images.read_plugin_file(name)
    }
    fn current_pid(&self) -> i32 {
        self.images.current_pid()
    }
    fn restored_pid(&self, old: i32) -> Option<i32> {
        self.pids.contains(&old).then_some(old)
    }
    fn host_pid(&self, image_pid: i32) -> Option<i32> {
        self.pids.contains(&image_pid).then_some(image_pid)
    }
    fn keep_fd(&mut self, key: &str, fd: OwnedFd) -> Result<(), PluginError> {
        self.images.keep_fd(key, fd)
    }
    fn kept_fd(&self, key: &str) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.images.kept_fd(key)
    }
    fn options(&self) -> &criu_plugin_api::RestoreOptions {
        criu_plugin_api::RestoreContext::options(&self.images)
    }
    fn tasks(&self) -> Vec<TaskIds> {
        self.images.tasks.clone()
    }
}

#[test]
fn bad_images_name_the_image_and_entry() {
    let mut ctx = Tree {
        images: MemoryImages::new(0),
        // 100 with thread 101, and 102 a zombie (a pid, no task entry).
        pids: vec![100, 102],
    };
    ctx.images.tasks = vec![TaskIds {
        pid: 100,
        tids: vec![100, 101],
    }];
    let err = |ctx: &mut Tree, e: FileEntry| {
        PLUGIN
            .start_restore(ctx, &[e])
            .err()
            .expect("refused")
            .to_string()
    };
    let msg = err(&mut ctx, live_entry(9, 4242, 0));
    assert!(
        msg.contains("files.img") && msg.contains("PIDFD entry 9") && msg.contains("4242"),
        "{msg}"
    );
    // A thread is only a target with PIDFD_THREAD.
    assert!(err(&mut ctx, live_entry(3, 101, 0)).contains("entry 3"));
    assert!(err(&mut ctx, live_entry(3, 0, 0)).contains("pid 0"));
    for ok in [live_entry(3, 101, PIDFD_THREAD), live_entry(4, 102, 0)] {
        assert!(PLUGIN.start_restore(&mut ctx, &[ok]).is_ok());
    }
    let mut e = live_entry(4, 100, 0);
    e.pidfd = None;
    assert!(err(&mut ctx, e).contains("PIDFD entry 4 without pidfd"));
}

#[test]
fn live_pidfds_are_installed_once_the_tasks_exist() {
    let child = sleeper();
    let me = std::process::id() as i32;
    let mut ctx = MemoryImages::new(0);
    ctx.tasks = vec![
        TaskIds {
            pid: me,
            tids: vec![me],
        },
        TaskIds {
            pid: child.as_raw(),
            tids: vec![child.as_raw()],
        },
    ];
    let e = live_entry(2, child.as_raw(), PIDFD_NONBLOCK);
    write_message(&mut ctx, ImageRef::FILES, &e, &[]).unwrap();
    ctx.task_fds.insert(
        me,
        vec![TaskFd {
            fd: 7,
            id: 2,
            fd_type: FdTypes::Pidfd as i32,
            cloexec: true,
        }],
    );
    let mut r = PLUGIN
        .start_restore(&mut ctx, std::slice::from_ref(&e))
        .unwrap();
    let stand_in = r.open_file(&mut ctx, &e).unwrap();
    assert!(
        own_fd_desc(stand_in.as_fd())
            .unwrap()
            .fdinfo
            .raw
            .contains(&format!("Pid:\t{me}"))
    );
    // The tasks exist from here on: criu knows their pids in its namespace.
    ctx.host_pids.insert(me, me);
    ctx.host_pids.insert(child.as_raw(), child.as_raw());
    PLUGIN
        .restore_stage(RestoreStage::AfterTasksExist, &mut ctx)
        .unwrap();
    assert_eq!(ctx.installed.len(), 1);
    let (pid, fd, target, cloexec) = &ctx.installed[0];
    assert_eq!((*pid, *target, *cloexec), (me, 7, true));
    let info = own_fd_desc(fd.as_fd()).unwrap().fdinfo;
    assert!(info.raw.contains(&format!("Pid:\t{child}")), "{}", info.raw);
    assert_ne!(info.file_flags() & PIDFD_NONBLOCK, 0);
    kill_reap(child);
}

proptest! {
    /// Our exit-status field round-trips and leaves CRIU's part of the entry as CRIU writes it.
    #[test]
    fn entry_round_trip(id: u32, ino: u32, flags: u32, nspid: i32, status: Option<i32>) {
        use prost::Message;
        let e = PidfdEntry { id, ino, flags, nspid, criu_rs_exit_status: status, ..Default::default() };
        let bytes = e.encode_to_vec();
        prop_assert_eq!(PidfdEntry::decode(bytes.as_slice()).unwrap(), e);
        let criu = PidfdEntry { criu_rs_exit_status: None, ..e };
        let plain = criu.encode_to_vec();
        prop_assert_eq!(&bytes[..plain.len()], plain.as_slice());
        prop_assert_eq!(PidfdEntry::decode(plain.as_slice()).unwrap(), criu);
    }
}
