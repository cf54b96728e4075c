//! Running a piece of criu inside another task's UTS/IPC namespaces.
//!
//! Those two namespaces belong to each thread (its `nsproxy`), so a short-lived thread of
//! criu may `setns(2)` into them without touching criu's other threads: `uname`,
//! `/proc/sys/kernel/*`, `/proc/sys/fs/mqueue/*` and the SysV calls it makes there see the
//! task's namespaces. The thread ends with the closure; nothing of criu stays inside.

use std::fs::File;
use std::os::fd::AsFd;

use nix::errno::Errno;
use nix::sched::CloneFlags;

/// Why entering a namespace failed.
#[derive(Debug, thiserror::Error)]
pub enum NsEnterError {
    #[error("opening /proc/{pid}/ns/{kind}")]
    Open {
        pid: i32,
        kind: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("setns into /proc/{pid}/ns/{kind}")]
    Setns {
        pid: i32,
        kind: &'static str,
        #[source]
        source: Errno,
    },
    #[error("the thread entering the namespaces of {pid} panicked")]
    Thread { pid: i32 },
}

/// The namespace kinds this module enters: `/proc/PID/ns` name and clone flag.
pub const KINDS: [(&str, CloneFlags); 2] = [
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("ipc", CloneFlags::CLONE_NEWIPC),
];

/// Runs `f` on a new thread that first joined `pid`'s namespaces of `kinds` (a subset of
/// CLONE_NEWUTS | CLONE_NEWIPC), and returns its result.
pub fn in_namespaces<T: Send>(
    pid: i32,
    kinds: CloneFlags,
    f: impl FnOnce() -> T + Send,
) -> Result<T, NsEnterError> {
    let mut files = Vec::new();
    for (kind, flag) in KINDS {
        if kinds.contains(flag) {
            let file = File::open(format!("/proc/{pid}/ns/{kind}"))
                .map_err(|source| NsEnterError::Open { pid, kind, source })?;
            files.push((kind, flag, file));
        }
    }
    std::thread::scope(|s| {
        s.spawn(move || {
            for (kind, flag, file) in &files {
                nix::sched::setns(file.as_fd(), *flag).map_err(|source| NsEnterError::Setns {
                    pid,
                    kind,
                    source,
                })?;
            }
            Ok(f())
        })
        .join()
        .map_err(|_| NsEnterError::Thread { pid })?
    })
}

/// Sets the node and domain names of the calling thread's UTS namespace.
pub fn set_uts_names(nodename: &str, domainname: &str) -> Result<(), Errno> {
    // SAFETY: a pointer and the length of a live string; the kernel copies at most `len`
    // bytes and keeps no reference.
    let r = unsafe { libc::sethostname(nodename.as_ptr().cast(), nodename.len()) };
    Errno::result(r)?;
    // SAFETY: as above.
    let r = unsafe { libc::setdomainname(domainname.as_ptr().cast(), domainname.len()) };
    Errno::result(r).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_namespaces_are_entered_and_left() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skip: setns needs CAP_SYS_ADMIN");
            return;
        }
        let me = std::process::id() as i32;
        let name = in_namespaces(
            me,
            CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC,
            || nix::sys::utsname::uname().map(|u| u.nodename().to_owned()),
        )
        .expect("enter")
        .expect("uname");
        assert_eq!(name, nix::sys::utsname::uname().unwrap().nodename());
        let err = in_namespaces(-1, CloneFlags::CLONE_NEWUTS, || ()).unwrap_err();
        assert!(err.to_string().contains("/proc/-1/ns/uts"), "{err}");
    }
}
