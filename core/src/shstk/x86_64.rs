//! x86_64: a frozen thread's shadow-stack state at dump, and the check of a shadow-stack
//! area found in smaps. Restore's syscalls are in [`restore`].

use criu_proto::images::UserX86CetEntry;
use criu_shstk::x86;
use nix::errno::Errno;
use nix::unistd::Pid;

use crate::dump::DumpError;
use crate::sys::ptrace;

pub mod restore;

/// The CET state of thread `tid` of `pid` (frozen under us), in CRIU's form; `None` when its
/// shadow stack is off or this kernel has none (`ARCH_SHSTK_STATUS` answers EINVAL there:
/// no thread can have one). A thread whose stack is on but whose SSP cannot be read is
/// refused: a restore without its pointer would crash it at its first `RET`.
pub fn dump_thread(pid: i32, tid: i32) -> Result<Option<UserX86CetEntry>, DumpError> {
    let t = Pid::from_raw(tid);
    let features = match ptrace::shstk_status(t) {
        Ok(f) => f,
        Err(e) if e.errno() == Some(Errno::EINVAL) => return Ok(None),
        Err(e) => return Err(DumpError::ptrace(pid, "shadow stack", e)),
    };
    if features & x86::ARCH_SHSTK_SHSTK == 0 {
        return Ok(None);
    }
    let ssp = ptrace::get_ssp(t).map_err(|e| DumpError::Unsupported {
        pid,
        step: "shadow stack",
        what: format!(
            "thread {tid} runs with a shadow stack (features {features:#x}) whose pointer \
             cannot be read ({e})"
        ),
        hint: "this kernel does not export NT_X86_SHSTK; dump on Linux 6.6+",
    })?;
    tracing::debug!(pid, tid, features, ssp, "shadow stack");
    Ok(Some(UserX86CetEntry { cet: features, ssp }))
}

/// A shadow-stack area (`VmFlags: ss`) of `pid`: refused when this host cannot read
/// shadow-stack state, since its threads' pointers would be missing from the images.
pub fn dump_area(pid: i32, start: u64, end: u64) -> Result<(), DumpError> {
    let host = super::host_support();
    if let Err(lacks) = host.restorable() {
        return Err(DumpError::Unsupported {
            pid,
            step: "memory",
            what: format!(
                "shadow-stack area {start:#x}-{end:#x} (VmFlags ss), but this host cannot \
                 read shadow-stack state: {lacks}"
            ),
            hint: "dump it on a host with CET user shadow stacks (user_shstk) and Linux 6.6+",
        });
    }
    Ok(())
}
