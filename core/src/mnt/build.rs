//! The root's mount namespace at restore. Criu's restoring thread (its `fs_struct` made its
//! own) moves into a new mount namespace, copy of criu's with every mount made private,
//! and builds the dumped tree under a staging directory ([`super::mounts`]); the root task
//! is cloned from that thread, so it and every task it forks live in that namespace.
//! While the tree is being restored, paths of the tree (files, cwd, root, mapped files)
//! are opened with the thread chrooted into the tree's root for the call
//! ([`in_tree`]), so absolute symlinks resolve as the tasks see them; images are read by
//! their paths in criu's namespace outside those calls. Once every task exists the thread
//! goes back to criu's namespace and a short-lived thread pivots the namespace into the
//! tree (`pivot_root(".", ".")` then a lazy unmount of the old root), as CRIU does with
//! its root yard: the namespace then holds the dumped tree and nothing of criu's.
//!
//! A failure (or a restore that ends before the pivot) drops the namespace with every
//! mount in it: nothing was ever mounted in criu's namespace. The staging directory (an
//! empty directory under the images directory's temporary sibling) is removed.

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use nix::fcntl::{OFlag, open};
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;
use nix::unistd::{chroot, fchdir};

use super::mounts;
use super::tree::MntTree;
use crate::restore::imgread::Images;
use crate::restore::{RestoreError, Result};

/// The tree's root and criu's, while the restoring thread may enter the tree.
struct Roots {
    tree: OwnedFd,
    home: OwnedFd,
}

