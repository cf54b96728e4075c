//! `mq_notify` registrations, which belong to the registering process: they are made and
//! learnt through remote system calls inside that process (a scratch page mapped there for
//! the `sigevent`/`siginfo`, unmapped after).
//!
//! The kernel shows a registration's pid, kind and signal (the queue's status line) but not
//! its `sigev_value`. The dump learns it the one way the kernel gives it out: by letting the
//! notification fire (a message sent to the empty queue) while the owner is frozen, taking
//! the queued signal back out of the owner with a remote `rt_sigtimedwait` (which hands over
//! its `siginfo`, `si_value` included), and registering again from inside the owner with
//! the same `sigevent`. The owner sees nothing of it.

use criu_plugin_api::{DumpContext, PluginError, RestoreContext};

use crate::image::NotifyEntry;

const PAGE: u64 = 4096;
/// Offsets in the scratch page: a sigset, a zero timespec, a siginfo, a sigevent.
const SET_OFF: u64 = 0;
const TIMEOUT_OFF: u64 = 16;
const INFO_OFF: u64 = 64;
const EVENT_OFF: u64 = 256;
/// `sizeof(siginfo_t)` and `sizeof(struct sigevent)` on Linux.
const SIGINFO_LEN: usize = 128;
const SIGEVENT_LEN: usize = 64;
/// Offsets in `siginfo_t`: `si_code`, and `si_value` of the `_rt` member.
const SI_CODE_OFF: usize = 8;
const SI_VALUE_OFF: usize = 24;

/// The task services both a dump and a restore offer, for the calls below.
pub trait Remote {
    /// [`DumpContext::remote_syscall`] / [`RestoreContext::remote_syscall`].
    fn syscall(&mut self, tid: i32, nr: i64, args: [u64; 6]) -> Result<i64, PluginError>;
    /// Reads task memory.
    fn read(&mut self, pid: i32, addr: u64, buf: &mut [u8]) -> Result<(), PluginError>;
    /// Writes task memory.
    fn write(&mut self, pid: i32, addr: u64, data: &[u8]) -> Result<(), PluginError>;
}

impl Remote for dyn DumpContext + '_ {
    fn syscall(&mut self, tid: i32, nr: i64, args: [u64; 6]) -> Result<i64, PluginError> {
        self.remote_syscall(tid, nr, args)
    }
    fn read(&mut self, pid: i32, addr: u64, buf: &mut [u8]) -> Result<(), PluginError> {
        self.read_task_memory(pid, addr, buf)
    }
    fn write(&mut self, pid: i32, addr: u64, data: &[u8]) -> Result<(), PluginError> {
        self.write_task_memory(pid, addr, data)
    }
}

impl Remote for dyn RestoreContext + '_ {
    fn syscall(&mut self, tid: i32, nr: i64, args: [u64; 6]) -> Result<i64, PluginError> {
        self.remote_syscall(tid, nr, args)
    }
    fn read(&mut self, pid: i32, addr: u64, buf: &mut [u8]) -> Result<(), PluginError> {
        self.read_task_memory(pid, addr, buf)
    }
    fn write(&mut self, pid: i32, addr: u64, data: &[u8]) -> Result<(), PluginError> {
        self.write_task_memory(pid, addr, data)
    }
}

fn failed(pid: i32, op: String, raw: i64) -> PluginError {
    PluginError::Task {
        pid,
        op,
        source: std::io::Error::from_raw_os_error(-raw as i32).into(),
    }
}

/// Runs system call `nr` in `pid`; a `-errno` result is an error naming `what`.
fn call<R: Remote + ?Sized>(
    r: &mut R,
    pid: i32,
    nr: i64,
    args: [u64; 6],
    what: &str,
) -> Result<i64, PluginError> {
    let raw = r.syscall(pid, nr, args)?;
    if (-4095..0).contains(&raw) {
        return Err(failed(pid, format!("remote {what}"), raw));
    }
    Ok(raw)
}

