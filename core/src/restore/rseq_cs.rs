//! The `rseq_cs` pointer of a thread dumped inside a no-restart rseq critical section
//! (`rseq_entry.rseq_cs_pointer`, see `dump::rseq`), written back into its `struct rseq`
//! once nothing of the restore runs in the thread any more: the registration and every
//! remote syscall after it return to user space outside the section, and the kernel clears
//! the field each time.

use nix::unistd::Pid;

use super::error::{RestoreError, Result};
use super::ns::pid::TaskPids;
use super::plan::RestorePlan;

/// Offset of `rseq_cs` in `struct rseq` (uapi).
const RSEQ_CS_OFFSET: u64 = 8;

/// Writes back every saved `rseq_cs` pointer (threads stopped under us, right before they
/// are released).
pub(crate) fn restore_cs_pointers(plan: &RestorePlan, pids: &TaskPids) -> Result<()> {
    for t in plan.tasks.iter().filter(|t| !t.is_zombie()) {
        for th in &t.threads {
            let Some(r) = &th.tc.rseq_entry else { continue };
            let Some(cs) = r.rseq_cs_pointer.filter(|&p| p != 0) else {
                continue;
            };
            if r.rseq_abi_pointer == 0 {
                continue;
            }
            let addr = r.rseq_abi_pointer + RSEQ_CS_OFFSET;
            // The thread as criu's pid namespace sees it.
            let host = pids.host(th.tid).unwrap_or(Pid::from_raw(th.tid));
            crate::sys::vm::write_all(host, addr, &cs.to_ne_bytes()).map_err(|e| {
                RestoreError::Task {
                    pid: t.pid,
                    tid: th.tid,
                    step: "restoring the rseq_cs pointer".into(),
                    reason: format!("writing {cs:#x} at {addr:#x}: {e}"),
                }
            })?;
            tracing::debug!(pid = t.pid, tid = th.tid, cs, "rseq_cs pointer restored");
        }
    }
    Ok(())
}
