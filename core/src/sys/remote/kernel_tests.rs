//! Real-kernel tests: remote syscalls in a frozen forked child.

use std::time::Duration;

use super::*;
use crate::sys::ptrace::{FrozenState, Options, freeze};
use crate::sys::testutil::{Echo, Looper, usr1_handler_addr};

fn regs_bytes(r: &Regs) -> Vec<u8> {
    // SAFETY: user_regs_struct is plain integers without padding.
    unsafe {
        std::slice::from_raw_parts((r as *const Regs).cast::<u8>(), std::mem::size_of::<Regs>())
    }
    .to_vec()
}

#[test]
fn remote_syscalls_in_a_frozen_child() {
    let child = Looper::spawn();
    let pid = child.pid;
    assert_eq!(
        freeze(pid, Options::empty()).expect("freeze"),
        FrozenState::Running
    );
    let before = ptrace::get_regs(pid).expect("regs");
    let mask_before = ptrace::get_sigmask(pid).expect("mask");
    // The child sleeps in nanosleep nearly all the time: an interrupted syscall.
    println!(
        "orig_rax {} rax {}",
        before.orig_rax as i64, before.rax as i64
    );

    let mut rt = RemoteTask::new(pid, pid).expect("remote");
    assert!(matches!(rt.gadget(), Gadget::At(_)), "no vDSO gadget found");
    assert_eq!(rt.getpid().expect("getpid"), pid.as_raw());
    let ppid = rt
        .call("getppid", libc::SYS_getppid, [0; 6])
        .expect("getppid");
    assert_eq!(ppid as i32, nix::unistd::getpid().as_raw());

    // Scratch page: write through process_vm_writev, let the kernel fill it, read back.
    let s = rt.scratch(100).expect("scratch");
    assert_eq!(s.len, 4096);
    rt.write_mem(s.addr, b"hello").expect("write");
    let mut b = [0u8; 5];
    rt.read_mem(s.addr, &mut b).expect("read");
    assert_eq!(&b, b"hello");
    let n = rt
        .call("getcwd", libc::SYS_getcwd, [s.addr, 4096, 0, 0, 0, 0])
        .expect("getcwd");
    let mut cwd = vec![0u8; n as usize - 1];
    rt.read_mem(s.addr, &mut cwd).expect("read cwd");
    assert_eq!(
        cwd,
        std::env::current_dir()
            .expect("cwd")
            .as_os_str()
            .as_encoded_bytes()
    );

    // Typed mmap/munmap: a private page the child can use, seen in its maps while mapped.
    let page = rt
        .mmap(
            0,
            8192,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
        .expect("mmap");
    rt.write_mem(page + 4096, b"xyz").expect("write page");
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("maps");
    assert!(
        maps.contains(&format!("{page:x}-")),
        "new mapping not in maps"
    );
    rt.munmap(page, 8192).expect("munmap");
    let mut one = [0u8; 1];
    assert!(rt.read_mem(page, &mut one).is_err(), "still mapped");

    // A failing syscall gives its errno.
    let e = rt
        .call("close", libc::SYS_close, [9999, 0, 0, 0, 0, 0])
        .expect_err("EBADF");
    assert!(
        matches!(
            e,
            RemoteError::Syscall {
                errno: Errno::EBADF,
                ..
            }
        ),
        "{e}"
    );

    // The handler the child installed.
    let sa = rt.sigaction(libc::SIGUSR1).expect("sigaction");
    assert_eq!(sa.handler, usr1_handler_addr());
    assert_ne!(sa.flags & libc::SA_RESTART as u64, 0);
    assert_eq!(
        sa.mask & (1 << (libc::SIGUSR2 - 1)),
        1 << (libc::SIGUSR2 - 1)
    );
    let all = rt.sigactions().expect("all");
    assert_eq!(all.len(), 64);
    assert_eq!(all[libc::SIGUSR1 as usize - 1], sa);
    assert_eq!(all[libc::SIGUSR2 as usize - 1].handler, 0);

    // Other typed getters against what we can see from outside.
    let ss = rt.sigaltstack().expect("sigaltstack");
    // fork copies the forking thread's alternate stack (Rust test threads have one).
    // SAFETY: zeroed stack_t is valid; sigaltstack only writes it.
    let mut own: libc::stack_t = unsafe { std::mem::zeroed() };
    // SAFETY: query only.
    assert_eq!(unsafe { libc::sigaltstack(std::ptr::null(), &mut own) }, 0);
    assert_eq!(
        (ss.sp, ss.flags, ss.size),
        (own.ss_sp as u64, own.ss_flags, own.ss_size as u64)
    );
    let it = rt.getitimer(libc::ITIMER_REAL).expect("getitimer");
    assert_eq!(it, TimerValue::default());
    let lim = rt.getrlimit(libc::RLIMIT_NOFILE).expect("rlimit");
    let own = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .expect("own rlimit");
    assert_eq!((lim.cur, lim.max), own);
    assert_eq!(rt.getrlimits().expect("rlimits").len(), 16);
    let um = rt.umask().expect("umask");
    assert_eq!(rt.umask().expect("umask again"), um, "umask not put back");
    let tp = rt.task_prctl().expect("task prctl");
    assert_eq!(tp.dumpable, 1);
    let th = rt.thread_prctl().expect("thread prctl");
    let comm = std::fs::read(format!("/proc/{pid}/comm")).expect("comm");
    assert_eq!(th.name, comm.strip_suffix(b"\n").expect("newline"));
    assert_ne!(th.tid_address, 0, "glibc sets clear_child_tid");
    match rt.membarrier_registrations() {
        Ok(m) => assert_eq!(m, 0),
        Err(e) => println!("membarrier registrations not available: {e}"),
    }
    let (head, len) = get_robust_list(pid).expect("robust list");
    assert!(head != 0 && len == 24, "{head:#x} {len}");
    let sp = sched_params(pid).expect("sched");
    assert_eq!((sp.policy, sp.priority), (libc::SCHED_OTHER, 0));

    // Scratch gone after release; registers and mask exactly as before.
    rt.finish().expect("finish");
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("maps");
    assert!(
        !maps.contains(&format!("{:x}-", s.addr)),
        "scratch still mapped"
    );
    let after = ptrace::get_regs(pid).expect("regs");
    assert_eq!(regs_bytes(&before), regs_bytes(&after));
    assert_eq!(ptrace::get_sigmask(pid).expect("mask"), mask_before);

    ptrace::detach(pid, 0).expect("detach");
    assert!(
        child.wait_output(Duration::from_secs(5)),
        "child did not resume"
    );
}

#[test]
fn poked_gadget_restores_text() {
    let child = Looper::spawn();
    let pid = child.pid;
    freeze(pid, Options::empty()).expect("freeze");
    let before = ptrace::get_regs(pid).expect("regs");
    let text = ptrace::peek(pid, before.rip).expect("peek");
    let mut rt = RemoteTask::with_gadget(pid, Gadget::PokeAtIp);
    assert_eq!(rt.getpid().expect("getpid"), pid.as_raw());
    assert_eq!(ptrace::peek(pid, before.rip).expect("peek"), text);
    let after = ptrace::get_regs(pid).expect("regs");
    assert_eq!(regs_bytes(&before), regs_bytes(&after));
    drop(rt);
    ptrace::detach(pid, 0).expect("detach");
    assert!(
        child.wait_output(Duration::from_secs(5)),
        "child did not resume"
    );
}

#[test]
fn caller_supplied_gadget() {
    let child = Looper::spawn();
    let pid = child.pid;
    freeze(pid, Options::empty()).expect("freeze");
    let addr = find_vdso_syscall(pid).expect("maps").expect("vdso");
    let mut rt = RemoteTask::with_gadget(pid, Gadget::At(addr));
    assert_eq!(rt.getpid().expect("getpid"), pid.as_raw());
    drop(rt);
    ptrace::detach(pid, 0).expect("detach");
}

#[test]
fn remote_calls_in_a_second_thread() {
    let child = Looper::spawn_threaded();
    let pid = child.pid;
    let mut tids = child.tids();
    for _ in 0..100 {
        if tids.len() == 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
        tids = child.tids();
    }
    assert_eq!(tids.len(), 2, "second thread missing");
    for &t in &tids {
        freeze(t, Options::PTRACE_O_TRACESYSGOOD).expect("freeze thread");
    }
    let t2 = tids[1];
    let before = ptrace::get_regs(t2).expect("regs");
    let mut rt = RemoteTask::new(pid, t2).expect("remote");
    // gettid() in the second thread is that thread's id; getpid() the process id.
    let tid = rt.call("gettid", libc::SYS_gettid, [0; 6]).expect("gettid");
    assert_eq!(tid as i32, t2.as_raw());
    assert_eq!(rt.getpid().expect("getpid"), pid.as_raw());
    // A scratch page mapped from one thread is visible to the other (one mm).
    let s = rt.scratch(4096).expect("scratch");
    let mut leader = RemoteTask::new(pid, pid).expect("leader");
    leader.adopt_scratch(s.addr, s.len);
    let name = leader.thread_prctl().expect("leader prctl").name;
    assert!(!name.is_empty());
    drop(leader);
    rt.finish().expect("finish");
    assert_eq!(
        regs_bytes(&before),
        regs_bytes(&ptrace::get_regs(t2).expect("regs"))
    );
    for &t in &tids {
        ptrace::detach(t, 0).expect("detach");
    }
    assert!(
        child.wait_output(Duration::from_secs(5)),
        "child did not resume"
    );
}

#[test]
fn signal_sent_while_frozen_does_not_disturb_remote_calls() {
    let child = Looper::spawn();
    let pid = child.pid;
    freeze(pid, Options::PTRACE_O_TRACESYSGOOD).expect("freeze");
    // SAFETY: signalling our own child (it handles SIGUSR1).
    assert_eq!(unsafe { libc::kill(pid.as_raw(), libc::SIGUSR1) }, 0);
    let mut rt = RemoteTask::new(pid, pid).expect("remote");
    for _ in 0..20 {
        assert_eq!(rt.getpid().expect("getpid"), pid.as_raw());
    }
    // Still pending, not consumed by our calls.
    let pending = ptrace::peek_siginfo(pid, ptrace::SigQueue::Shared).expect("peek");
    assert_eq!(pending.len(), 1);
    drop(rt);
    // Detaching delivers it to the handler; the child goes on.
    ptrace::detach(pid, 0).expect("detach");
    assert!(
        child.wait_output(Duration::from_secs(5)),
        "child did not resume"
    );
}

#[test]
fn interrupted_read_is_restarted_after_remote_calls() {
    let child = Echo::spawn();
    assert!(child.round_trip(b'a'), "echo child not working");
    let pid = child.pid;
    // Let it block in read() again.
    std::thread::sleep(Duration::from_millis(20));
    freeze(pid, Options::PTRACE_O_TRACESYSGOOD).expect("freeze");
    let before = ptrace::get_regs(pid).expect("regs");
    assert_eq!(
        before.orig_rax as i64,
        libc::SYS_read,
        "not sleeping in read()"
    );
    assert_eq!(before.rax as i64, -512, "rax should be -ERESTARTSYS");
    let mut rt = RemoteTask::new(pid, pid).expect("remote");
    rt.scratch(4096).expect("scratch");
    assert_eq!(rt.getpid().expect("getpid"), pid.as_raw());
    rt.finish().expect("finish");
    assert_eq!(
        regs_bytes(&before),
        regs_bytes(&ptrace::get_regs(pid).expect("regs"))
    );
    ptrace::detach(pid, 0).expect("detach");
    // The read() was restarted, not failed with EINTR (the child would exit with 5).
    assert!(child.round_trip(b'b'), "read() not restarted");
}

#[test]
fn pending_signals_are_requeued_exactly() {
    let child = Looper::spawn();
    let pid = child.pid;
    freeze(pid, Options::PTRACE_O_TRACESYSGOOD).expect("freeze");
    let mask = ptrace::get_sigmask(pid).expect("mask");
    let usr2 = 1u64 << (libc::SIGUSR2 - 1);
    let rt40 = 1u64 << (40 - 1);
    ptrace::set_sigmask(pid, mask | usr2 | rt40).expect("block");
    // A kernel-style siginfo (positive si_code) with a payload word, for each queue.
    let mut b = [0u8; 128];
    b[0..4].copy_from_slice(&libc::SIGUSR2.to_ne_bytes());
    b[8..12].copy_from_slice(&0x80i32.to_ne_bytes()); // SI_KERNEL
    b[16..24].copy_from_slice(&0x1122_3344_5566_7788u64.to_ne_bytes());
    let shared = ptrace::SigInfo(b);
    b[0..4].copy_from_slice(&40i32.to_ne_bytes());
    let private = ptrace::SigInfo(b);
    let mut rt = RemoteTask::new(pid, pid).expect("remote");
    rt.queue_signal(ptrace::SigQueue::Shared, &shared)
        .expect("queue shared");
    rt.queue_signal(ptrace::SigQueue::Thread, &private)
        .expect("queue private");
    rt.finish().expect("finish");
    let s = ptrace::peek_siginfo(pid, ptrace::SigQueue::Shared).expect("peek");
    let p = ptrace::peek_siginfo(pid, ptrace::SigQueue::Thread).expect("peek");
    assert_eq!(s, vec![shared]);
    assert_eq!(p, vec![private]);
    ptrace::detach(pid, 0).expect("detach");
}
