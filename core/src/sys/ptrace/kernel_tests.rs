//! Real-kernel tests: freeze a forked child, read its state, let it go.

use std::time::Duration;

use super::*;
use crate::sys::testutil::Looper;

#[test]
fn freeze_read_state_and_detach() {
    let child = Looper::spawn();
    let tid = child.pid;
    let state = freeze(tid, Options::PTRACE_O_TRACESYSGOOD).expect("freeze");
    assert_eq!(state, FrozenState::Running);
    // Frozen: no output.
    assert!(
        !child.wait_output(Duration::from_millis(100)),
        "still running"
    );

    let regs = get_regs(tid).expect("regs");
    assert_eq!(regs.cs, 0x33, "64-bit code segment");
    assert_ne!(regs.rip, 0);
    let fs = arch_prctl_get(tid, kabi::ARCH_GET_FS).expect("arch_prctl");
    assert_eq!(fs, regs.fs_base);

    let fp = get_fpregs(tid).expect("fpregs");
    let xs = get_xsave(tid).expect("xsave");
    // The legacy part of XSAVE is the FXSAVE area: mxcsr at offset 24.
    let mxcsr = u32::from_le_bytes(xs.as_bytes()[24..28].try_into().expect("4 bytes"));
    assert_eq!(mxcsr, fp.mxcsr);
    set_xsave(tid, &xs).expect("set xsave back");
    // A longer buffer (e.g. sized from CPUID) is clamped by the kernel; a shorter one fails.
    let mut long = xs.as_bytes().to_vec();
    long.resize(xsave_buffer_size().max(long.len()) + 4096, 0);
    set_xsave(tid, &XSave::from_bytes(long).expect("size")).expect("longer xsave");
    let short = XSave::from_bytes(xs.as_bytes()[..576].to_vec()).expect("size");
    assert!(
        set_xsave(tid, &short).is_err(),
        "short XSAVE buffer accepted"
    );
    assert_eq!(get_xsave(tid).expect("xsave again"), xs);
    set_fpregs(tid, &fp).expect("set fpregs back");

    let mask = get_sigmask(tid).expect("sigmask");
    set_sigmask(tid, mask | (1 << (libc::SIGUSR2 - 1))).expect("setsigmask");
    assert_eq!(
        get_sigmask(tid).expect("sigmask"),
        mask | (1 << (libc::SIGUSR2 - 1))
    );
    set_sigmask(tid, mask).expect("restore sigmask");

    assert!(
        peek_siginfo(tid, SigQueue::Thread)
            .expect("peek")
            .is_empty()
    );
    assert!(
        peek_siginfo(tid, SigQueue::Shared)
            .expect("peek")
            .is_empty()
    );
    let si = get_siginfo(tid).expect("siginfo");
    assert_eq!(si.signo(), libc::SIGTRAP);
    assert_eq!((si.code() >> 8) & 0xff, libc::PTRACE_EVENT_STOP);

    let tls = get_tls_entries(tid).expect("tls");
    assert_eq!(tls.len(), 3);
    assert_eq!(tls[0].entry_number, 12);
    // Install a descriptor in slot 13, read it back, then put the original back.
    let desc = kabi::user_desc {
        entry_number: 13,
        base_addr: 0x1000,
        limit: 0xfff,
        flags: 1 | (1 << 6), // seg_32bit, useable
    };
    set_thread_area(tid, &desc).expect("set_thread_area");
    let got = get_thread_area(tid, 13).expect("get_thread_area");
    assert_eq!((got.base_addr, got.limit), (0x1000, 0xfff));
    assert!(got.seg_32bit() && got.usable());
    set_thread_area(tid, &tls[1]).expect("restore slot 13");
    assert_eq!(get_thread_area(tid, 13).expect("again"), tls[1]);

    match get_rseq_config(tid) {
        // glibc 2.36 (Debian 12) registers rseq in every thread.
        Ok(c) => assert!(c.is_unregistered() || c.rseq_abi_size >= 20, "{c:?}"),
        Err(e) => println!("skip rseq part: {e}"),
    }

    set_regs(tid, &regs).expect("set regs");
    detach(tid, 0).expect("detach");
    assert!(
        child.wait_output(Duration::from_secs(5)),
        "child did not resume"
    );
}

