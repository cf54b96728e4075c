//! The layout of the eBPF lock's pins in bpffs, the lock that serializes criu processes
//! working on them, and the detection of pins left by network namespaces that are gone.
//!
//! One directory per network namespace, `/sys/fs/bpf/criu-rs/net-<netns inode>`, created by
//! the first lock taken there and kept: maps `tuples`, `config`, `stats`, programs
//! `prog_ingress` and `prog_egress`, and one TCX link per interface and direction
//! (`ingress-<ifindex>`, `egress-<ifindex>`). Keeping the programs attached makes a later
//! lock a map update (attaching waits for an RCU grace period, about 10 ms, per link).
//! Directories of the previous layout (`<netns>-<root pid>`, one per lock) are still
//! recognized: their links are named `netlock_ingress-<ifindex>`.

use std::fs::File;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use aya::programs::links::{FdLink, PinnedLink};
use nix::fcntl::{Flock, FlockArg};

use crate::error::NetlockError;
use crate::ns;

/// The file whose `flock` serializes the criu processes that take, lift or clean locks
/// (outside bpffs: whether bpffs is mounted is one of the things it guards).
pub const LOCK_FILE: &str = "/run/criu-rs-netlock.lock";

/// The prefix of the per-namespace directories.
pub const NS_PREFIX: &str = "net-";

/// The pin directory of the lock of network namespace `netns`.
pub fn dir_for(netns: u64) -> PathBuf {
    PathBuf::from(format!("{}/{NS_PREFIX}{netns}", ns::PIN_ROOT))
}

/// The pin of the link of `program` (`ingress` or `egress`) on interface `ifindex`.
pub fn link_pin(dir: &Path, program: &str, ifindex: u32) -> PathBuf {
    dir.join(format!("{program}-{ifindex}"))
}

/// Holds the cross-process lock while alive.
#[derive(Debug)]
pub struct Serial {
    _flock: Flock<File>,
}

/// Takes the cross-process lock (blocks while another criu holds it).
pub fn serial() -> Result<Serial, NetlockError> {
    let path = Path::new(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| NetlockError::path(path, "open", e))?;
    Flock::lock(file, FlockArg::LockExclusive)
        .map(|f| Serial { _flock: f })
        .map_err(|(_, e)| NetlockError::path(path, "flock", e.into()))
}

/// Whether a file name in a pin directory is a link's (either layout).
fn is_link_name(name: &str) -> bool {
    ["ingress-", "egress-", "netlock_ingress-", "netlock_egress-"]
        .iter()
        .any(|p| name.starts_with(p))
}

/// The interface each pinned TCX link of `pins` is attached to; `None` when it is
/// detached (its device is gone, with its namespace for `lo`). Read from the kernel's
/// `fdinfo` of the links (`ifindex:` line), found among criu's fds by link id in one pass
/// (criu may hold thousands of fds: one pass per link would cost milliseconds each).
pub fn link_ifindexes(pins: &[PathBuf]) -> Result<Vec<Option<u32>>, NetlockError> {
    if pins.is_empty() {
        return Ok(Vec::new());
    }
    let mut ids = Vec::with_capacity(pins.len());
    // Kept open until the pass is done: their fds are what it looks for.
    let mut open = Vec::with_capacity(pins.len());
    for pin in pins {
        let link: FdLink = PinnedLink::from_pin(pin)
            .map_err(|e| NetlockError::Pin {
                path: pin.clone(),
                source: Box::new(e),
            })?
            .into();
        let info = link.info().map_err(|e| NetlockError::Pin {
            path: pin.clone(),
            source: Box::new(e),
        })?;
        ids.push(info.id());
        open.push(link);
    }
    let mut found: Vec<Option<Option<u32>>> = vec![None; pins.len()];
    let fds = Path::new("/proc/thread-self/fd");
    for entry in std::fs::read_dir(fds).map_err(|e| NetlockError::path(fds, "opendir", e))? {
        let entry = entry.map_err(|e| NetlockError::path(fds, "readdir", e))?;
        // Another thread's fd may close meanwhile: not ours.
        // A link opened from a pin is `anon_inode:bpf-link`, one just made `anon_inode:bpf_link`.
        let is_link = std::fs::read_link(entry.path()).is_ok_and(|l| {
            let l = l.to_string_lossy();
            l == "anon_inode:bpf-link" || l == "anon_inode:bpf_link"
        });
        if !is_link {
            continue;
        }
        let info = Path::new("/proc/thread-self/fdinfo").join(entry.file_name());
        let Ok(text) = std::fs::read_to_string(&info) else {
            continue;
        };
        let field = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().parse::<u32>().ok())
        };
        let Some(id) = field("link_id:") else {
            continue;
        };
        for (i, _) in ids.iter().enumerate().filter(|(_, x)| **x == id) {
            let ifindex = field("ifindex:").ok_or_else(|| {
                NetlockError::path(
                    &info,
                    "read the ifindex of a TCX link",
                    ErrorKind::InvalidData.into(),
                )
            })?;
            found[i] = Some((ifindex != 0).then_some(ifindex));
        }
    }
    drop(open);
    found
        .into_iter()
        .zip(pins)
        .map(|(f, pin)| {
            f.ok_or_else(|| {
                NetlockError::path(
                    pin,
                    "find the fdinfo of the link opened from",
                    ErrorKind::NotFound.into(),
                )
            })
        })
        .collect()
}