/// Runs `f` with a fresh private page mapped in `pid`, unmapped afterwards.
fn with_scratch<R: Remote + ?Sized, T>(
    r: &mut R,
    pid: i32,
    f: impl FnOnce(&mut R, u64) -> Result<T, PluginError>,
) -> Result<T, PluginError> {
    let prot = (libc::PROT_READ | libc::PROT_WRITE) as u64;
    let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
    let addr = call(
        r,
        pid,
        libc::SYS_mmap,
        [0, PAGE, prot, flags, u64::MAX, 0],
        "mmap",
    )? as u64;
    let out = f(r, addr);
    let unmapped = call(r, pid, libc::SYS_munmap, [addr, PAGE, 0, 0, 0, 0], "munmap");
    let out = out?;
    unmapped?;
    Ok(out)
}

/// The `struct sigevent` of a registration.
pub fn sigevent_bytes(n: &NotifyEntry) -> [u8; SIGEVENT_LEN] {
    let mut ev = [0u8; SIGEVENT_LEN];
    ev[0..8].copy_from_slice(&n.value.to_ne_bytes());
    ev[8..12].copy_from_slice(&n.signo.to_ne_bytes());
    ev[12..16].copy_from_slice(&n.sigev_notify.to_ne_bytes());
    ev
}

/// Registers `n` on the queue behind fd `fd` of `pid`, from inside `pid` (which becomes the
/// registration's owner, as `mq_notify` wants).
pub fn register<R: Remote + ?Sized>(
    r: &mut R,
    pid: i32,
    fd: i32,
    n: &NotifyEntry,
) -> Result<(), PluginError> {
    with_scratch(r, pid, |r, page| {
        r.write(pid, page + EVENT_OFF, &sigevent_bytes(n))?;
        let args = [fd as u64, page + EVENT_OFF, 0, 0, 0, 0];
        call(
            r,
            pid,
            libc::SYS_mq_notify,
            args,
            &format!("mq_notify on fd {fd}"),
        )?;
        Ok(())
    })
}

/// Takes the notification signal `signo` the kernel just queued to `pid` back out of it
/// and returns its `si_value`. An error when no such signal is pending or it is not a
/// queue's notification (`SI_MESGQ`).
pub fn take_notification<R: Remote + ?Sized>(
    r: &mut R,
    pid: i32,
    signo: i32,
) -> Result<u64, PluginError> {
    with_scratch(r, pid, |r, page| {
        let set: u64 = 1 << (signo - 1);
        r.write(pid, page + SET_OFF, &set.to_ne_bytes())?;
        r.write(pid, page + TIMEOUT_OFF, &[0u8; 16])?;
        let args = [page + SET_OFF, page + INFO_OFF, page + TIMEOUT_OFF, 8, 0, 0];
        let what = format!("rt_sigtimedwait for signal {signo}");
        let got = call(r, pid, libc::SYS_rt_sigtimedwait, args, &what)?;
        let mut info = [0u8; SIGINFO_LEN];
        r.read(pid, page + INFO_OFF, &mut info)?;
        let code = i32::from_ne_bytes(
            info[SI_CODE_OFF..SI_CODE_OFF + 4]
                .try_into()
                .unwrap_or_default(),
        );
        if got != signo as i64 || code != libc::SI_MESGQ {
            return Err(PluginError::Task {
                pid,
                op: format!("taking back the queue notification (signal {signo})"),
                source: format!("got signal {got} with si_code {code}").into(),
            });
        }
        let value = &info[SI_VALUE_OFF..SI_VALUE_OFF + 8];
        Ok(u64::from_ne_bytes(value.try_into().unwrap_or_default()))
    })
}

/// Whether `signo` is pending for process `pid` (its shared queue or its leader's).
pub fn pending(pid: i32, signo: i32) -> Result<bool, PluginError> {
    let bit = 1u64 << (signo - 1);
    for path in [
        format!("/proc/{pid}/status"),
        format!("/proc/{pid}/task/{pid}/status"),
    ] {
        let text = std::fs::read_to_string(&path).map_err(|source| PluginError::Path {
            path: path.clone().into(),
            op: "read",
            source,
        })?;
        for key in ["ShdPnd:", "SigPnd:"] {
            let set = text
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
                .unwrap_or(0);
            if set & bit != 0 {
                return Ok(true);
            }
        }
    }
    Ok(false)
}