#[test]
fn queued_signals_are_peeked() {
    let child = Looper::spawn();
    let tid = child.pid;
    freeze(tid, Options::empty()).expect("freeze");
    // Block SIGUSR2 in the child, then queue it: it stays pending in the shared queue.
    let mask = get_sigmask(tid).expect("mask");
    set_sigmask(tid, mask | (1 << (libc::SIGUSR2 - 1))).expect("block");
    // SAFETY: kill on our own child.
    assert_eq!(unsafe { libc::kill(tid.as_raw(), libc::SIGUSR2) }, 0);
    let shared = peek_siginfo(tid, SigQueue::Shared).expect("peek shared");
    assert_eq!(shared.len(), 1);
    assert_eq!(shared[0].signo(), libc::SIGUSR2);
    // SAFETY: tgkill on our own child's main thread.
    let r = unsafe { libc::syscall(libc::SYS_tgkill, tid.as_raw(), tid.as_raw(), libc::SIGUSR2) };
    assert_eq!(r, 0);
    let private = peek_siginfo(tid, SigQueue::Thread).expect("peek thread");
    assert_eq!(private.len(), 1);
    detach(tid, 0).expect("detach");
}

/// Waits until /proc says the task is stopped ('T').
fn wait_state_t(tid: Pid) {
    for _ in 0..1000 {
        let s = std::fs::read_to_string(format!("/proc/{tid}/stat")).expect("stat");
        if s.rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('T'))
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    panic!("{tid} never stopped");
}

#[test]
fn stopped_task_freezes_runs_remote_calls_and_stays_stopped() {
    let child = Looper::spawn();
    let tid = child.pid;
    // SAFETY: signalling our own child.
    assert_eq!(unsafe { libc::kill(tid.as_raw(), libc::SIGSTOP) }, 0);
    wait_state_t(tid);
    let state = freeze(tid, Options::PTRACE_O_TRACESYSGOOD).expect("freeze");
    assert_eq!(state, FrozenState::Stopped { sig: libc::SIGSTOP });
    let mut rt = crate::sys::remote::RemoteTask::new(tid, tid).expect("remote");
    assert_eq!(rt.getpid().expect("getpid"), tid.as_raw());
    drop(rt);
    detach(tid, 0).expect("detach");
    wait_state_t(tid);
    assert!(
        !child.wait_output(Duration::from_millis(100)),
        "runs after detach"
    );
    // SAFETY: signalling our own child.
    assert_eq!(unsafe { libc::kill(tid.as_raw(), libc::SIGCONT) }, 0);
    assert!(
        child.wait_output(Duration::from_secs(5)),
        "no resume after SIGCONT"
    );
}

#[test]
fn pending_signal_is_delivered_before_the_freeze() {
    let child = Looper::spawn();
    let tid = child.pid;
    seize(tid, Options::empty()).expect("seize");
    // SAFETY: signalling our own child (it has a SIGUSR1 handler).
    assert_eq!(unsafe { libc::kill(tid.as_raw(), libc::SIGUSR1) }, 0);
    std::thread::sleep(Duration::from_millis(20));
    // The signal-delivery stop is already waiting: stopping must deliver it and go on to
    // the interrupt trap.
    let state = stop_seized(tid).expect("stop");
    assert_eq!(state, FrozenState::Running);
    let si = get_siginfo(tid).expect("siginfo");
    assert_eq!((si.code() >> 8) & 0xff, libc::PTRACE_EVENT_STOP);
    detach(tid, 0).expect("detach");
    assert!(
        child.wait_output(Duration::from_secs(5)),
        "child did not resume"
    );
}

/// A stopped task that was sent SIGSTOP again (process-wide and to the thread: zdtm's
/// stopped12) has those signals queued; resuming it for a remote call must not dequeue them.
#[test]
fn stopped_task_with_queued_sigstops_runs_remote_calls() {
    let child = Looper::spawn();
    let tid = child.pid;
    // SAFETY: signalling our own child.
    assert_eq!(unsafe { libc::kill(tid.as_raw(), libc::SIGSTOP) }, 0);
    wait_state_t(tid);
    // SAFETY: signalling our own child, process-wide then to its only thread.
    unsafe {
        assert_eq!(libc::kill(tid.as_raw(), libc::SIGSTOP), 0);
        assert_eq!(
            libc::syscall(libc::SYS_tkill, tid.as_raw(), libc::SIGSTOP),
            0
        );
    }
    let state = freeze(tid, Options::PTRACE_O_TRACESYSGOOD).expect("freeze");
    assert_eq!(state, FrozenState::Stopped { sig: libc::SIGSTOP });
    for q in [SigQueue::Thread, SigQueue::Shared] {
        assert!(peek_siginfo(tid, q).expect("peek").is_empty(), "{q:?}");
    }
    let mut rt = crate::sys::remote::RemoteTask::new(tid, tid).expect("remote");
    for _ in 0..3 {
        assert_eq!(rt.getpid().expect("getpid"), tid.as_raw());
    }
    drop(rt);
    detach(tid, 0).expect("detach");
    wait_state_t(tid);
    assert!(
        !child.wait_output(Duration::from_millis(100)),
        "runs after detach"
    );
    // SAFETY: signalling our own child.
    assert_eq!(unsafe { libc::kill(tid.as_raw(), libc::SIGCONT) }, 0);
    assert!(
        child.wait_output(Duration::from_secs(5)),
        "no resume after SIGCONT"
    );
}