/// The interface the pinned TCX link at `pin` is attached to ([`link_ifindexes`]).
pub fn link_ifindex(pin: &Path) -> Result<Option<u32>, NetlockError> {
    Ok(link_ifindexes(&[pin.to_path_buf()])?[0])
}

/// The link pins in `dir` (either layout).
fn links_in(dir: &Path) -> Result<Vec<PathBuf>, NetlockError> {
    let mut links = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| NetlockError::path(dir, "opendir", e))? {
        let entry = entry.map_err(|e| NetlockError::path(dir, "readdir", e))?;
        if is_link_name(&entry.file_name().to_string_lossy()) {
            links.push(entry.path());
        }
    }
    Ok(links)
}

/// Removes every pin in `dir` (links first: their programs detach at once) and `dir`.
/// `Ok(false)` when there is no such directory.
pub fn remove_dir(dir: &Path) -> Result<bool, NetlockError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(NetlockError::path(dir, "opendir", e)),
    };
    let mut paths: Vec<PathBuf> = entries
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(|e| NetlockError::path(dir, "readdir", e))?;
    paths.sort_by_key(|p| {
        !p.file_name()
            .is_some_and(|n| is_link_name(&n.to_string_lossy()))
    });
    for p in &paths {
        match std::fs::remove_file(p) {
            Err(e) if e.kind() != ErrorKind::NotFound => {
                return Err(NetlockError::path(p, "unlink", e));
            }
            _ => {}
        }
    }
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(NetlockError::path(dir, "rmdir", e)),
        _ => Ok(true),
    }
}

/// Removes the pin directories of network namespaces that are gone: none of their links
/// is attached any more (the namespace's devices, `lo` included, are gone), or they have
/// no link at all. Returns them. Call with [`serial`] held.
pub fn sweep_stale() -> Result<Vec<PathBuf>, NetlockError> {
    let root = Path::new(ns::PIN_ROOT);
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(NetlockError::path(root, "opendir", e)),
    };
    let mut dirs = Vec::new();
    let mut all_links = Vec::new();
    for entry in entries {
        let dir = entry
            .map_err(|e| NetlockError::path(root, "readdir", e))?
            .path();
        if dir.is_dir() {
            let links = links_in(&dir)?;
            dirs.push((dir, links.len()));
            all_links.extend(links);
        }
    }
    // Every directory's links in one pass over criu's fds.
    let mut attached = link_ifindexes(&all_links)?.into_iter();
    let mut removed = Vec::new();
    for (dir, n) in dirs {
        let these: Vec<Option<u32>> = attached.by_ref().take(n).collect();
        if these.iter().all(Option::is_none) {
            remove_dir(&dir)?;
            tracing::info!(pins = %dir.display(), "removed the network lock pins of a network namespace that is gone");
            removed.push(dir);
        }
    }
    Ok(removed)
}
