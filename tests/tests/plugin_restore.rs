//! Dump, kill, restore through the core with the built-in plugins opening the files: the
//! restored `sleep` must hold the same pipe (with its data), the same unlinked file (contents
//! and offset) and the same FIFO (with its data), checked from outside through /proc.

mod plugin_support;

use std::io::{Read, Seek, SeekFrom};
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use criu_core::dump::{DumpOptions, dump};
use criu_core::restore::{FileOpener, RestoreOptions, RestoreOutcome, restore_with};
use criu_plugin_api::{FileRestore, ImageRef, builtin_plugins, read_messages};
use criu_proto::images::FileEntry;
use criu_tests::{PidGuard, ScratchDir, skip_unless_root, wait_pid_gone};
use plugin_support::{DirContext, FIFO_DATA, PIPE_DATA, SleepTask, fdinfo_field, read_task_pipe};

// Link the built-in plugins (their inventory registrations).
use criu_plugin_files as _;
use criu_plugin_pipes as _;

/// The core's file opener backed by the plugin registry (what the restore will do itself
/// once it uses the plugins directly).
struct PluginOpener {
    restore: FileRestore<'static>,
    ctx: DirContext,
}

impl FileOpener for PluginOpener {
    fn open(&mut self, entry: &FileEntry) -> Result<OwnedFd, String> {
        self.restore
            .open(&mut self.ctx, entry)
            .map(|(fd, _)| fd)
            .map_err(|e| e.to_string())
    }
}

