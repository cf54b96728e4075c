//! Small /proc files: task and fd lists, namespace links, auxv, cgroup, posix timers, and
//! one-value files (comm, personality, loginuid, oom_score_adj).

use std::path::PathBuf;

use super::{ParseError, ProcError, num, pid_path, read_parsed, read_text, tid_path};

fn read_dir_numbers(path: PathBuf) -> Result<Vec<i32>, ProcError> {
    let rd = std::fs::read_dir(&path).map_err(|source| ProcError::Read {
        path: path.clone(),
        source,
    })?;
    let mut out = Vec::new();
    for ent in rd {
        let ent = ent.map_err(|source| ProcError::Read {
            path: path.clone(),
            source,
        })?;
        if let Some(n) = ent.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Thread ids of `/proc/PID/task`, sorted, without the kernel's io_uring threads
/// (`PF_IO_WORKER`: `iou-wrk-*` workers, `iou-sqp-*` SQ threads): they belong to rings, not
/// to the program, never leave the kernel (a remote syscall in one never returns), and come
/// back with the rings that need them (the io_uring plugin).
pub fn read_tasks(pid: i32) -> Result<Vec<i32>, ProcError> {
    let mut tids = read_dir_numbers(pid_path(pid, "task"))?;
    tids.retain(|&tid| tid == pid || !is_io_worker(pid, tid));
    Ok(tids)
}

/// `PF_IO_WORKER` in `include/linux/sched.h`.
const PF_IO_WORKER: u64 = 0x10;

/// Whether thread `tid` of `pid` is an io_uring kernel thread (field 9 of its `stat`, the
/// task flags, has `PF_IO_WORKER`). A thread gone meanwhile is not one.
fn is_io_worker(pid: i32, tid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")) else {
        return false;
    };
    stat_flags(&stat).is_some_and(|f| f & PF_IO_WORKER != 0)
}

/// The task flags (field 9) of a `stat` line; the name in parentheses may hold anything.
fn stat_flags(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_ascii_whitespace().nth(6)?.parse().ok()
}

/// Open fd numbers of `/proc/PID/fd`, sorted.
pub fn read_fds(pid: i32) -> Result<Vec<i32>, ProcError> {
    read_dir_numbers(pid_path(pid, "fd"))
}

/// Children of one thread (`/proc/PID/task/TID/children`).
pub fn read_children(pid: i32, tid: i32) -> Result<Vec<i32>, ProcError> {
    read_parsed(tid_path(pid, tid, "children"), |t| {
        t.split_ascii_whitespace()
            .map(|s| num(s, 1, "child pid"))
            .collect()
    })
}

/// Target of a /proc symlink (`exe`, `cwd`, `root`, `fd/N`, `ns/net`...).
pub fn read_link(pid: i32, name: &str) -> Result<PathBuf, ProcError> {
    let path = pid_path(pid, name);
    std::fs::read_link(&path).map_err(|source| ProcError::Read { path, source })
}

/// Parse a namespace link target like `net:[4026531833]` into its inode.
pub fn parse_ns_link(s: &str) -> Result<u64, ParseError> {
    let inner = s
        .split_once(":[")
        .and_then(|(_, r)| r.strip_suffix(']'))
        .ok_or_else(|| ParseError::new(0, format!("bad ns link {s:?}")))?;
    num(inner, 0, "ns inode")
}

/// Namespace kinds in the order CRIU assigns their ids.
pub const NS_KINDS: [&str; 8] = ["pid", "net", "ipc", "uts", "time", "mnt", "user", "cgroup"];

/// Inode of `/proc/PID/ns/KIND`.
pub fn read_ns_inode(pid: i32, kind: &str) -> Result<u64, ProcError> {
    let path = pid_path(pid, &format!("ns/{kind}"));
    let target = std::fs::read_link(&path).map_err(|source| ProcError::Read {
        path: path.clone(),
        source,
    })?;
    parse_ns_link(&target.to_string_lossy()).map_err(|source| ProcError::Parse { path, source })
}

/// Parse auxv bytes into u64 words (pairs of type, value), up to and including AT_NULL.
pub fn parse_auxv(bytes: &[u8]) -> Vec<u64> {
    let mut out = Vec::new();
    for pair in bytes.chunks_exact(16) {
        let mut a = [0u8; 8];
        a.copy_from_slice(&pair[..8]);
        let k = u64::from_ne_bytes(a);
        a.copy_from_slice(&pair[8..]);
        out.push(k);
        out.push(u64::from_ne_bytes(a));
        if k == 0 {
            break;
        }
    }
    out
}

pub fn read_auxv(pid: i32) -> Result<Vec<u64>, ProcError> {
    let path = pid_path(pid, "auxv");
    let b = std::fs::read(&path).map_err(|source| ProcError::Read { path, source })?;
    Ok(parse_auxv(&b))
}

/// One line of `/proc/PID/cgroup`: hierarchy id, controllers, path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupLine {
    pub id: u32,
    pub controllers: String,
    pub path: String,
}

