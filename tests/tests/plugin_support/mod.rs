//! Shared by the plugin end-to-end tests: a `sleep` task holding a pipe, an unlinked file and
//! a FIFO with data in them, and a [`RestoreContext`] over an images directory.

#![allow(dead_code)]

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use criu_plugin_api::{ImageRef, PluginError, RestoreContext, RestoreOptions};
use criu_tests::{PidGuard, ScratchDir};
use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;

pub const SLEEP: &str = "/usr/bin/sleep";

/// One dump/restore at a time in a test binary: ptrace, fd numbers and clone3 are
/// process-wide, and the harness runs tests on parallel threads.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}
pub const PIPE_DATA: &[u8] = b"still in the pipe";
pub const FIFO_DATA: &[u8] = b"still in the fifo";

/// The task and what it holds: fd 0 the read end of a pipe holding [`PIPE_DATA`] (no other
/// end open), fd 1 an unlinked file at offset 3, fd 2 a FIFO opened read-write holding
/// [`FIFO_DATA`].
pub struct SleepTask {
    pub guard: PidGuard,
    pub work: ScratchDir,
    pub ghost_path: PathBuf,
    pub ghost_content: Vec<u8>,
    pub fifo_path: PathBuf,
}

impl SleepTask {
    pub fn pid(&self) -> i32 {
        self.guard.pid()
    }

    /// Starts it; `None` (with a printed reason) when `sleep` is missing.
    pub fn start(name: &str) -> Option<SleepTask> {
        if !Path::new(SLEEP).exists() {
            eprintln!("skipped: {SLEEP} not present");
            return None;
        }
        let work = ScratchDir::new(name);
        let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
        File::from(w).write_all(PIPE_DATA).unwrap();
        let ghost_path = work.path().join("gone.log");
        let ghost_content: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        let mut ghost = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&ghost_path)
            .unwrap();
        ghost.write_all(&ghost_content).unwrap();
        ghost.seek(SeekFrom::Start(3)).unwrap();
        std::fs::remove_file(&ghost_path).unwrap();
        let fifo_path = work.path().join("fifo");
        nix::unistd::mkfifo(&fifo_path, Mode::from_bits_truncate(0o600)).unwrap();
        let fifo: OwnedFd =
            open(&fifo_path, OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty()).unwrap();
        File::from(fifo.try_clone().unwrap())
            .write_all(FIFO_DATA)
            .unwrap();
        // Reaped by the PidGuard below (kill + waitpid by pid), even when the test fails.
        #[allow(clippy::zombie_processes)]
        let child = Command::new(SLEEP)
            .arg("600")
            .stdin(Stdio::from(r))
            .stdout(Stdio::from(ghost))
            .stderr(Stdio::from(fifo))
            .spawn()
            .expect("start sleep");
        let guard = PidGuard::new(child.id() as i32);
        wait_exec(guard.pid(), SLEEP);
        wait_in_nanosleep(guard.pid());
        Some(SleepTask {
            guard,
            work,
            ghost_path,
            ghost_content,
            fifo_path,
        })
    }
}

/// Starts `sleep 600` with the given stdio and waits for it to exec.
pub fn spawn_sleep(stdin: Stdio, stdout: Stdio, stderr: Stdio) -> PidGuard {
    // Reaped by the PidGuard (kill + waitpid by pid), even when the test fails.
    #[allow(clippy::zombie_processes)]
    let child = Command::new(SLEEP)
        .arg("600")
        .stdin(stdin)
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .expect("start sleep");
    let guard = PidGuard::new(child.id() as i32);
    wait_exec(guard.pid(), SLEEP);
    wait_in_nanosleep(guard.pid());
    guard
}

/// Waits until `pid` sleeps in `clock_nanosleep`/`nanosleep`: right after exec, `sleep` still
/// opens and closes files (locale data) of its own, and a dump then would see a passing fd.
fn wait_in_nanosleep(pid: i32) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let call = std::fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
        let nr = call.split_whitespace().next().unwrap_or("");
        if nr == libc::SYS_clock_nanosleep.to_string() || nr == libc::SYS_nanosleep.to_string() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "sleep {pid} not in nanosleep: {call:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Waits until `pid` runs `exe` (the spawned child has exec'd).
pub fn wait_exec(pid: i32, exe: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|p| p == Path::new(exe)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("pid {pid} did not exec {exe}");
}

/// What is buffered in the pipe or FIFO at fd `fd` of `pid`, read through a new read
/// description (consumes it).
pub fn read_task_pipe(pid: i32, fd: i32) -> Vec<u8> {
    let peek: OwnedFd = open(
        format!("/proc/{pid}/fd/{fd}").as_str(),
        OFlag::O_RDONLY | OFlag::O_NONBLOCK,
        Mode::empty(),
    )
    .unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match nix::unistd::read(peek.as_fd(), &mut buf) {
            Ok(0) | Err(Errno::EAGAIN) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => panic!("read fd {fd} of pid {pid}: {e}"),
        }
    }
}

/// A field of `/proc/PID/fdinfo/FD`.
pub fn fdinfo_field(pid: i32, fd: i32, key: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).unwrap();
    text.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k == key).then(|| v.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no {key} in fdinfo {fd} of {pid}: {text}"))
}

/// A [`RestoreContext`] over an images directory written by the dump.
pub struct DirContext {
    pub dir: PathBuf,
    pub kept: HashMap<String, OwnedFd>,
    pub options: RestoreOptions,
}

impl DirContext {
    pub fn new(dir: &Path) -> Self {
        DirContext {
            dir: dir.to_path_buf(),
            kept: HashMap::new(),
            options: RestoreOptions::default(),
        }
    }
}

impl RestoreContext for DirContext {
    fn read_image(&mut self, image: ImageRef) -> Result<Option<Vec<u8>>, PluginError> {
        let kind = image.kind.to_proto();
        let path = self.dir.join(kind.file_name(image.id.unwrap_or(0)));
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(PluginError::Image {
                    image: image.to_string(),
                    source: Box::new(e),
                });
            }
        };
        let start = criu_proto::framing::check_header(kind, &data)
            .map_err(|e| PluginError::bad_image(image.to_string(), e.to_string()))?;
        Ok(Some(data[start..].to_vec()))
    }
    fn read_plugin_file(&mut self, name: &str) -> Result<Option<Vec<u8>>, PluginError> {
        Ok(std::fs::read(self.dir.join(name)).ok())
    }
    fn current_pid(&self) -> i32 {
        std::process::id() as i32
    }
    fn restored_pid(&self, old: i32) -> Option<i32> {
        Some(old)
    }
    fn keep_fd(&mut self, key: &str, fd: OwnedFd) -> Result<(), PluginError> {
        self.kept.insert(key.to_string(), fd);
        Ok(())
    }
    fn kept_fd(&self, key: &str) -> Option<BorrowedFd<'_>> {
        self.kept.get(key).map(|f| f.as_fd())
    }
    fn options(&self) -> &RestoreOptions {
        &self.options
    }
}
