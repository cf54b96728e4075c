//! Restore workload for task attributes that a restore easily drops: scheduling policy with
//! SCHED_RESET_ON_FORK per thread (SCHED_BATCH + nice 7 in the main thread, SCHED_RR 3 in a
//! worker), madvise flags (MADV_WIPEONFORK, MADV_DONTDUMP, MADV_DONTFORK, MADV_RANDOM) and a
//! MAP_DROPPABLE mapping where the kernel has it, a membarrier registration, and, after the
//! process drops to uid/gid 65534 (which clears them in the kernel), the parent-death signal
//! and the dumpable flag set again. A pipe's read end has this process as its SIGIO owner
//! with F_SETSIG and O_ASYNC.
//!
//! A file in the report's directory is mapped shared and read-only through a read-write open.
//!
//! It writes `ready PID` and `state SUMMARY` at start. On SIGUSR1 it writes `state SUMMARY`
//! again, then `after ...` (whether the file mapping can be made writable, the
//! MADV_WIPEONFORK data is still there and the MAP_DROPPABLE mapping is empty), then writes
//! to the pipe and reports `sigio N`: how many of its F_SETSIG signals arrived within two
//! seconds.
//!
//! Usage: wl_task_attrs REPORT_FILE

use std::io::Write;
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static GOT_USR1: AtomicBool = AtomicBool::new(false);
static SIGIO_COUNT: AtomicUsize = AtomicUsize::new(0);
static WORKER_TID: AtomicUsize = AtomicUsize::new(0);

const MEMBARRIER_CMD_GET_REGISTRATIONS: libc::c_int = 1 << 9;
const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_int = 1 << 4;
const F_SETSIG: libc::c_int = 10;
const F_GETSIG: libc::c_int = 11;
const REGION: usize = 4 * 4096;

extern "C" fn on_usr1(_: libc::c_int) {
    GOT_USR1.store(true, Ordering::SeqCst);
}

extern "C" fn on_io(_: libc::c_int) {
    SIGIO_COUNT.fetch_add(1, Ordering::SeqCst);
}

fn io_signal() -> libc::c_int {
    libc::SIGRTMIN() + 1
}

fn check(what: &str, r: libc::c_long) -> libc::c_long {
    if r < 0 {
        eprintln!("wl_task_attrs: {what}: {}", std::io::Error::last_os_error());
        std::process::exit(1);
    }
    r
}

fn set_sched(tid: libc::c_int, policy: libc::c_int, prio: libc::c_int) {
    let p = libc::sched_param {
        sched_priority: prio,
    };
    // SAFETY: `p` is a valid sched_param for the call.
    let r = unsafe { libc::sched_setscheduler(tid, policy | libc::SCHED_RESET_ON_FORK, &p) };
    check("sched_setscheduler", r as _);
}

fn sched_of(tid: libc::c_int) -> String {
    // SAFETY: plain query syscalls; `p` is a valid out pointer.
    let (policy, prio, nice) = unsafe {
        let mut p = libc::sched_param { sched_priority: 0 };
        let policy = libc::sched_getscheduler(tid);
        libc::sched_getparam(tid, &mut p);
        let nice = 20 - libc::syscall(libc::SYS_getpriority, libc::PRIO_PROCESS, tid);
        (policy, p.sched_priority, nice)
    };
    format!("{policy:#x}/{prio}/{nice}")
}

fn anon_map(flags: libc::c_int) -> Option<usize> {
    // SAFETY: a fresh anonymous mapping; nothing else is at the address the kernel picks.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            REGION,
            libc::PROT_READ | libc::PROT_WRITE,
            flags | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    (p != libc::MAP_FAILED).then_some(p as usize)
}

fn advise(addr: usize, advice: libc::c_int) {
    // SAFETY: `addr` is a REGION-long mapping of ours.
    let r = unsafe { libc::madvise(addr as *mut libc::c_void, REGION, advice) };
    check("madvise", r as _);
}

/// The madvise/mmap VmFlags of the mapping at `addr` (tokens a restore must carry over).
fn vmflags(addr: usize) -> String {
    const KEPT: &[&str] = &[
        "sr", "rr", "dc", "dd", "wf", "hg", "nh", "mg", "lo", "nr", "dp",
    ];
    let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
    let head = format!("{addr:x}-");
    let mut inside = false;
    for l in smaps.lines() {
        // A mapping's header line starts with its range; field lines with `Name:`.
        if l.split_whitespace()
            .next()
            .is_some_and(|w| !w.ends_with(':'))
        {
            inside = l.starts_with(&head);
        }
        if inside && let Some(f) = l.strip_prefix("VmFlags:") {
            let kept: Vec<&str> = f.split_whitespace().filter(|t| KEPT.contains(t)).collect();
            return kept.join(" ");
        }
    }
    "missing".into()
}

