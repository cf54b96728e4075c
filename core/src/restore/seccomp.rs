//! seccomp filters: each thread installs its own chain (oldest first) with remote
//! `seccomp(SECCOMP_SET_MODE_FILTER)`, after its threads exist (new threads would inherit
//! the filters) and while it still holds CAP_SYS_ADMIN (before its credentials are set).
//! Our remote syscalls are not filtered: the tasks are traced with PTRACE_O_SUSPEND_SECCOMP,
//! and the filters take effect when we detach.

use criu_proto::images::{SeccompEntry, SeccompFilter};

use super::error::{Result, bad};
use super::imgread::{self as img, Images};
use super::plan::{TaskPlan, ThreadPlan};
use super::rexec::{RemoteThread, write_mem};
use super::spawn::GADGET_DATA_SIZE;

const SECCOMP_SET_MODE_FILTER: u64 = 1;
const SECCOMP_MODE_FILTER: i32 = 2;

/// `seccomp.img`, when the dump wrote one.
pub fn load(images: &Images) -> Result<Vec<SeccompFilter>> {
    if !images.exists("seccomp.img") {
        return Ok(Vec::new());
    }
    let e: SeccompEntry = images.single("seccomp.img", img::SECCOMP_MAGIC)?;
    Ok(e.seccomp_filters)
}

/// The chain of `th`, oldest filter first; empty without seccomp.
pub fn chain<'f>(filters: &'f [SeccompFilter], th: &ThreadPlan) -> Result<Vec<&'f SeccompFilter>> {
    match th.tc.seccomp_mode.unwrap_or(0) {
        0 => return Ok(Vec::new()),
        SECCOMP_MODE_FILTER => {}
        m => {
            return Err(bad(
                &th.image,
                Some(0),
                format!("seccomp mode {m} (strict) is not restored"),
            ));
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

/// Installs `th`'s chain in its thread `rt`.
pub fn install(
    rt: &mut RemoteThread,
    filters: &[SeccompFilter],
    th: &ThreadPlan,
    t: &TaskPlan,
    data: u64,
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
        rt.call(
            "seccomp(SECCOMP_SET_MODE_FILTER)",
            libc::SYS_seccomp,
            [
                SECCOMP_SET_MODE_FILTER,
                u64::from(f.flags.unwrap_or(0)),
                data,
                0,
                0,
                0,
            ],
        )?;
    }
    Ok(())
}