/// Two threads, the process stopped and sent SIGSTOP again plus one to the second thread:
/// every thread freezes as stopped, runs remote calls, and SIGCONT wakes the process.
#[test]
fn stopped_threads_with_queued_sigstops_run_remote_calls() {
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
    // SAFETY: signalling our own child.
    assert_eq!(unsafe { libc::kill(pid.as_raw(), libc::SIGSTOP) }, 0);
    wait_state_t(pid);
    // SAFETY: signalling our own child, process-wide then to its second thread.
    unsafe {
        assert_eq!(libc::kill(pid.as_raw(), libc::SIGSTOP), 0);
        let r = libc::syscall(
            libc::SYS_tgkill,
            pid.as_raw(),
            tids[1].as_raw(),
            libc::SIGSTOP,
        );
        assert_eq!(r, 0);
    }
    for &t in &tids {
        let state = freeze(t, Options::PTRACE_O_TRACESYSGOOD).expect("freeze");
        assert_eq!(
            state,
            FrozenState::Stopped { sig: libc::SIGSTOP },
            "tid {t}"
        );
    }
    for &t in &tids {
        let mut rt = crate::sys::remote::RemoteTask::new(pid, t).expect("remote");
        assert_eq!(rt.getpid().expect("getpid"), pid.as_raw(), "tid {t}");
    }
    for &t in &tids {
        detach(t, 0).expect("detach");
    }
    wait_state_t(pid);
    assert!(
        !child.wait_output(Duration::from_millis(100)),
        "runs after detach"
    );
    // SAFETY: signalling our own child.
    assert_eq!(unsafe { libc::kill(pid.as_raw(), libc::SIGCONT) }, 0);
    assert!(
        child.wait_output(Duration::from_secs(5)),
        "no resume after SIGCONT"
    );
}

/// Shadow-stack state through ptrace agrees with what this host supports: on a CPU without
/// user shadow stacks the kernel does not know ARCH_SHSTK_STATUS (EINVAL) and has no
/// NT_X86_SHSTK regset (ENODEV); with one, a child without a shadow stack reports none.
/// `/proc/PID/mem` (the restore's FOLL_FORCE access) reads and writes the child's memory.
#[test]
fn shadow_stack_state_and_task_memory_of_a_frozen_child() {
    use crate::shstk::x86_64::restore::TaskMem;
    use criu_shstk::x86;
    static MARK: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0x5157_4b00);
    let child = Looper::spawn();
    let tid = child.pid;
    freeze(tid, Options::empty()).expect("freeze");
    let host = crate::shstk::host_support();
    let status = shstk_status(tid);
    if host.cpu {
        let features = status.expect("ARCH_SHSTK_STATUS with user_shstk");
        if features & x86::ARCH_SHSTK_SHSTK != 0 {
            let ssp = get_ssp(tid).expect("NT_X86_SHSTK");
            set_ssp(tid, ssp).expect("same ssp back");
        } else {
            assert_eq!(get_ssp(tid).unwrap_err().errno(), Some(Errno::ENODEV));
        }
    } else {
        assert_eq!(status.unwrap_err().errno(), Some(Errno::EINVAL));
        // ENODEV: the regset exists but the CPU has no shadow stack; EINVAL: a kernel built
        // without CONFIG_X86_USER_SHADOW_STACK has no such regset.
        let no_regset = [Some(Errno::ENODEV), Some(Errno::EINVAL)];
        assert!(no_regset.contains(&get_ssp(tid).unwrap_err().errno()));
        let set = set_ssp(tid, 0x7000_0000_0000).unwrap_err().errno();
        assert!(no_regset.contains(&set), "{set:?}");
        let lock = shstk_control(tid, x86::ARCH_SHSTK_LOCK, x86::ARCH_SHSTK_SHSTK);
        assert_eq!(lock.unwrap_err().errno(), Some(Errno::EINVAL));
    }

    // The child is a fork of this process: MARK is at the same address there.
    let addr = MARK.as_ptr() as u64;
    let mem = TaskMem::open(tid.as_raw()).expect("/proc/PID/mem");
    assert_eq!(
        mem.read(addr, 8).expect("read"),
        0x5157_4b00u64.to_le_bytes()
    );
    mem.write(addr, &0x1234u64.to_le_bytes()).expect("write");
    assert_eq!(
        mem.read(addr, 8).expect("read back"),
        0x1234u64.to_le_bytes()
    );
    assert_eq!(
        MARK.load(std::sync::atomic::Ordering::Relaxed),
        0x5157_4b00,
        "ours unchanged"
    );
    assert!(mem.read(8, 8).is_err(), "page 0 is not mapped");
    detach(tid, 0).expect("detach");
}
