//! seccomp: each thread installs its own chain (oldest first) with remote
//! `seccomp(SECCOMP_SET_MODE_FILTER)`, after its threads exist (new threads would inherit
//! the filters) and while it still holds CAP_SYS_ADMIN (before its credentials are set).
//! When every thread of a task has the same chain, the leader alone installs it with
//! `SECCOMP_FILTER_FLAG_TSYNC`, so that the threads share the kernel's filters again, as
//! after a TSYNC install (CRIU does the same: only then can the program add a TSYNC filter
//! later). Strict mode (1) is entered the same way, `seccomp(SECCOMP_SET_MODE_STRICT)`.
//! Our remote syscalls are judged by neither: the tasks are traced with
//! PTRACE_O_SUSPEND_SECCOMP, and filters and strict mode take effect when we detach, so
//! whatever restore does in the task afterwards (credentials, final registers) still works.

use criu_proto::images::{SeccompEntry, SeccompFilter};

use super::error::{RestoreError, Result, bad};
use super::imgread::{self as img, Images};
use super::plan::{TaskPlan, ThreadPlan};
use super::rexec::{RemoteThread, write_mem};
use super::spawn::GADGET_DATA_SIZE;

const SECCOMP_SET_MODE_STRICT: u64 = 0;
const SECCOMP_SET_MODE_FILTER: u64 = 1;
const SECCOMP_FILTER_FLAG_TSYNC: u32 = 1;
const SECCOMP_MODE_STRICT: i32 = 1;
const SECCOMP_MODE_FILTER: i32 = 2;

/// `seccomp.img`, when the dump wrote one.
pub fn load(images: &Images) -> Result<Vec<SeccompFilter>> {
    if !images.exists("seccomp.img") {
        return Ok(Vec::new());
    }
    let e: SeccompEntry = images.single("seccomp.img", img::SECCOMP_MAGIC)?;
    Ok(e.seccomp_filters)
}

/// The filter chain of `th`, oldest filter first; empty without filters (also in strict
/// mode).
pub fn chain<'f>(filters: &'f [SeccompFilter], th: &ThreadPlan) -> Result<Vec<&'f SeccompFilter>> {
    match th.tc.seccomp_mode.unwrap_or(0) {
        0 | SECCOMP_MODE_STRICT => return Ok(Vec::new()),
        SECCOMP_MODE_FILTER => {}
        m => {
            return Err(bad(&th.image, Some(0), format!("unknown seccomp mode {m}")));
        }
    }
    let mut out = Vec::new();
    let mut at = th.tc.seccomp_filter;
    while let Some(i) = at {
        let f = filters.get(i as usize).ok_or_else(|| {
            bad(
                "seccomp.img",
                Some(i as usize),
                format!("filter {i} named by {} missing", th.image),
            )
        })?;
        if out.len() > filters.len() {
            return Err(bad("seccomp.img", Some(i as usize), "filter chain loops"));
        }
        out.push(f);
        at = f.prev;
    }
    if out.is_empty() {
        return Err(bad(
            &th.image,
            Some(0),
            "seccomp mode filter without filters",
        ));
    }
    out.reverse();
    Ok(out)
}

/// Whether every thread of `t` has the same filter chain (the same newest filter in
/// seccomp.img, where identical chains are stored once), so the leader installs it for all
/// with TSYNC.
pub fn shared_by_all_threads(t: &TaskPlan) -> bool {
    let mode = |th: &ThreadPlan| th.tc.seccomp_mode.unwrap_or(0);
    let leader = &t.threads[0];
    t.threads.len() > 1
        && mode(leader) == SECCOMP_MODE_FILTER
        && leader.tc.seccomp_filter.is_some()
        && t.threads[1..].iter().all(|th| {
            mode(th) == SECCOMP_MODE_FILTER && th.tc.seccomp_filter == leader.tc.seccomp_filter
        })
}

/// Restores the seccomp state of every thread of `t`: `leader` is the thread of
/// `t.threads[0]`, `others` those of the other threads in order.
pub fn install_task(
    leader: &mut RemoteThread,
    others: &mut [RemoteThread],
    filters: &[SeccompFilter],
    t: &TaskPlan,
    data: u64,
) -> Result<()> {
    if shared_by_all_threads(t) {
        tracing::debug!(pid = t.pid, "one filter chain for every thread: TSYNC");
        install(
            leader,
            filters,
            &t.threads[0],
            t,
            data,
            SECCOMP_FILTER_FLAG_TSYNC,
        )?;
    } else {
        install(leader, filters, &t.threads[0], t, data, 0)?;
        for (rt, th) in others.iter_mut().zip(&t.threads[1..]) {
            install(rt, filters, th, t, data, 0)?;
        }
    }
    strict(leader, &t.threads[0])?;
    for (rt, th) in others.iter_mut().zip(&t.threads[1..]) {
        strict(rt, th)?;
    }
    Ok(())
}

/// Strict mode for a thread that ran in it.
fn strict(rt: &mut RemoteThread, th: &ThreadPlan) -> Result<()> {
    if th.tc.seccomp_mode != Some(SECCOMP_MODE_STRICT) {
        return Ok(());
    }
    rt.step = "entering seccomp strict mode".into();
    rt.call(
        "seccomp(SECCOMP_SET_MODE_STRICT)",
        libc::SYS_seccomp,
        [SECCOMP_SET_MODE_STRICT, 0, 0, 0, 0, 0],
    )?;
    Ok(())
}

/// Installs `th`'s chain in its thread `rt`, each filter with its own flags and `extra`.
fn install(
    rt: &mut RemoteThread,
    filters: &[SeccompFilter],
    th: &ThreadPlan,
    t: &TaskPlan,
    data: u64,
    extra: u32,
) -> Result<()> {
    let chain = chain(filters, th)?;
    if chain.is_empty() {
        return Ok(());
    }
    rt.step = format!("installing {} seccomp filters", chain.len());
    for f in chain {
        let n = f.filter.len() / 8;
        if !f.filter.len().is_multiple_of(8)
            || n == 0
            || n > 4096
            || f.filter.len() as u64 + 16 > GADGET_DATA_SIZE
        {
            return Err(bad(
                "seccomp.img",
                None,
                format!("filter of {} bytes for pid {}", f.filter.len(), t.pid),
            ));
        }
        // struct sock_fprog { u16 len; (pad); struct sock_filter *filter; }
        let mut prog = (n as u16).to_le_bytes().to_vec();
        prog.extend_from_slice(&[0u8; 6]);
        prog.extend_from_slice(&(data + 16).to_le_bytes());
        write_mem(rt, data, &prog)?;
        write_mem(rt, data + 16, &f.filter)?;
        let flags = f.flags.unwrap_or(0) | extra;
        let r = rt.call(
            "seccomp(SECCOMP_SET_MODE_FILTER)",
            libc::SYS_seccomp,
            [SECCOMP_SET_MODE_FILTER, u64::from(flags), data, 0, 0, 0],
        )?;
        // With TSYNC, a positive answer is the thread that could not take the filter.
        if flags & SECCOMP_FILTER_FLAG_TSYNC != 0 && r != 0 {
            return Err(RestoreError::Task {
                pid: t.pid,
                tid: rt.tid.as_raw(),
                step: rt.step.clone(),
                reason: format!("TSYNC: thread {r} cannot take the filter chain"),
            });
        }
    }
    Ok(())
}
