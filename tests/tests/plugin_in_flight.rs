//! Files in flight (plugin API 0.6) end to end: `wl_in_flight` holds a datagram socketpair
//! whose queue carries, in one `SCM_RIGHTS` message, a pipe with data that no task holds
//! any more, a file the task also holds (same description, offset 5) and the receiving
//! socket itself. A test plugin linked into this binary takes over the workload's two
//! sockets: at dump it peeks the message into criu and hands each carried fd to
//! `dump_file_in_flight` (the pipe goes to the pipes plugin with its data, the file to the
//! files plugin under the task's own id, the socket gets its own id back); at restore it
//! recreates the pair and queues the message again with `open_file_by_id`. The workload
//! receives it after the restore and checks everything itself.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use criu_core::dump::{DumpOptions, dump};
use criu_core::image::{ImageDir, ImageKind};
use criu_core::restore::{RestoreOptions, RestoreOutcome, restore};
use criu_plugin_api::{
    API_VERSION, DumpContext, FdDesc, FdHandler, FileRestorer, Plugin, PluginError, PluginInfo,
    PluginRegistration, RestoreContext,
};
use criu_proto::images::{FdTypes, FileEntry, FownEntry, SkOptsEntry, UnixSkEntry};
use criu_tests::{PidGuard, ScratchDir, skip_unless_root, wait_pid_gone};
use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg,
    sendmsg, socketpair,
};
use restore_common::{lines, spawn_bg, wait_lines};

mod restore_common;
use criu_plugin_files as _;
use criu_plugin_pipes as _;

/// Marks the entries of this plugin (`unix_sk_entry.name_dir`).
const MARK: &str = "inflighttest";
/// The workload's pid while a test runs; the plugin claims nothing of other processes.
static ARMED: Mutex<Option<i32>> = Mutex::new(None);

struct InFlightTest;

fn err(why: String) -> PluginError {
    PluginError::Unsupported {
        resource: "inflighttest".into(),
        pid: 0,
        hint: why,
    }
}

/// The plugin's own file for the socket with a queued message: the carried ids.
fn queue_file(id: u32) -> String {
    format!("inflighttest-{id}.txt")
}

impl Plugin for InFlightTest {
    fn info(&self) -> PluginInfo {
        PluginInfo {
            name: "inflighttest",
            version: "0",
            // Takes the sockets over from any built-in plugin.
            priority: 50,
            api_version: API_VERSION,
        }
    }
    fn fd_handler(&self) -> Option<&dyn FdHandler> {
        Some(self)
    }
}

/// Peeks the queued message of `sock` (not consumed): payload and the fds now in criu.
fn peek(sock: RawFd) -> Result<(Vec<u8>, Vec<OwnedFd>), PluginError> {
    let mut buf = [0u8; 64];
    let mut space = nix::cmsg_space!([RawFd; 8]);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = match recvmsg::<()>(
        sock,
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
    ) {
        Ok(m) => m,
        Err(nix::errno::Errno::EAGAIN) => return Ok((Vec::new(), Vec::new())),
        Err(e) => return Err(err(format!("recvmsg(MSG_PEEK): {e}"))),
    };
    let mut fds = Vec::new();
    for c in msg.cmsgs().map_err(|e| err(format!("cmsgs: {e}")))? {
        if let ControlMessageOwned::ScmRights(got) = c {
            // SAFETY: recvmsg just installed these numbers in this process, owned by no one.
            fds.extend(got.into_iter().map(|f| unsafe { OwnedFd::from_raw_fd(f) }));
        }
    }
    let len = msg.bytes;
    Ok((buf[..len].to_vec(), fds))
}