fn prctl_get(option: libc::c_int) -> i64 {
    let mut v: libc::c_int = -1;
    // SAFETY: PR_GET_PDEATHSIG writes an int to `v`; PR_GET_DUMPABLE ignores the argument.
    let r = unsafe { libc::prctl(option, &mut v as *mut libc::c_int) };
    if option == libc::PR_GET_PDEATHSIG {
        v as i64
    } else {
        r as i64
    }
}

const DATA: &[u8] = b"wl_task_attrs data";

struct Setup {
    /// A shared mapping, read-only, of a file opened read-write (then closed).
    file_ro: usize,
    worker: libc::c_int,
    wipe: usize,
    nofork: usize,
    droppable: Option<usize>,
    pipe_rd: OwnedFd,
}

fn summary(s: &Setup) -> String {
    // SAFETY: plain query syscalls on our own fd and mm.
    let (owner, sig, fl, mb) = unsafe {
        let fd = s.pipe_rd.as_raw_fd();
        (
            libc::fcntl(fd, libc::F_GETOWN),
            libc::fcntl(fd, F_GETSIG),
            libc::fcntl(fd, libc::F_GETFL) & libc::O_ASYNC != 0,
            libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_GET_REGISTRATIONS, 0, 0),
        )
    };
    let me = std::process::id() as libc::c_int;
    format!(
        "sched={},{} pdeath={} dumpable={} membarrier={mb} wipe=[{}] nofork=[{}] droppable=[{}] fown={}/{sig}/{}",
        sched_of(me),
        sched_of(s.worker),
        prctl_get(libc::PR_GET_PDEATHSIG),
        prctl_get(libc::PR_GET_DUMPABLE),
        vmflags(s.wipe),
        vmflags(s.nofork),
        s.droppable.map_or("none".into(), vmflags),
        if owner == me {
            "self".into()
        } else {
            owner.to_string()
        },
        u8::from(fl),
    )
}

/// Maps `path` (created, two pages) shared and read-only through a read-write open.
fn map_file_ro(path: &str) -> usize {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .expect("open shared file");
    f.set_len(REGION as u64).expect("ftruncate");
    // SAFETY: a fresh shared mapping of our own file at an address the kernel picks.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            REGION,
            libc::PROT_READ,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        )
    };
    check("mmap file", if p == libc::MAP_FAILED { -1 } else { 0 });
    p as usize
}

fn fill(addr: usize) {
    // SAFETY: `addr` is a writable REGION-long mapping of ours, longer than DATA.
    unsafe { std::ptr::copy_nonoverlapping(DATA.as_ptr(), addr as *mut u8, DATA.len()) };
}

fn holds(addr: usize, want: &[u8]) -> bool {
    // SAFETY: `addr` is a readable REGION-long mapping of ours, longer than `want`.
    unsafe { std::slice::from_raw_parts(addr as *const u8, want.len()) == want }
}

/// After a restore: the read-only file mapping can still be made writable, the
/// MADV_WIPEONFORK data is kept and the MAP_DROPPABLE mapping is empty (its pages are not
/// dumped).
fn after_restore(s: &Setup) -> String {
    // SAFETY: changing the protection of our own file mapping.
    let r = unsafe {
        libc::mprotect(
            s.file_ro as *mut libc::c_void,
            REGION,
            libc::PROT_READ | libc::PROT_WRITE,
        )
    };
    let mprotect = if r == 0 {
        0
    } else {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(-1)
    };
    let dropped = s.droppable.map_or("none".into(), |d| {
        u8::from(holds(d, &[0; DATA.len()])).to_string()
    });
    format!(
        "after mprotect={mprotect} wipe_data={} droppable_zero={dropped}",
        u8::from(holds(s.wipe, DATA))
    )
}

