//! A tree whose root is the init (pid 1) of its own pid namespace.
//!
//! CRIU writes the pids the tasks see (the innermost level of `NSpid`) into `pstree.img`,
//! the image names and every pid field. We get the same by dumping from inside: criu forks
//! a process into the root's pid namespace (`setns(CLONE_NEWPID)` then `fork`), which
//! mounts a procfs of that namespace over `/proc` in a mount namespace of its own and runs
//! the ordinary dump there with root pid 1. ptrace, `/proc`, pidfds and remote syscalls then
//! all speak the tree's pids, with no translation table to forget somewhere. The inventory
//! keeps criu's own namespaces (read by the outer process) as `root_ids`, so the root's ids
//! name a pid namespace of its own and the restore creates one.
//!
//! A signal sent from inside a pid namespace to its init is dropped unless the init has a
//! handler: releasing the tree (SIGKILL or SIGSTOP of the root) is done by the outer process,
//! which the inner one asks for with one line once the images are complete.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};

use nix::sched::{CloneFlags, setns};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, Pid, fork, pipe2};

use super::super::freeze::Release;
use super::super::ids;
use super::super::{DumpError, DumpOptions, DumpReport};

/// Called by the inner dump once every image is written, before the tree is released.
pub type ReleaseHook = Box<dyn FnMut(&DumpReport, Release)>;

/// How a dump run inside the tree's pid namespace differs from one in criu's.
#[derive(Default)]
pub struct DumpEnv {
    /// Namespace inodes of the criu process that started the dump (its `root_ids`).
    pub own_ns: Option<[u64; 8]>,
    /// Called with the report once every image is written, before the tree is released.
    pub before_release: Option<ReleaseHook>,
}

impl std::fmt::Debug for DumpEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DumpEnv")
            .field("own_ns", &self.own_ns)
            .field("before_release", &self.before_release.is_some())
            .finish()
    }
}

/// The root's pid namespace when it is not criu's.
#[derive(Debug, Clone)]
pub struct PidNsTarget {
    /// The root's pids, criu's level first (`NSpid`).
    pub ns_pid: Vec<i32>,
}

/// Whether `pid` (the root to dump) lives in another pid namespace than criu: None when
/// it shares criu's (or cannot be read: the ordinary dump reports that). A root that is
/// not its namespace's init is refused, as CRIU does.
pub fn root_pid_ns(pid: i32) -> Result<Option<PidNsTarget>, DumpError> {
    let me = std::process::id() as i32;
    let own = crate::proc::misc::read_ns_inode(me, "pid");
    let theirs = crate::proc::misc::read_ns_inode(pid, "pid");
    let (Ok(own), Ok(theirs)) = (own, theirs) else {
        return Ok(None);
    };
    if own == theirs {
        return Ok(None);
    }
    let st = crate::proc::status::read_status(pid)
        .map_err(|e| DumpError::proc(pid, "pid namespace", e))?;
    check_init(pid, &st.ns_pid)?;
    Ok(Some(PidNsTarget { ns_pid: st.ns_pid }))
}

/// Refuses a root whose innermost pid (`ns_pid`'s last) is not 1.
fn check_init(pid: i32, ns_pid: &[i32]) -> Result<(), DumpError> {
    match ns_pid.last() {
        Some(1) if ns_pid.len() > 1 => Ok(()),
        inner => Err(DumpError::Unsupported {
            pid,
            step: "pid namespace",
            what: format!(
                "a root that is pid {} of its own pid namespace (NSpid {ns_pid:?}), not its init",
                inner.copied().unwrap_or(0)
            ),
            hint: "dump the namespace's init (its pid 1) with -t, as CRIU requires",
        }),
    }
}

/// What the outer process does to the root before the inner one releases the tree.
fn release_of(opts: &DumpOptions) -> Release {
    if opts.leave_running {
        Release::Resume
    } else if opts.leave_stopped {
        Release::Stop
    } else {
        Release::Kill
    }
}

fn sys_err(pid: i32, what: &str, e: nix::errno::Errno) -> DumpError {
    DumpError::sys(pid, "pid namespace", what.to_string(), e)
}