impl FdHandler for InFlightTest {
    fn fd_types(&self) -> &[FdTypes] {
        &[FdTypes::Unixsk]
    }
    fn claims(&self, fd: &FdDesc) -> bool {
        let armed = *ARMED.lock().unwrap_or_else(|p| p.into_inner());
        armed == Some(fd.pid) && fd.link.starts_with("socket:")
    }
    fn dump_file(
        &self,
        ctx: &mut dyn DumpContext,
        fd: &FdDesc,
        id: u32,
    ) -> Result<FileEntry, PluginError> {
        if fd.is_in_flight() {
            return Err(err(format!("{} was not expected in flight", fd.describe())));
        }
        let (payload, carried) = peek(fd.file().as_raw_fd())?;
        if !carried.is_empty() {
            let mut ids = Vec::new();
            for f in &carried {
                ids.push(ctx.dump_file_in_flight(fd.pid, std::os::fd::AsFd::as_fd(f))?);
            }
            let text = format!(
                "{} {}",
                String::from_utf8_lossy(&payload),
                ids.iter().map(u32::to_string).collect::<Vec<_>>().join(" ")
            );
            ctx.write_plugin_file(&queue_file(id), text.as_bytes())?;
        }
        Ok(FileEntry {
            r#type: FdTypes::Unixsk as i32,
            id,
            usk: Some(UnixSkEntry {
                id,
                ino: fd.stat.ino as u32,
                r#type: libc::SOCK_DGRAM as u32,
                state: 1,
                fown: FownEntry::default(),
                opts: SkOptsEntry::default(),
                name_dir: Some(MARK.into()),
                ..Default::default()
            }),
            ..Default::default()
        })
    }
    fn restores(&self, entry: &FileEntry) -> bool {
        entry
            .usk
            .as_ref()
            .is_some_and(|u| u.name_dir.as_deref() == Some(MARK))
    }
    fn start_restore(
        &self,
        _: &mut dyn RestoreContext,
        _: &[FileEntry],
    ) -> Result<Box<dyn FileRestorer>, PluginError> {
        Ok(Box::new(PairRestorer { pair: None }))
    }
}

/// Recreates the one socketpair: the end with a queue file gets the message back.
struct PairRestorer {
    pair: Option<(OwnedFd, OwnedFd)>,
}

impl FileRestorer for PairRestorer {
    fn open_file(
        &mut self,
        ctx: &mut dyn RestoreContext,
        entry: &FileEntry,
    ) -> Result<OwnedFd, PluginError> {
        if self.pair.is_none() {
            let p = socketpair(
                AddressFamily::Unix,
                SockType::Datagram,
                None,
                SockFlag::SOCK_CLOEXEC,
            )
            .map_err(|e| err(format!("socketpair: {e}")))?;
            self.pair = Some(p);
        }
        let Some((a, b)) = &self.pair else {
            unreachable!("created above")
        };
        let Some(queue) = ctx.read_plugin_file(&queue_file(entry.id))? else {
            return b.try_clone().map_err(|e| err(format!("dup: {e}")));
        };
        let text = String::from_utf8_lossy(&queue).into_owned();
        let mut words = text.split_whitespace();
        let payload = words.next().unwrap_or_default().to_string();
        let mut fds: Vec<OwnedFd> = Vec::new();
        for w in words {
            let id: u32 = w
                .parse()
                .map_err(|_| err(format!("queue file says {text:?}")))?;
            // Its own socket: opened here (the core cannot call this restorer meanwhile).
            fds.push(if id == entry.id {
                a.try_clone().map_err(|e| err(format!("dup: {e}")))?
            } else {
                ctx.open_file_by_id(id)?
            });
        }
        let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
        sendmsg::<()>(
            b.as_raw_fd(),
            &[IoSlice::new(payload.as_bytes())],
            &[ControlMessage::ScmRights(&raw)],
            MsgFlags::empty(),
            None,
        )
        .map_err(|e| err(format!("sendmsg: {e}")))?;
        a.try_clone().map_err(|e| err(format!("dup: {e}")))
    }
}

static PLUGIN: InFlightTest = InFlightTest;
inventory::submit! { PluginRegistration::new(&PLUGIN) }

/// Disarms the plugin even when the test fails.
struct Armed;