fn setup(dir: &str) -> Setup {
    let file_ro = map_file_ro(&format!("{dir}/shared.bin"));
    std::thread::spawn(|| {
        set_sched(0, libc::SCHED_RR, 3);
        WORKER_TID.store(nix::unistd::gettid().as_raw() as usize, Ordering::SeqCst);
        loop {
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    while WORKER_TID.load(Ordering::SeqCst) == 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
    set_sched(0, libc::SCHED_BATCH, 0);
    // SAFETY: plain syscall; 0 = the calling thread.
    check(
        "setpriority",
        unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 7) } as _,
    );

    let wipe = anon_map(libc::MAP_PRIVATE).expect("mmap");
    fill(wipe);
    advise(wipe, libc::MADV_WIPEONFORK);
    advise(wipe, libc::MADV_DONTDUMP);
    let nofork = anon_map(libc::MAP_PRIVATE).expect("mmap");
    advise(nofork, libc::MADV_DONTFORK);
    advise(nofork, libc::MADV_RANDOM);
    // Linux 6.11+; EINVAL before.
    let droppable = anon_map(libc::MAP_DROPPABLE);
    if let Some(d) = droppable {
        fill(d);
    }
    // SAFETY: plain syscall.
    let r = unsafe {
        libc::syscall(
            libc::SYS_membarrier,
            MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED,
            0,
            0,
        )
    };
    check("membarrier", r);

    // Dropping root clears the parent-death signal and the dumpable flag: set them after.
    nix::unistd::setgroups(&[]).expect("setgroups");
    let nobody = 65534;
    nix::unistd::setresgid(nobody.into(), nobody.into(), nobody.into()).expect("setresgid");
    nix::unistd::setresuid(nobody.into(), nobody.into(), nobody.into()).expect("setresuid");
    // SAFETY: integer-argument prctls.
    unsafe {
        check(
            "PR_SET_DUMPABLE",
            libc::prctl(libc::PR_SET_DUMPABLE, 1) as _,
        );
        check(
            "PR_SET_PDEATHSIG",
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGWINCH) as _,
        );
    }

    let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_NONBLOCK).expect("pipe");
    // The write end lives as long as the process.
    PIPE_WR.store(wr.into_raw_fd() as usize, Ordering::SeqCst);
    let fd = rd.as_raw_fd();
    // SAFETY: fcntls on our own pipe.
    unsafe {
        check(
            "F_SETOWN",
            libc::fcntl(fd, libc::F_SETOWN, std::process::id()) as _,
        );
        check("F_SETSIG", libc::fcntl(fd, F_SETSIG, io_signal()) as _);
        let fl = libc::fcntl(fd, libc::F_GETFL);
        check(
            "F_SETFL",
            libc::fcntl(fd, libc::F_SETFL, fl | libc::O_ASYNC) as _,
        );
    }
    Setup {
        file_ro,
        worker: WORKER_TID.load(Ordering::SeqCst) as libc::c_int,
        wipe,
        nofork,
        droppable,
        pipe_rd: rd,
    }
}

static PIPE_WR: AtomicUsize = AtomicUsize::new(0);

fn main() {
    let Some(report) = std::env::args().nth(1) else {
        eprintln!("usage: wl_task_attrs REPORT_FILE");
        std::process::exit(2);
    };
    let _ = nix::unistd::setsid();
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&report)
        .expect("open report");
    // SAFETY: the handlers only touch atomics.
    unsafe {
        libc::signal(libc::SIGUSR1, on_usr1 as *const () as libc::sighandler_t);
        libc::signal(io_signal(), on_io as *const () as libc::sighandler_t);
    }
    let dir = std::path::Path::new(&report)
        .parent()
        .and_then(|d| d.to_str())
        .unwrap_or(".")
        .to_string();
    let s = setup(&dir);
    writeln!(out, "ready {}", std::process::id()).expect("write");
    writeln!(out, "state {}", summary(&s)).expect("write");
    loop {
        std::thread::sleep(Duration::from_millis(20));
        if !GOT_USR1.swap(false, Ordering::SeqCst) {
            continue;
        }
        let _ = writeln!(out, "state {}", summary(&s));
        let _ = writeln!(out, "{}", after_restore(&s));
        let before = SIGIO_COUNT.load(Ordering::SeqCst);
        let wr = PIPE_WR.load(Ordering::SeqCst) as libc::c_int;
        // SAFETY: writing one byte from a local to our own pipe.
        unsafe { libc::write(wr, b"x".as_ptr().cast(), 1) };
        let deadline = Instant::now() + Duration::from_secs(2);
        while SIGIO_COUNT.load(Ordering::SeqCst) == before && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut buf = [0u8; 16];
        // SAFETY: reading into a local buffer from our own (non-blocking) pipe.
        unsafe { libc::read(s.pipe_rd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        let _ = writeln!(out, "sigio {}", SIGIO_COUNT.load(Ordering::SeqCst) - before);
    }
}