/// Runs `run` (the dump proper) in a process inside `target`'s pid namespace (see the module
/// docs) and returns its report or its error.
pub fn dump_inside(
    opts: &DumpOptions,
    target: &PidNsTarget,
    run: fn(&DumpOptions, &mut DumpEnv) -> Result<DumpReport, DumpError>,
) -> Result<DumpReport, DumpError> {
    let host = opts.pid;
    tracing::info!(pid = host, ns_pid = ?target.ns_pid, "root is the init of its own pid namespace: dumping from inside it");
    let own_ns = ids::ns_inodes(std::process::id() as i32)?;
    let open = |path: String| {
        File::open(&path).map_err(|e| DumpError::InPidNs {
            pid: host,
            message: format!("opening {path}: {e}"),
        })
    };
    let theirs = open(format!("/proc/{host}/ns/pid"))?;
    let ours = open("/proc/self/ns/pid".to_string())?;
    let (res_r, res_w) =
        pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| sys_err(host, "pipe2", e))?;
    let (ack_r, ack_w) =
        pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| sys_err(host, "pipe2", e))?;
    setns(theirs.as_fd(), CloneFlags::CLONE_NEWPID)
        .map_err(|e| sys_err(host, "setns into the root's pid namespace", e))?;
    crate::log_flush::flush();
    // SAFETY: the child runs the dump, the same code this process would run, and ends with
    // process::exit; criu dumps from a single thread, and glibc's malloc is fork-safe.
    let forked = unsafe { fork() };
    // Later children of criu belong to its own namespace again.
    let back = setns(ours.as_fd(), CloneFlags::CLONE_NEWPID);
    match forked.map_err(|e| sys_err(host, "fork into the root's pid namespace", e))? {
        ForkResult::Child => {
            drop((res_r, ack_w));
            let code = inner_main(opts, own_ns, res_w, ack_r, run);
            // process::exit runs no destructor: the log buffer is written here or never.
            crate::log_flush::flush();
            std::process::exit(code)
        }
        ForkResult::Parent { child } => {
            drop((res_w, ack_r));
            back.map_err(|e| sys_err(host, "setns back into criu's pid namespace", e))?;
            outer_wait(opts, child, res_r, ack_w)
        }
    }
}

/// The outer side: reads the inner process's result, releases the root as asked and reaps
/// the inner process.
fn outer_wait(
    opts: &DumpOptions,
    child: Pid,
    res_r: OwnedFd,
    ack_w: OwnedFd,
) -> Result<DumpReport, DumpError> {
    let host = opts.pid;
    let line = read_line(File::from(res_r));
    let outcome = match line.as_deref().map(decode) {
        Some(Ok(Ok(report))) => {
            match release_of(opts) {
                Release::Kill => {
                    // The whole namespace dies with its init, the inner process too.
                    let _ = kill(Pid::from_raw(host), Signal::SIGKILL);
                }
                Release::Stop => {
                    let _ = kill(Pid::from_raw(host), Signal::SIGSTOP);
                }
                Release::Resume => {}
            }
            Ok(report)
        }
        Some(Ok(Err(message))) => Err(DumpError::InPidNs { pid: host, message }),
        Some(Err(bad)) => Err(DumpError::InPidNs {
            pid: host,
            message: format!("unreadable result from the inner process: {bad}"),
        }),
        None => Err(DumpError::InPidNs {
            pid: host,
            message: "the inner process ended without a result (see the log)".into(),
        }),
    };
    // Going on: one byte, or the pipe's end when it is gone already.
    let _ = File::from(ack_w).write_all(b"g");
    loop {
        match waitpid(child, None) {
            Err(nix::errno::Errno::EINTR) => continue,
            r => {
                tracing::debug!(status = ?r, "inner dump process reaped");
                break;
            }
        }
    }
    outcome
}

/// One `\n`-terminated line, or None at the end of the pipe before one.
fn read_line(mut f: File) -> Option<String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match f.read(&mut byte) {
            Ok(0) => return None,
            Ok(_) if byte[0] == b'\n' => return Some(String::from_utf8_lossy(&buf).into_owned()),
            Ok(_) => buf.push(byte[0]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        }
    }
}

/// The inner side: own mount namespace with a procfs of the tree's pid namespace, then the
/// dump with root pid 1. Returns the exit code.
fn inner_main(
    opts: &DumpOptions,
    own_ns: [u64; 8],
    res_w: OwnedFd,
    ack_r: OwnedFd,
    run: fn(&DumpOptions, &mut DumpEnv) -> Result<DumpReport, DumpError>,
) -> i32 {
    let mut out = File::from(res_w);
    let mut result = mount_own_proc().map_err(|e| DumpError::InPidNs {
        pid: opts.pid,
        message: e,
    });
    if result.is_ok() {
        let mut hook_out = out.try_clone().ok();
        let mut ack = Some(File::from(ack_r));
        let mut env = DumpEnv {
            own_ns: Some(own_ns),
            before_release: Some(Box::new(move |report, _how| {
                // The outer process may kill us once it has the result: log lines first.
                crate::log_flush::flush();
                if let Some(o) = hook_out.as_mut() {
                    let _ = o.write_all(encode_ok(report).as_bytes());
                }
                // Wait for the outer process to have released the root (or killed us).
                if let Some(mut a) = ack.take() {
                    let _ = a.read(&mut [0u8; 1]);
                }
            })),
        };
        let inner = DumpOptions {
            pid: 1,
            ..opts.clone()
        };
        result = run(&inner, &mut env).map(|_| ());
    }
    match result {
        Ok(()) => 0,
        Err(e) => {
            crate::log_flush::flush();
            let _ = out.write_all(encode_err(&crate::plugins::error_chain(&e)).as_bytes());
            1
        }
    }
}

