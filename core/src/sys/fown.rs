//! The `SIGIO` owner of an open file description (`fcntl(2)` `F_GETOWN_EX`, `F_GETSIG`,
//! `F_GETOWNER_UIDS` and their setters), as CRIU's `fown_entry` records it.
//!
//! The owner, its signal and the uids are properties of the description, not of an fd, so
//! criu reads and sets them on its own duplicate of the description.

use std::os::fd::{AsRawFd, BorrowedFd};

use criu_plugin_api::FileOwner;
use criu_proto::images::FownEntry;
use nix::errno::Errno;

use super::kabi::{F_GETOWN_EX, F_GETOWNER_UIDS, F_GETSIG, F_SETOWN_EX, F_SETSIG, f_owner_ex};

/// A failed step: the `fcntl`/`setresuid` call and its errno.
pub type Failed = (&'static str, Errno);

fn check(call: &'static str, r: libc::c_long) -> Result<libc::c_long, Failed> {
    if r < 0 {
        Err((call, Errno::last()))
    } else {
        Ok(r)
    }
}

/// Reads the owner of `fd`'s description (all zero when none is set).
pub fn get(fd: BorrowedFd<'_>) -> Result<FileOwner, Failed> {
    let raw = fd.as_raw_fd();
    // SAFETY: F_GETSIG takes no argument.
    let signum = check("fcntl(F_GETSIG)", unsafe { libc::fcntl(raw, F_GETSIG) }
        as _)?;
    let mut owner = f_owner_ex::default();
    // SAFETY: F_GETOWN_EX writes one f_owner_ex into `owner`, which outlives the call.
    let r = unsafe { libc::fcntl(raw, F_GETOWN_EX, &mut owner as *mut f_owner_ex) };
    check("fcntl(F_GETOWN_EX)", r as _)?;
    let mut out = FileOwner {
        signum: signum as u32,
        ..FileOwner::default()
    };
    if owner.pid == 0 {
        return Ok(out);
    }
    let mut uids = [0u32; 2];
    // SAFETY: F_GETOWNER_UIDS writes two uid_t into `uids`, which outlives the call.
    let r = unsafe { libc::fcntl(raw, F_GETOWNER_UIDS, uids.as_mut_ptr()) };
    check("fcntl(F_GETOWNER_UIDS)", r as _)?;
    out.uid = uids[0];
    out.euid = uids[1];
    out.pid_type = owner.type_ as u32;
    out.pid = owner.pid as u32;
    Ok(out)
}

/// The thread's real, effective and saved uid.
fn getresuid() -> [libc::uid_t; 3] {
    let mut u = [0; 3];
    // SAFETY: getresuid writes three uid_t; the pointers are to distinct elements of `u`.
    unsafe {
        let p = u.as_mut_ptr();
        libc::getresuid(p, p.add(1), p.add(2));
    }
    u
}

/// `setresuid` of the calling thread only: the raw syscall, not glibc's wrapper, which
/// would change every thread of criu.
fn thread_setresuid(r: u32, e: u32, s: u32) -> Result<(), Failed> {
    // SAFETY: plain syscall without pointers.
    let rv = unsafe { libc::syscall(libc::SYS_setresuid, r, e, s) };
    check("setresuid", rv).map(drop)
}

/// Sets the owner recorded in `fown` on `fd`'s description, as CRIU does: `F_SETSIG`, then
/// `F_SETOWN_EX` under the recorded real and effective uid (the kernel stores the caller's
/// uids with the owner and checks them when it sends the signal). The owner (a task or a
/// process group of the restored tree) must exist.
pub fn set(fd: BorrowedFd<'_>, fown: &FownEntry) -> Result<(), Failed> {
    let raw = fd.as_raw_fd();
    if fown.signum != 0 {
        // SAFETY: F_SETSIG takes an integer argument.
        let r = unsafe { libc::fcntl(raw, F_SETSIG, fown.signum as libc::c_int) };
        check("fcntl(F_SETSIG)", r as _)?;
    }
    if fown.pid == 0 {
        return Ok(());
    }
    let owner = f_owner_ex {
        type_: fown.pid_type as libc::c_int,
        pid: fown.pid as libc::pid_t,
    };
    let [r, e, s] = getresuid();
    // SAFETY: PR_GET_DUMPABLE takes no pointer.
    let dumpable = unsafe { libc::prctl(libc::PR_GET_DUMPABLE) };
    let switch = (r, e) != (fown.uid, fown.euid);
    if switch {
        // The saved uid stays: it lets us switch back.
        thread_setresuid(fown.uid, fown.euid, u32::MAX)?;
    }
    // SAFETY: F_SETOWN_EX reads one f_owner_ex from `owner`, which outlives the call.
    let set = unsafe { libc::fcntl(raw, F_SETOWN_EX, &owner as *const f_owner_ex) };
    let set = check("fcntl(F_SETOWN_EX)", set as _);
    if switch {
        thread_setresuid(r, e, s)?;
        // A uid change makes the process undumpable; criu's own state does not change.
        // SAFETY: PR_SET_DUMPABLE takes an integer argument.
        unsafe { libc::prctl(libc::PR_SET_DUMPABLE, dumpable.max(0) as libc::c_ulong) };
    }
    set.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn owner_signal_and_uids_round_trip() {
        let (rd, _wr) = nix::unistd::pipe().expect("pipe");
        assert_eq!(get(rd.as_fd()).expect("get"), FileOwner::default());
        let me = std::process::id();
        let [r, e, _] = getresuid();
        let fown = FownEntry {
            uid: r,
            euid: e,
            signum: libc::SIGRTMIN() as u32 + 2,
            pid_type: 1,
            pid: me,
        };
        set(rd.as_fd(), &fown).expect("set");
        let got = get(rd.as_fd()).expect("get");
        assert_eq!(got.to_entry(), fown);
    }

    #[test]
    fn missing_owner_is_an_error() {
        let (rd, _wr) = nix::unistd::pipe().expect("pipe");
        let fown = FownEntry {
            uid: 0,
            euid: 0,
            signum: 0,
            pid_type: 1,
            pid: i32::MAX as u32,
        };
        let (call, errno) = set(rd.as_fd(), &fown).expect_err("no such pid");
        assert_eq!((call, errno), ("fcntl(F_SETOWN_EX)", Errno::ESRCH));
    }
}