pub fn parse_cgroup(text: &str) -> Result<Vec<CgroupLine>, ParseError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
        .map(|(i, l)| {
            let mut it = l.splitn(3, ':');
            match (it.next(), it.next(), it.next()) {
                (Some(id), Some(c), Some(p)) => Ok(CgroupLine {
                    id: num(id, i + 1, "hierarchy id")?,
                    controllers: c.to_string(),
                    path: p.to_string(),
                }),
                _ => Err(ParseError::new(i + 1, format!("bad cgroup line {l:?}"))),
            }
        })
        .collect()
}

pub fn read_cgroup(pid: i32) -> Result<Vec<CgroupLine>, ProcError> {
    read_parsed(pid_path(pid, "cgroup"), parse_cgroup)
}

/// One POSIX timer from `/proc/PID/timers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PosixTimerInfo {
    pub id: i32,
    pub signo: u32,
    pub sival_ptr: u64,
    /// SIGEV_* value, with SIGEV_THREAD_ID when the target is a thread ("tid").
    pub notify: u32,
    /// Target of the notification (a tid for SIGEV_THREAD_ID).
    pub notify_pid: i32,
    pub clock_id: i32,
}

pub fn parse_timers(text: &str) -> Result<Vec<PosixTimerInfo>, ParseError> {
    let mut out: Vec<PosixTimerInfo> = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let line = i + 1;
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        let v = v.trim();
        if k == "ID" {
            out.push(PosixTimerInfo {
                id: num(v, line, "timer id")?,
                signo: 0,
                sival_ptr: 0,
                notify: 0,
                notify_pid: 0,
                clock_id: 0,
            });
            continue;
        }
        let cur = out
            .last_mut()
            .ok_or_else(|| ParseError::new(line, "timer field before ID"))?;
        match k {
            "signal" => {
                let (s, p) = v
                    .split_once('/')
                    .ok_or_else(|| ParseError::new(line, "bad signal line"))?;
                cur.signo = num(s, line, "signal")?;
                cur.sival_ptr = super::hex_u64(p, line, "sival")?;
            }
            "notify" => {
                // "signal/pid.N", "none/pid.N", "thread/pid.N"; SIGEV_THREAD_ID shows as
                // "tid" before the target ("signal/tid.N").
                let (how, who) = v
                    .split_once('/')
                    .ok_or_else(|| ParseError::new(line, "bad notify line"))?;
                let base = match how {
                    "signal" => libc::SIGEV_SIGNAL,
                    "none" => libc::SIGEV_NONE,
                    "thread" => libc::SIGEV_THREAD,
                    _ => return Err(ParseError::new(line, format!("unknown notify {how:?}"))),
                };
                let (kind, n) = who
                    .split_once('.')
                    .ok_or_else(|| ParseError::new(line, "bad notify target"))?;
                let thread_id = match kind {
                    "tid" => libc::SIGEV_THREAD_ID,
                    "pid" => 0,
                    _ => return Err(ParseError::new(line, format!("unknown target {kind:?}"))),
                };
                cur.notify = (base | thread_id) as u32;
                cur.notify_pid = num(n, line, "notify pid")?;
            }
            "ClockID" => cur.clock_id = num(v, line, "clock id")?,
            _ => {}
        }
    }
    Ok(out)
}

pub fn read_timers(pid: i32) -> Result<Vec<PosixTimerInfo>, ProcError> {
    read_parsed(pid_path(pid, "timers"), parse_timers)
}

/// A file holding one number (decimal, or hex when `hex`), e.g. `personality`, `loginuid`.
pub fn read_number(path: PathBuf, hex: bool) -> Result<i64, ProcError> {
    read_parsed(path, |t| {
        let t = t.trim();
        if hex {
            i64::from_str_radix(t, 16).map_err(|_| ParseError::new(1, format!("bad number {t:?}")))
        } else {
            num(t, 1, "number")
        }
    })
}

/// `comm` of a thread, raw (trailing newline removed).
pub fn read_comm(pid: i32, tid: i32) -> Result<String, ProcError> {
    let (_, t) = read_text(tid_path(pid, tid, "comm"))?;
    Ok(t.strip_suffix('\n').unwrap_or(&t).to_string())
}

/// What `/proc/PID/task/TID/syscall` says a thread is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskSyscall {
    /// `running`: on a CPU, no syscall to report.
    Running,
    /// `-1 sp pc`: blocked outside a syscall (e.g. in a ptrace or group stop).
    NotInSyscall,
    /// Blocked in syscall `nr` with these arguments.
    In { nr: i64, args: [u64; 6] },
}

/// Parses `/proc/PID/task/TID/syscall`: `running`, `-1 SP PC`, or `NR A1..A6 SP PC` with the
/// arguments, SP and PC in hex (`0x...`).
pub fn parse_syscall(text: &str) -> Result<TaskSyscall, ParseError> {
    let mut words = text.split_ascii_whitespace();
    let first = words
        .next()
        .ok_or_else(|| ParseError::new(1, "empty syscall file"))?;
    if first == "running" {
        return Ok(TaskSyscall::Running);
    }
    let nr: i64 = num(first, 1, "syscall number")?;
    if nr < 0 {
        return Ok(TaskSyscall::NotInSyscall);
    }
    let mut args = [0u64; 6];
    for a in &mut args {
        let w = words
            .next()
            .ok_or_else(|| ParseError::new(1, "syscall arguments missing"))?;
        let hex = w
            .strip_prefix("0x")
            .ok_or_else(|| ParseError::new(1, format!("bad syscall argument {w:?}")))?;
        *a = super::hex_u64(hex, 1, "syscall argument")?;
    }
    Ok(TaskSyscall::In { nr, args })
}