/// `unshare(CLONE_NEWNS)`, nothing propagated back, and a procfs of our (the tree's) pid
/// namespace over `/proc`.
fn mount_own_proc() -> Result<(), String> {
    nix::sched::unshare(CloneFlags::CLONE_NEWNS)
        .map_err(|e| format!("unshare(CLONE_NEWNS): {e}"))?;
    mount(None, c"/", None, libc::MS_REC | libc::MS_SLAVE)
        .map_err(|e| format!("making / a slave mount: {e}"))?;
    mount(
        Some(c"proc"),
        c"/proc",
        Some(c"proc"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
    )
    .map_err(|e| format!("mounting a procfs of the tree's pid namespace on /proc: {e}"))
}

/// `mount(2)` without data.
fn mount(
    src: Option<&std::ffi::CStr>,
    target: &std::ffi::CStr,
    fstype: Option<&std::ffi::CStr>,
    flags: libc::c_ulong,
) -> Result<(), nix::errno::Errno> {
    let ptr = |s: Option<&std::ffi::CStr>| s.map_or(std::ptr::null(), |s| s.as_ptr());
    // SAFETY: every pointer is a NUL-terminated string alive across the call, or null.
    let r = unsafe {
        libc::mount(
            ptr(src),
            target.as_ptr(),
            ptr(fstype),
            flags,
            std::ptr::null(),
        )
    };
    if r < 0 {
        Err(nix::errno::Errno::last())
    } else {
        Ok(())
    }
}

/// The inner process's success line.
fn encode_ok(r: &DumpReport) -> String {
    let pids: Vec<String> = r.pids.iter().map(|p| p.to_string()).collect();
    format!(
        "ok {} {} {} {} {} {}\n",
        if pids.is_empty() {
            "-".to_string()
        } else {
            pids.join(",")
        },
        r.threads,
        r.pages_scanned,
        r.pages_written,
        r.files,
        r.frozen_time_us
    )
}

/// The inner process's failure line (one line: newlines become spaces).
fn encode_err(message: &str) -> String {
    format!("err {}\n", message.replace('\n', " "))
}

/// A result line: Ok(Ok(report)), Ok(Err(message)) or Err(what is wrong with the line).
fn decode(line: &str) -> Result<Result<DumpReport, String>, String> {
    if let Some(msg) = line.strip_prefix("err ") {
        return Ok(Err(msg.to_string()));
    }
    let rest = line
        .strip_prefix("ok ")
        .ok_or_else(|| format!("{line:?}: neither ok nor err"))?;
    let f: Vec<&str> = rest.split(' ').collect();
    let [pids, threads, scanned, written, files, frozen] = f[..] else {
        return Err(format!("{line:?}: {} fields, not 6", f.len()));
    };
    let num = |s: &str| {
        s.parse::<u64>()
            .map_err(|e| format!("{line:?}: {s:?}: {e}"))
    };
    let pids = if pids == "-" {
        Vec::new()
    } else {
        pids.split(',')
            .map(|p| {
                p.parse::<i32>()
                    .map_err(|e| format!("{line:?}: pid {p:?}: {e}"))
            })
            .collect::<Result<_, _>>()?
    };
    Ok(Ok(DumpReport {
        pids,
        threads: num(threads)? as usize,
        pages_scanned: num(scanned)?,
        pages_written: num(written)?,
        files: num(files)? as usize,
        frozen_time_us: num(frozen)?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn init_only() {
        check_init(40, &[40, 1]).unwrap();
        check_init(40, &[40, 9, 1]).unwrap();
        let e = check_init(41, &[41, 7]).unwrap_err().to_string();
        assert!(
            e.contains("pid 41") && e.contains("pid 7 of its own pid namespace"),
            "{e}"
        );
        assert!(check_init(1, &[1]).is_err());
    }

    #[test]
    fn bad_lines() {
        assert!(decode("ok 1,2 3").is_err());
        assert!(decode("ok x 1 2 3 4 5").is_err());
        assert!(decode("maybe").is_err());
        assert_eq!(
            decode("err pid 1: boom").unwrap().unwrap_err(),
            "pid 1: boom"
        );
        assert_eq!(encode_err("a\nb"), "err a b\n");
    }

    proptest! {
        #[test]
        fn report_round_trip(
            pids in proptest::collection::vec(1i32..4_194_304, 0..20),
            threads in 0usize..10_000,
            scanned: u64, written: u64, files in 0usize..100_000, frozen: u64,
        ) {
            let r = DumpReport {
                pids, threads, pages_scanned: scanned, pages_written: written, files,
                frozen_time_us: frozen,
            };
            let line = encode_ok(&r);
            let back = decode(line.trim_end_matches('\n')).unwrap().unwrap();
            prop_assert_eq!(back.pids, r.pids);
            prop_assert_eq!(back.threads, r.threads);
            prop_assert_eq!(back.pages_scanned, r.pages_scanned);
            prop_assert_eq!(back.pages_written, r.pages_written);
            prop_assert_eq!(back.files, r.files);
            prop_assert_eq!(back.frozen_time_us, r.frozen_time_us);
        }
    }
}