#[test]
fn restored_task_has_its_pipe_ghost_and_fifo_back() {
    if skip_unless_root("restored_task_has_its_pipe_ghost_and_fifo_back") {
        return;
    }
    let _serial = plugin_support::serial();
    let Some(task) = SleepTask::start("plugin-restore-work") else {
        return;
    };
    let imgs = ScratchDir::new("plugin-restore-imgs");
    let pid = task.pid();
    let ino_before = std::fs::metadata(&task.fifo_path).unwrap();

    dump(&DumpOptions::new(pid, imgs.path())).expect("dump");
    let SleepTask {
        guard,
        work: _work,
        ghost_path,
        ghost_content,
        fifo_path: _,
    } = task;
    // Reap it: the pid must be free for the restore.
    drop(guard);
    assert!(wait_pid_gone(pid, Duration::from_secs(10)));

    let (root, opener) = restore_with_plugins(&imgs);
    let _restored = PidGuard::new(root);
    assert_eq!(root, pid);
    // The restorer's kept fds (other pipe ends, FIFO holder, ghost) are ours to drop now.
    drop(opener);

    // fd 0: the pipe and its data.
    assert_eq!(read_task_pipe(pid, 0), PIPE_DATA);
    // fd 1: the unlinked file, its contents and offset.
    let link = std::fs::read_link(format!("/proc/{pid}/fd/1")).unwrap();
    let link = link.to_string_lossy();
    assert!(link.ends_with(" (deleted)"), "{link}");
    assert!(
        link.starts_with(ghost_path.parent().unwrap().to_str().unwrap()),
        "{link}"
    );
    assert_eq!(fdinfo_field(pid, 1, "pos"), "3");
    let mut f = std::fs::File::open(format!("/proc/{pid}/fd/1")).unwrap();
    let mut all = Vec::new();
    f.seek(SeekFrom::Start(0)).unwrap();
    f.read_to_end(&mut all).unwrap();
    assert_eq!(all, ghost_content);
    // fd 2: the same FIFO, its data back.
    let st = std::fs::metadata(format!("/proc/{pid}/fd/2")).unwrap();
    assert_eq!(
        (st.dev(), st.ino()),
        (ino_before.dev(), ino_before.ino()),
        "fd 2 is {:?}",
        std::fs::read_link(format!("/proc/{pid}/fd/2"))
    );
    assert_eq!(read_task_pipe(pid, 2), FIFO_DATA);
    // Still running, and no fd of the restorer leaked into it.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let state = stat.rsplit_once(')').unwrap().1.trim_start().chars().next();
    assert!(matches!(state, Some('S' | 'R')), "state {state:?}");
    let fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let dumped: Vec<u32> = {
        let names: Vec<String> = std::fs::read_dir(imgs.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let fdinfo = names.iter().find(|n| n.starts_with("fdinfo-")).unwrap();
        let raw = std::fs::read(imgs.path().join(fdinfo)).unwrap();
        let start = criu_proto::framing::check_header(criu_proto::ImageKind::Fdinfo, &raw).unwrap();
        let mut cur = criu_plugin_api::ImageCursor::new(ImageRef::FILES, &raw[start..]);
        let mut v = Vec::new();
        while let Some(e) = cur.next_entry::<criu_proto::images::FdinfoEntry>().unwrap() {
            v.push(e.fd);
        }
        v
    };
    assert_eq!(fds.len(), dumped.len(), "fds {fds:?}, dumped {dumped:?}");
}

/// Restores `files.img` of `imgs` through the core with the plugins; returns the root pid.
fn restore_with_plugins(imgs: &ScratchDir) -> (i32, PluginOpener) {
    let mut ctx = DirContext::new(imgs.path());
    let files: Vec<FileEntry> = read_messages(&mut ctx, ImageRef::FILES).expect("files.img");
    let restore = FileRestore::start(&builtin_plugins(), &mut ctx, &files)
        .unwrap_or_else(|(p, e)| panic!("plugin {p}: {e}"));
    let mut opener = PluginOpener { restore, ctx };
    let opts = RestoreOptions {
        images_dir: imgs.path().to_path_buf(),
        detach: true,
        shell_job: true,
        ..RestoreOptions::default()
    };
    match restore_with(&opts, &mut opener).expect("restore") {
        RestoreOutcome::Detached { root } => (root, opener),
        other => panic!("not detached: {other:?}"),
    }
}

fn same_inode(pid: i32, a: i32, b: i32) -> bool {
    let m = |fd| std::fs::metadata(format!("/proc/{pid}/fd/{fd}")).unwrap();
    let (x, y) = (m(a), m(b));
    (x.dev(), x.ino()) == (y.dev(), y.ino())
}

/// Both ends of one pipe in one task (data inside, write end non-blocking) and a regular
/// file at an offset come back as one pipe and the same file.
#[test]
fn restored_pipe_ends_share_one_pipe() {
    if skip_unless_root("restored_pipe_ends_share_one_pipe") {
        return;
    }
    let _serial = plugin_support::serial();
    if !std::path::Path::new(plugin_support::SLEEP).exists() {
        eprintln!("skipped: sleep not present");
        return;
    }
    let work = ScratchDir::new("plugin-restore-ends");
    let imgs = ScratchDir::new("plugin-restore-ends-imgs");
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    nix::unistd::write(&w, b"both ends").unwrap();
    nix::fcntl::fcntl(
        &w,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )
    .unwrap();
    let data = work.path().join("data.txt");
    std::fs::write(&data, b"0123456789").unwrap();
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&data)
        .unwrap();
    f.seek(SeekFrom::Start(4)).unwrap();
    let guard = plugin_support::spawn_sleep(r.into(), w.into(), f.into());
    let pid = guard.pid();
    assert!(same_inode(pid, 0, 1));

    dump(&DumpOptions::new(pid, imgs.path())).expect("dump");
    drop(guard);
    assert!(wait_pid_gone(pid, Duration::from_secs(10)));

    let (root, opener) = restore_with_plugins(&imgs);
    let _restored = PidGuard::new(root);
    drop(opener);
    assert!(same_inode(pid, 0, 1), "fd 0 and 1 are no longer one pipe");
    let flags = |fd| u32::from_str_radix(&fdinfo_field(pid, fd, "flags"), 8).unwrap();
    assert_ne!(
        flags(1) & libc::O_NONBLOCK as u32,
        0,
        "write end lost O_NONBLOCK"
    );
    assert_eq!(flags(1) & libc::O_ACCMODE as u32, libc::O_WRONLY as u32);
    assert_eq!(flags(0) & libc::O_NONBLOCK as u32, 0);
    assert_eq!(read_task_pipe(pid, 0), b"both ends");
    assert_eq!(fdinfo_field(pid, 2, "pos"), "4");
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/fd/2")).unwrap(),
        data,
        "fd 2 is not the data file"
    );
}
