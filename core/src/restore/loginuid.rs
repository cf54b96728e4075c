//! The audit login uid (`/proc/PID/loginuid`, `task_core_entry.loginuid`), as CRIU's
//! `prepare_loginuid`: the kernel lets a task write only its own loginuid, so the restored
//! task writes `/proc/self/loginuid` itself, by remote syscalls, while it still has criu's
//! credentials (changing a set loginuid needs CAP_AUDIT_CONTROL).

use std::path::Path;

use super::error::{RestoreError, Result};
use super::rexec::{RemoteThread, write_mem};

/// `AUDIT_UID_UNSET`: no login uid.
pub const UNSET: u32 = u32::MAX;

/// What to do with a task whose dumped loginuid is `dumped` and whose current one (inherited
/// from criu) is `current` (`None`: this kernel has no loginuid, CONFIG_AUDIT off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Nothing to write: already that value, or no value was dumped.
    Keep,
    /// Write this value.
    Write(u32),
    /// The image has a login uid this kernel cannot hold.
    NoKernelSupport(u32),
}

/// Decides what [`restore`] does.
pub fn plan(dumped: Option<u32>, current: Option<u32>) -> Plan {
    match (dumped, current) {
        (None, _) => Plan::Keep,
        (Some(UNSET), None) => Plan::Keep,
        (Some(d), None) => Plan::NoKernelSupport(d),
        (Some(d), Some(c)) if d == c => Plan::Keep,
        (Some(d), Some(_)) => Plan::Write(d),
    }
}

/// Sets the loginuid of the task of `rt` to `dumped`; `scratch` is writable task memory.
pub fn restore(rt: &mut RemoteThread, dumped: Option<u32>, scratch: u64) -> Result<()> {
    let own = format!("/proc/{}/loginuid", rt.tid);
    let current = if Path::new("/proc/self/loginuid").exists() {
        let text = std::fs::read_to_string(&own).map_err(|e| RestoreError::Task {
            pid: rt.pid,
            tid: rt.tid.as_raw(),
            step: "reading the loginuid".into(),
            reason: format!("{own}: {e}"),
        })?;
        text.trim().parse::<u32>().ok()
    } else {
        None
    };
    match plan(dumped, current) {
        Plan::Keep => Ok(()),
        Plan::NoKernelSupport(d) => Err(RestoreError::Unsupported {
            pid: rt.pid,
            what: format!("loginuid {d}"),
            hint: "this kernel has no /proc/PID/loginuid (CONFIG_AUDIT off): restore on a \
                   kernel with audit support",
        }),
        Plan::Write(d) => {
            rt.step = format!("setting the loginuid to {d}");
            let value = d.to_string();
            let (path, text) = (scratch, scratch + 64);
            write_mem(rt, path, b"/proc/self/loginuid\0")?;
            write_mem(rt, text, value.as_bytes())?;
            let fd = rt.call(
                "open(/proc/self/loginuid)",
                libc::SYS_open,
                [path, (libc::O_WRONLY | libc::O_CLOEXEC) as u64, 0, 0, 0, 0],
            )?;
            let wrote = rt.raw(libc::SYS_write, [fd, text, value.len() as u64, 0, 0, 0]);
            rt.call("close", libc::SYS_close, [fd, 0, 0, 0, 0, 0])?;
            let wrote = wrote?;
            if wrote != value.len() as i64 {
                return Err(RestoreError::Task {
                    pid: rt.pid,
                    tid: rt.tid.as_raw(),
                    step: rt.step.clone(),
                    reason: format!(
                        "write to /proc/self/loginuid returned {wrote} (needs CAP_AUDIT_CONTROL \
                         to change a set loginuid)"
                    ),
                });
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans() {
        assert_eq!(plan(None, Some(5)), Plan::Keep);
        assert_eq!(plan(Some(3), Some(3)), Plan::Keep);
        assert_eq!(plan(Some(3), Some(UNSET)), Plan::Write(3));
        assert_eq!(plan(Some(UNSET), Some(1000)), Plan::Write(UNSET));
        assert_eq!(plan(Some(UNSET), None), Plan::Keep);
        assert_eq!(plan(Some(3), None), Plan::NoKernelSupport(3));
    }
}