thread_local! {
    static ROOTS: RefCell<Option<Roots>> = const { RefCell::new(None) };
    static INSIDE: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with this thread's root in the restored mount tree (when one is being
/// restored by this thread; else as is), then puts its root and working directory back.
pub fn in_tree<R>(f: impl FnOnce() -> R) -> std::result::Result<R, String> {
    ROOTS.with(|r| {
        let r = r.borrow();
        let Some(roots) = r.as_ref() else {
            return Ok(f());
        };
        if INSIDE.get() {
            return Ok(f());
        }
        let cwd = open(
            ".",
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| format!("saving the working directory: {e}"))?;
        fchdir(roots.tree.as_fd())
            .and_then(|()| chroot("."))
            .map_err(|e| format!("entering the restored mount tree: {e}"))?;
        INSIDE.set(true);
        let out = f();
        INSIDE.set(false);
        fchdir(roots.home.as_fd())
            .and_then(|()| chroot("."))
            .and_then(|()| fchdir(cwd.as_fd()))
            .map_err(|e| format!("leaving the restored mount tree: {e}"))?;
        Ok(out)
    })
}

/// The restored mount namespace, entered by the calling thread until [`MntNs::pivot`] or
/// drop.
#[derive(Debug)]
pub struct MntNs {
    pid: i32,
    home_ns: File,
    home_root: OwnedFd,
    home_cwd: OwnedFd,
    ns: File,
    staging: PathBuf,
    root: Option<OwnedFd>,
    inside: bool,
}

fn sys_err(pid: i32, step: &str, source: nix::errno::Errno) -> RestoreError {
    RestoreError::Local {
        pid,
        step: format!("mount namespace: {step}"),
        source,
    }
}

impl MntNs {
    /// Makes the namespace and builds `tree` in it (`pid`: the root's, for errors).
    pub fn create(
        tree: &MntTree,
        images: &Images,
        external: &[String],
        new_root: Option<&std::path::Path>,
        pid: i32,
    ) -> Result<MntNs> {
        let dir = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let home_ns =
            File::open("/proc/thread-self/ns/mnt").map_err(|source| RestoreError::ImageIo {
                path: "/proc/thread-self/ns/mnt".into(),
                source,
            })?;
        let home_root = open("/", dir, Mode::empty()).map_err(|e| sys_err(pid, "open /", e))?;
        let home_cwd = open(".", dir, Mode::empty()).map_err(|e| sys_err(pid, "open .", e))?;
        let staging = nix::unistd::mkdtemp(&std::env::temp_dir().join("criu-mntns.XXXXXX"))
            .map_err(|e| sys_err(pid, "mkdtemp", e))?;
        if let Err(e) = nix::sched::unshare(CloneFlags::CLONE_FS | CloneFlags::CLONE_NEWNS) {
            let _ = std::fs::remove_dir(&staging);
            return Err(sys_err(pid, "unshare(CLONE_NEWNS)", e));
        }
        let ns = File::open("/proc/thread-self/ns/mnt");
        let mut me = MntNs {
            pid,
            ns: ns.map_err(|source| RestoreError::ImageIo {
                path: "/proc/thread-self/ns/mnt".into(),
                source,
            })?,
            home_ns,
            home_root,
            home_cwd,
            staging,
            root: None,
            inside: true,
        };
        // Our root in the new namespace (the one opened before is criu's namespace's).
        let ns_root =
            open("/", dir, Mode::empty()).map_err(|e| sys_err(pid, "open / inside", e))?;
        nix::mount::mount(
            None::<&str>,
            "/",
            None::<&str>,
            nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .map_err(|e| sys_err(pid, "mount --make-rprivate /", e))?;
        let mut root = None;
        let built = mounts::build(tree, images, external, new_root, &me.staging, &mut |fd| {
            root = fd.try_clone().ok();
            if let (Some(tree), Ok(home)) = (fd.try_clone().ok(), ns_root.try_clone()) {
                ROOTS.with(|r| *r.borrow_mut() = Some(Roots { tree, home }));
            }
        })?;
        me.root = root;
        tracing::info!(
            pid,
            mounts = built.roots.len(),
            image = tree.image,
            "mount namespace built"
        );
        Ok(me)
    }

    /// Goes back to criu's namespace, root and working directory.
    fn leave(&mut self) -> Result<()> {
        ROOTS.with(|r| r.borrow_mut().take());
        if !self.inside {
            return Ok(());
        }
        self.inside = false;
        nix::sched::setns(self.home_ns.as_fd(), CloneFlags::CLONE_NEWNS)
            .map_err(|e| sys_err(self.pid, "setns back to criu's", e))?;
        fchdir(self.home_root.as_fd())
            .and_then(|()| chroot("."))
            .and_then(|()| fchdir(self.home_cwd.as_fd()))
            .map_err(|e| sys_err(self.pid, "back to criu's root", e))
    }

    /// Every task exists: leaves the namespace and makes the tree its root (the tasks'
    /// roots already are the tree's root; criu's copy of its own mounts goes away).
    pub fn pivot(&mut self) -> Result<()> {
        self.leave()?;
        let pid = self.pid;
        let root = self
            .root
            .as_ref()
            .ok_or_else(|| sys_err(pid, "no root mounted", nix::errno::Errno::EINVAL))?;
        let (ns, root) = (self.ns.as_fd(), root.as_fd());
        std::thread::scope(|s| {
            s.spawn(
                || -> std::result::Result<(), (&'static str, nix::errno::Errno)> {
                    let step = |what, r: nix::Result<()>| r.map_err(|e| (what, e));
                    step(
                        "unshare(CLONE_FS)",
                        nix::sched::unshare(CloneFlags::CLONE_FS),
                    )?;
                    step("setns", nix::sched::setns(ns, CloneFlags::CLONE_NEWNS))?;
                    step("fchdir(tree root)", fchdir(root))?;
                    step("pivot_root(., .)", nix::unistd::pivot_root(".", "."))?;
                    step(
                        "umount2(old root, MNT_DETACH)",
                        nix::mount::umount2(".", nix::mount::MntFlags::MNT_DETACH),
                    )
                },
            )
            .join()
            .unwrap_or(Err(("pivot thread", nix::errno::Errno::EIO)))
        })
        .map_err(|(what, e)| sys_err(pid, what, e))?;
        tracing::info!(pid, "mount namespace pivoted into the restored tree");
        Ok(())
    }
}

impl Drop for MntNs {
    fn drop(&mut self) {
        if let Err(e) = self.leave() {
            tracing::error!(error = %e, "could not go back to criu's mount namespace");
        }
        if let Err(e) = std::fs::remove_dir(&self.staging) {
            tracing::warn!(path = %self.staging.display(), error = %e, "staging directory left");
        }
    }
}
