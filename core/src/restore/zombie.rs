//! Zombies: forked by their restored parent like any task (same PID, session, group), kept
//! stopped until the whole tree exists (a dead group leader's group must exist while its
//! members join it), then released into `exit_group(status)` or a fatal `kill(self, sig)`,
//! as CRIU's `restore_one_zombie` does. The parent later reaps the same wait status.
//!
//! The exit raises SIGCHLD in the parent; like CRIU we leave it pending there (a parent must
//! tolerate a SIGCHLD for a child it has not reaped yet).

use std::time::{Duration, Instant};

use super::error::{RestoreError, Result};
use super::rexec::{RemoteThread, write_mem};

/// A zombie created and stopped, waiting to be released.
#[derive(Debug)]
pub struct PendingZombie {
    pub rt: RemoteThread,
    /// Wait status as `/proc/PID/stat` reported it (CRIU's `exit_code`).
    pub exit_code: u32,
    pub comm: String,
    /// The gadget's data area in the zombie (a copy of its parent's).
    pub data: u64,
}

/// Signals whose default action does not end the task: a zombie "killed" by one of them
/// exits with SIGABRT instead, as in CRIU.
fn fatal(sig: i32) -> bool {
    !matches!(
        sig,
        libc::SIGCHLD
            | libc::SIGCONT
            | libc::SIGURG
            | libc::SIGWINCH
            | libc::SIGSTOP
            | libc::SIGTSTP
            | libc::SIGTTIN
            | libc::SIGTTOU
    ) && (1..=64).contains(&sig)
}

/// Lets `z` die with its dumped status and waits until it is a zombie again.
pub fn release(mut z: PendingZombie) -> Result<()> {
    let pid = z.rt.pid;
    z.rt.step = "releasing the zombie".into();
    // comm, NUL-terminated, at most 16 bytes.
    let mut name = [0u8; 16];
    let c = z.comm.as_bytes();
    name[..c.len().min(15)].copy_from_slice(&c[..c.len().min(15)]);
    write_mem(&z.rt, z.data, &name)?;
    z.rt.call(
        "prctl(PR_SET_NAME)",
        libc::SYS_prctl,
        [libc::PR_SET_NAME as u64, z.data, 0, 0, 0, 0],
    )?;
    let sig = (z.exit_code & 0x7f) as i32;
    if sig != 0 {
        let sig = if fatal(sig) { sig } else { libc::SIGABRT };
        // Zeroed rlimit (no core dump), zeroed sigaction (SIG_DFL), empty mask.
        write_mem(&z.rt, z.data, &[0u8; 64])?;
        z.rt.call(
            "prlimit64(RLIMIT_CORE)",
            libc::SYS_prlimit64,
            [0, libc::RLIMIT_CORE as u64, z.data, 0, 0, 0],
        )?;
        // SIGKILL can be neither caught nor blocked (rt_sigaction refuses it with EINVAL):
        // it kills as it is.
        if sig != libc::SIGKILL {
            z.rt.call(
                "rt_sigaction",
                libc::SYS_rt_sigaction,
                [sig as u64, z.data, 0, 8, 0, 0],
            )?;
            z.rt.call(
                "rt_sigprocmask",
                libc::SYS_rt_sigprocmask,
                [libc::SIG_SETMASK as u64, z.data, 0, 8, 0, 0],
            )?;
        }
        z.rt.detach_into(libc::SYS_kill, [pid as u64, sig as u64, 0, 0, 0, 0])?;
    } else {
        let code = u64::from((z.exit_code >> 8) & 0xff);
        z.rt.detach_into(libc::SYS_exit_group, [code, 0, 0, 0, 0, 0])?;
    }
    // The parent must find it dead when it next runs.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match crate::proc::stat::read_stat(z.rt.tid.as_raw()) {
            Ok(st) if st.state == 'Z' || st.state == 'X' => return Ok(()),
            Ok(_) => {}
            Err(_) => return Ok(()),
        }
        if Instant::now() >= deadline {
            return Err(RestoreError::Task {
                pid,
                tid: pid,
                step: "releasing the zombie".into(),
                reason: "it did not exit within 5 s".into(),
            });
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
