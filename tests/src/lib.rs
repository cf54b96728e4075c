//! Shared helpers for the end-to-end tests: start workloads, wait for them, and end every
//! process a test started, by pid, even when the test fails.

pub mod rpc_client;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;

/// Kills (SIGKILL) and reaps a process by pid when dropped, whatever happened to the test.
///
/// A restored process is not our child: it is killed by pid and then waited for until its
/// pid disappears.
#[derive(Debug)]
pub struct PidGuard {
    pid: i32,
}

impl PidGuard {
    /// Guards `pid`.
    pub fn new(pid: i32) -> Self {
        Self { pid }
    }

    /// The guarded pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }
}

impl Drop for PidGuard {
    fn drop(&mut self) {
        let pid = Pid::from_raw(self.pid);
        let _ = kill(pid, Signal::SIGKILL);
        // Reap it if it is our child; otherwise wait for init (or its parent) to do so.
        let _ = waitpid(pid, Some(WaitPidFlag::__WALL));
        let _ = wait_pid_gone(self.pid, Duration::from_secs(10));
    }
}

/// Kills a whole process tree by pid when dropped: every process first, then waits for each
/// pid to be free. One by one would stall: a killed child stays a zombie while its parent
/// lives, so a per-pid guard waits out its timeout for every child killed before its parent.
#[derive(Debug, Default)]
pub struct TreeGuard {
    pids: Vec<i32>,
}

impl TreeGuard {
    /// Guards `pids`.
    pub fn new(pids: impl IntoIterator<Item = i32>) -> Self {
        let mut g = Self::default();
        g.extend(pids);
        g
    }

    /// Guards `pids` too (each pid once).
    pub fn extend(&mut self, pids: impl IntoIterator<Item = i32>) {
        for p in pids {
            if !self.pids.contains(&p) {
                self.pids.push(p);
            }
        }
    }

    /// Kills every guarded process and returns the pids still taken after `timeout`.
    pub fn kill_and_wait(mut self, timeout: Duration) -> Vec<i32> {
        self.end(timeout)
    }

    fn end(&mut self, timeout: Duration) -> Vec<i32> {
        let pids = std::mem::take(&mut self.pids);
        for &p in &pids {
            let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
        }
        // Our own children are reaped here (SIGKILLed: no long wait); others by their parent.
        for &p in &pids {
            let _ = waitpid(Pid::from_raw(p), Some(WaitPidFlag::__WALL));
        }
        pids.into_iter()
            .filter(|&p| !wait_pid_gone(p, timeout))
            .collect()
    }
}

impl Drop for TreeGuard {
    fn drop(&mut self) {
        self.end(Duration::from_secs(10));
    }
}

/// A started workload: its child handle, its pid guard and its stdout reader.
#[derive(Debug)]
pub struct Workload {
    pub guard: PidGuard,
    pub child: Child,
    pub stdout: BufReader<std::process::ChildStdout>,
}

impl Workload {
    /// Starts `program` with `args`, stdin and stderr on /dev/null, stdout piped, and waits
    /// for it to print a line equal to `ready` (at most `timeout`).
    ///
    /// stderr is not inherited: the test's own stderr may be a log file that keeps growing,
    /// and a restore rightly refuses a regular file whose size changed since the dump.
    pub fn start(program: &Path, args: &[&str], ready: &str, timeout: Duration) -> Self {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let guard = PidGuard::new(child.id() as i32);
        let stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
        let mut workload = Self {
            guard,
            child,
            stdout,
        };
        workload.wait_line(ready, timeout);
        workload
    }

    /// The workload's pid.
    pub fn pid(&self) -> i32 {
        self.guard.pid()
    }

    /// Reads lines until one equals `want`; panics on EOF. `timeout` is checked between lines.
    pub fn wait_line(&mut self, want: &str, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let mut line = String::new();
            let n = self
                .stdout
                .read_line(&mut line)
                .expect("read workload stdout");
            assert!(
                n > 0,
                "workload exited before printing {want:?}; it printed {seen:?}"
            );
            let line = line.trim_end().to_string();
            if line == want {
                return seen;
            }
            seen.push(line);
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {want:?}: {seen:?}"
            );
        }
    }
}

/// Whether `/proc/PID` exists (a zombie counts as present: its pid is still taken).
pub fn pid_exists(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Waits until `pid` is free (killed trees are reaped lazily by init). True if it is.
pub fn wait_pid_gone(pid: i32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while pid_exists(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// Whether this process runs as root (ptrace of others, clone3 set_tid need it).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Skips the calling test with a printed reason when not root: returns true to skip.
pub fn skip_unless_root(test: &str) -> bool {
    if is_root() {
        return false;
    }
    eprintln!("skipping {test}: needs root (ptrace and clone3 with set_tid)");
    true
}

/// A fresh, private scratch directory under the target dir, removed when dropped.
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// Creates `<tmp>/criu-tests-<name>-<pid>-<n>`.
    pub fn new(name: &str) -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("criu-tests-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create scratch dir");
        Self { path }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if std::env::var_os("CRIU_TESTS_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Pieces of the tree workloads (`tests/src/bin/wl_tree_*.rs`).
pub mod workload {
    use std::io::Write;
    use std::time::Duration;

    use nix::unistd::{ForkResult, Pid, fork};

    /// Appends `tick PID` to `report` every 100 ms, forever (exit code 3 when it cannot).
    pub fn tick_forever(report: &str) -> ! {
        let Ok(mut out) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(report)
        else {
            std::process::exit(3);
        };
        let me = std::process::id();
        loop {
            // One write(2) per line: lines of many processes must not interleave.
            if out.write_all(format!("tick {me}\n").as_bytes()).is_err() {
                std::process::exit(3);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Forks a child that runs `f` and exits 0; the child's pid (exit code 4 if fork fails).
    /// Only for single-threaded workloads.
    pub fn fork_child(f: impl FnOnce()) -> Pid {
        // SAFETY: callers are single-threaded programs; the child continues in plain Rust
        // code as a copy of that single-threaded process.
        match unsafe { fork() } {
            Ok(ForkResult::Child) => {
                f();
                std::process::exit(0)
            }
            Ok(ForkResult::Parent { child }) => child,
            Err(_) => std::process::exit(4),
        }
    }
}