impl Armed {
    fn new(pid: i32) -> Self {
        *ARMED.lock().unwrap_or_else(|p| p.into_inner()) = Some(pid);
        Armed
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        *ARMED.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

#[test]
fn files_in_flight_are_dumped_by_their_plugins_and_sent_again() {
    if skip_unless_root("files_in_flight_are_dumped_by_their_plugins_and_sent_again") {
        return;
    }
    let scratch = ScratchDir::new("in-flight");
    let images = scratch.path().join("images");
    std::fs::create_dir_all(&images).expect("images dir");
    let report = scratch.path().join("report.txt");
    let data = scratch.path().join("data.txt");
    let go = scratch.path().join("go");
    std::fs::write(&data, "0123456789abcdef\n").expect("data file");
    let arg = |p: &Path| p.to_str().expect("utf-8 path").to_string();
    let pid = spawn_bg(
        env!("CARGO_BIN_EXE_wl_in_flight"),
        &[&arg(&report), &arg(&data), &arg(&go)],
    );
    let guard = PidGuard::new(pid);
    let first = wait_lines(&report, 1, Duration::from_secs(20));
    assert_eq!(first[0], format!("ready {pid}"));
    let _armed = Armed::new(pid);

    let mut d = DumpOptions::new(pid, &images);
    d.leave_stopped = true;
    dump(&d).unwrap_or_else(|e| panic!("dump: {e:?}"));
    drop(guard);
    assert!(
        wait_pid_gone(pid, Duration::from_secs(10)),
        "{pid} still taken"
    );

    // One REG entry for the data file (the task's fd and the one in flight share it), one
    // pipe (only in flight) whose data went to pipes-data.img, two sockets.
    let dir = ImageDir::open(&images).expect("images");
    let files: Vec<FileEntry> = dir.read_all(ImageKind::Files, 0).expect("files.img");
    let count = |t: FdTypes| files.iter().filter(|f| f.r#type == t as i32).count();
    let data_name = arg(&data);
    let regs: Vec<_> = files
        .iter()
        .filter_map(|f| f.reg.as_ref())
        .filter(|r| r.name == data_name)
        .collect();
    assert_eq!(regs.len(), 1, "{files:?}");
    assert_eq!(regs[0].pos, 5);
    assert_eq!(
        (count(FdTypes::Pipe), count(FdTypes::Unixsk)),
        (1, 2),
        "{files:?}"
    );
    assert!(images.join("pipes-data.img").exists());
    let queue: Vec<String> = std::fs::read_dir(&images)
        .expect("images")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("inflighttest-"))
        .collect();
    let [queue] = queue.as_slice() else {
        panic!("queue files {queue:?}")
    };
    let text = std::fs::read_to_string(images.join(queue)).expect("queue file");
    let ids: Vec<u32> = text
        .split_whitespace()
        .skip(1)
        .map(|w| w.parse().expect("id"))
        .collect();
    let own: u32 = queue["inflighttest-".len()..queue.len() - 4]
        .parse()
        .expect("own id");
    assert_eq!(ids.len(), 3, "{text}");
    assert_eq!(
        ids[1],
        files
            .iter()
            .find(|f| f.reg.is_some() && f.reg.as_ref().unwrap().name == data_name)
            .unwrap()
            .id
    );
    assert_eq!(ids[2], own, "a socket carrying itself gets its own id");

    // An entry no task holds (the pipe) is fine for the image checks, as for the restore.
    criu_core::check_images::check_images(&images).unwrap_or_else(|e| panic!("check-images: {e}"));

    let _restored = PidGuard::new(pid);
    let out = restore(&RestoreOptions {
        images_dir: images.clone(),
        detach: true,
        ..RestoreOptions::default()
    })
    .unwrap_or_else(|e| panic!("restore: {e:?}"));
    assert_eq!(out, RestoreOutcome::Detached { root: pid });
    std::fs::write(&go, "").expect("go file");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let last = loop {
        let l = lines(&report);
        if l.len() > 1 || std::time::Instant::now() > deadline {
            break l;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(last.last().map(String::as_str), Some("ok"), "{last:?}");
}
