//! Network namespaces from criu's side. A network namespace belongs to each thread (its
//! `nsproxy`), so criu can make one on a short-lived thread, run work inside one on another,
//! or move its calling thread in and out (sockets created meanwhile belong to it) without
//! moving its other threads.

use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use nix::errno::Errno;
use nix::sched::CloneFlags;

/// Why entering or making a network namespace failed.
#[derive(Debug, thiserror::Error)]
pub enum EnterError {
    #[error("opening {path}")]
    Open {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{op}")]
    Sys {
        op: &'static str,
        #[source]
        source: Errno,
    },
    #[error("the thread working in a network namespace panicked")]
    Thread,
}

fn open(path: String) -> Result<File, EnterError> {
    File::open(&path).map_err(|source| EnterError::Open { path, source })
}

/// The network namespace of process `pid`.
pub fn of_pid(pid: i32) -> Result<File, EnterError> {
    open(format!("/proc/{pid}/ns/net"))
}

/// The calling thread's network namespace.
pub fn current() -> Result<File, EnterError> {
    open("/proc/thread-self/ns/net".into())
}

/// Whether two namespace files name the same namespace (device and inode).
pub fn same(a: &File, b: &File) -> bool {
    match (a.metadata(), b.metadata()) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// The inode number of a namespace file (what `/proc/PID/ns/net` links to).
pub fn inode(ns: &File) -> u64 {
    ns.metadata().map(|m| m.ino()).unwrap_or(0)
}

/// Runs `f` on a new thread that joined `ns`, and returns its result.
pub fn in_netns<T: Send>(ns: &File, f: impl FnOnce() -> T + Send) -> Result<T, EnterError> {
    std::thread::scope(|s| {
        s.spawn(move || {
            nix::sched::setns(ns.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|source| {
                EnterError::Sys {
                    op: "setns(CLONE_NEWNET)",
                    source,
                }
            })?;
            Ok(f())
        })
        .join()
        .map_err(|_| EnterError::Thread)?
    })
}

/// Makes a new, empty network namespace (on a thread that leaves it at once) and returns it.
pub fn create() -> Result<File, EnterError> {
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::unshare(CloneFlags::CLONE_NEWNET).map_err(|source| EnterError::Sys {
                op: "unshare(CLONE_NEWNET)",
                source,
            })?;
            current()
        })
        .join()
        .map_err(|_| EnterError::Thread)?
    })
}

/// The calling thread inside another network namespace until dropped, when it goes back
/// to the one it was in.
#[derive(Debug)]
pub struct Inside {
    home: File,
}

impl Inside {
    /// Moves the calling thread into `ns`.
    pub fn enter(ns: &File) -> Result<Inside, EnterError> {
        let home = current()?;
        nix::sched::setns(ns.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|source| {
            EnterError::Sys {
                op: "setns(CLONE_NEWNET)",
                source,
            }
        })?;
        Ok(Inside { home })
    }

    /// The namespace the thread goes back to.
    pub fn home(&self) -> &File {
        &self.home
    }
}

impl Drop for Inside {
    fn drop(&mut self) {
        if let Err(e) = nix::sched::setns(self.home.as_fd(), CloneFlags::CLONE_NEWNET) {
            tracing::error!(error = %e, "could not return to criu's network namespace");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_namespace_is_entered_and_left() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skip: making a network namespace needs CAP_SYS_ADMIN");
            return;
        }
        let mine = current().unwrap();
        let ns = create().unwrap();
        assert!(!same(&mine, &ns));
        let inside = in_netns(&ns, || current().unwrap()).unwrap();
        assert!(same(&inside, &ns));
        {
            let g = Inside::enter(&ns).unwrap();
            assert!(same(&current().unwrap(), &ns));
            assert!(same(g.home(), &mine));
        }
        assert!(same(&current().unwrap(), &mine));
    }
}
