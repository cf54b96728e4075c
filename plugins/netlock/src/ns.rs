//! bpffs and network namespaces: where the pins live and where the programs attach.

use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, setns};

use crate::error::NetlockError;

/// Where bpffs is mounted (and mounted by criu when it is not).
pub const BPFFS: &str = "/sys/fs/bpf";

/// The directory under [`BPFFS`] holding criu-rs's locks, one subdirectory per lock.
pub const PIN_ROOT: &str = "/sys/fs/bpf/criu-rs";

const BPF_FS_MAGIC: i64 = 0xcafe4a11;

/// Whether `path` is a bpffs mount.
pub fn is_bpffs(path: &Path) -> Result<bool, NetlockError> {
    let st = nix::sys::statfs::statfs(path).map_err(|e| NetlockError::Bpffs {
        path: path.into(),
        op: "statfs",
        source: e.into(),
    })?;
    Ok(st.filesystem_type().0 as i64 == BPF_FS_MAGIC)
}

/// Mounts bpffs at [`BPFFS`] unless it is there already (mode 0700: only root sees the
/// pins).
pub fn ensure_bpffs() -> Result<(), NetlockError> {
    // Two threads checking at once would mount bpffs twice, the second hiding the first's
    // pins.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let path = Path::new(BPFFS);
    if is_bpffs(path)? {
        return Ok(());
    }
    mount(
        Some("bpf"),
        path,
        Some("bpf"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=0700"),
    )
    .map_err(|e| NetlockError::Bpffs {
        path: path.into(),
        op: "mount -t bpf",
        source: e.into(),
    })?;
    tracing::info!(path = BPFFS, "mounted bpffs");
    Ok(())
}

/// The network namespace file of task `pid`.
pub fn netns_path(pid: i32) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/ns/net"))
}

/// The inode of a namespace file (`/proc/PID/ns/net`).
pub fn ns_inode(path: &Path) -> Result<u64, NetlockError> {
    std::fs::metadata(path)
        .map(|m| m.ino())
        .map_err(|e| NetlockError::path(path, "stat", e))
}

/// The inode of the calling thread's network namespace.
pub fn own_netns() -> Result<u64, NetlockError> {
    ns_inode(Path::new("/proc/thread-self/ns/net"))
}

/// Runs `f` in the network namespace `netns` (a `/proc/PID/ns/net` file), on a thread of
/// its own so that criu's threads stay where they are; `None` or criu's own namespace:
/// here.
pub fn in_netns<T: Send>(
    netns: Option<&Path>,
    f: impl FnOnce() -> Result<T, NetlockError> + Send,
) -> Result<T, NetlockError> {
    let Some(path) = netns else { return f() };
    if ns_inode(path)? == own_netns()? {
        return f();
    }
    let file = File::open(path).map_err(|e| NetlockError::Netns {
        path: path.into(),
        source: e,
    })?;
    std::thread::scope(|s| {
        s.spawn(|| {
            setns(file.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| NetlockError::Netns {
                path: path.into(),
                source: e.into(),
            })?;
            f()
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// Every interface of the calling thread's network namespace: index and name.
pub fn interfaces() -> Result<Vec<(u32, String)>, NetlockError> {
    let list = nix::net::if_::if_nameindex()
        .map_err(|e| NetlockError::path("/proc/thread-self/ns/net", "if_nameindex", e.into()))?;
    Ok(list
        .iter()
        .map(|i| (i.index(), i.name().to_string_lossy().into_owned()))
        .collect())
}