/// The syscall thread `tid` of `pid` is blocked in, if any.
pub fn read_syscall(pid: i32, tid: i32) -> Result<TaskSyscall, ProcError> {
    read_parsed(tid_path(pid, tid, "syscall"), parse_syscall)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscall_file() {
        assert_eq!(parse_syscall("running\n").unwrap(), TaskSyscall::Running);
        assert_eq!(
            parse_syscall("-1 0x7ffd1000 0x401000\n").unwrap(),
            TaskSyscall::NotInSyscall
        );
        assert_eq!(
            parse_syscall("58 0x0 0x1 0x2 0x3 0x4 0xffffffffffffffff 0x7ffd1000 0x401000\n")
                .unwrap(),
            TaskSyscall::In {
                nr: 58,
                args: [0, 1, 2, 3, 4, u64::MAX]
            }
        );
        assert!(parse_syscall("").is_err());
        assert!(parse_syscall("56 0x1").is_err());
        assert!(parse_syscall("56 1 2 3 4 5 6").is_err());
        // Our main thread (blocked, or reading this very file) parses.
        let me = std::process::id() as i32;
        assert!(read_syscall(me, me).is_ok());
    }

    #[test]
    fn ns_link() {
        assert_eq!(parse_ns_link("net:[4026531833]").unwrap(), 4026531833);
        assert!(parse_ns_link("net:4026531833").is_err());
        assert!(parse_ns_link("net:[x]").is_err());
    }

    #[test]
    fn own_tasks_fds_ns() {
        let me = std::process::id() as i32;
        assert!(read_tasks(me).unwrap().contains(&me));
        let io = "7140 (iou-wrk-7) S 1 7138 7138 0 -1 4210768 0 0";
        assert_eq!(stat_flags(io), Some(4_210_768));
        assert_eq!(
            stat_flags("1 (a) b) S 0 1 1 0 -1 4194560 0"),
            Some(4_194_560)
        );
        assert!(!read_fds(me).unwrap().is_empty());
        for k in NS_KINDS {
            assert!(read_ns_inode(me, k).unwrap() > 0, "{k}");
        }
        let aux = read_auxv(me).unwrap();
        assert_eq!(aux.len() % 2, 0);
        assert_eq!(aux[aux.len() - 2], 0);
        assert!(
            aux.chunks(2)
                .any(|p| p[0] == libc::AT_PAGESZ && p[1] == 4096)
        );
        assert!(!read_comm(me, me).unwrap().is_empty());
        assert!(read_number(pid_path(me, "personality"), true).is_ok());
    }

    #[test]
    fn cgroup() {
        let c = parse_cgroup("4:memory:/a/b\n0::/\n").unwrap();
        assert_eq!(c[0].controllers, "memory");
        assert_eq!(c[1].path, "/");
        assert!(parse_cgroup("x:y\n").is_err());
    }

    #[test]
    fn timers() {
        // As Linux 6.18 prints them: a SIGEV_THREAD_ID timer is "signal/tid.N".
        let t = "ID: 0\nsignal: 14/00007ffd00000001\nnotify: signal/pid.1234\nClockID: 1\nID: 3\nsignal: 10/0000000000000000\nnotify: signal/tid.1240\nClockID: 0\nID: 4\nsignal: 10/0000000000000000\nnotify: thread/pid.1234\nClockID: 0\nID: 5\nsignal: 10/0000000000000000\nnotify: none/pid.1234\nClockID: 0\n";
        let v = parse_timers(t).unwrap();
        assert_eq!(v.len(), 4);
        assert_eq!(v[0].signo, 14);
        assert_eq!(v[0].sival_ptr, 0x7ffd00000001);
        assert_eq!(v[0].notify, libc::SIGEV_SIGNAL as u32);
        assert_eq!(v[0].clock_id, 1);
        assert_eq!(
            v[1].notify,
            (libc::SIGEV_SIGNAL | libc::SIGEV_THREAD_ID) as u32
        );
        assert_eq!(v[1].notify_pid, 1240);
        assert_eq!(v[2].notify, libc::SIGEV_THREAD as u32);
        assert_eq!(v[3].notify, libc::SIGEV_NONE as u32);
        assert!(parse_timers("ID: 1\nnotify: signal/who.1\n").is_err());
        assert!(parse_timers("signal: 1/0\n").is_err());
        assert!(parse_timers("").unwrap().is_empty());
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "(?s).{0,200}", b in proptest::collection::vec(0u8.., 0..100)) {
            let _ = parse_timers(&s);
            let _ = parse_cgroup(&s);
            let _ = parse_ns_link(&s);
            let _ = parse_auxv(&b);
        }
    }
}
