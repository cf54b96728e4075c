//! Binding restored sockets to their names: a path gets its socket file again with the
//! dumped mode and owner; a stale socket file left at the path (nobody listens) is
//! replaced, anything else there is an error; a ghost (unlinked at dump) is bound and
//! unlinked again at once, reached through its `O_PATH` file.

use std::ffi::OsStr;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use criu_plugin_api::PluginError;
use criu_proto::images::UnixSkEntry;
use nix::errno::Errno;
use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, bind, connect, socket};
use nix::sys::stat::{SFlag, lstat};
use nix::unistd::unlink;

use crate::queue;

/// A name for messages: `@abstract`, a path, or `(unnamed)`.
pub(crate) fn show(name: &[u8]) -> String {
    match name.split_first() {
        None => "(unnamed)".into(),
        Some((0, abs)) => format!("@{}", String::from_utf8_lossy(abs)),
        Some(_) => String::from_utf8_lossy(name).into_owned(),
    }
}

fn is_path(name: &[u8]) -> bool {
    name.first().is_some_and(|&c| c != 0)
}

/// The name to reach `u` at: a relative path joined to the directory it was bound in
/// (`name_dir`), any other name as it is.
pub(crate) fn full_name(u: &UnixSkEntry) -> Vec<u8> {
    match &u.name_dir {
        Some(dir) if is_path(&u.name) && u.name[0] != b'/' => {
            [dir.as_bytes(), b"/", u.name.as_slice()].concat()
        }
        _ => u.name.clone(),
    }
}

/// Binds `fd` to `addr`, a relative name, from `dir`: on a thread of its own with its own
/// working directory (`unshare(CLONE_FS)`), so that criu's does not change.
fn bind_in_dir(fd: BorrowedFd<'_>, addr: &UnixAddr, dir: &str) -> Result<(), Errno> {
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS)?;
            nix::unistd::chdir(dir)?;
            bind(fd.as_raw_fd(), addr)
        })
        .join()
        .unwrap_or(Err(Errno::EINVAL))
    })
}

/// Whether the socket file at `path` is stale: connecting to it is refused (nobody has it
/// bound any more).
fn stale(path: &OsStr, ty: SockType) -> bool {
    let Ok(probe) = socket(AddressFamily::Unix, ty, SockFlag::SOCK_CLOEXEC, None) else {
        return false;
    };
    let Ok(addr) = nix::sys::socket::UnixAddr::new(path) else {
        return false;
    };
    matches!(connect(probe.as_raw_fd(), &addr), Err(Errno::ECONNREFUSED))
}

/// Clears `path` for a bind: nothing there, or a stale socket file (removed).
fn clear_path(path: &OsStr, ty: SockType, id: u32) -> Result<(), PluginError> {
    match lstat(path) {
        Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(PluginError::path(path, "lstat (socket path)", e)),
        Ok(st) if SFlag::from_bits_truncate(st.st_mode & libc::S_IFMT) != SFlag::S_IFSOCK => {
            Err(PluginError::FileChanged {
                path: path.into(),
                what: format!(
                    "unix socket id {id} is to be bound here, but a file that is not a socket is in the way"
                ),
            })
        }
        Ok(_) if stale(path, ty) => {
            unlink(path).map_err(|e| PluginError::path(path, "unlink (stale socket file)", e))
        }
        Ok(_) => Err(PluginError::FileChanged {
            path: path.into(),
            what: format!(
                "unix socket id {id} is to be bound here, but a live socket holds the path"
            ),
        }),
    }
}

fn sock_type_of(u: &UnixSkEntry) -> SockType {
    match u.r#type as i32 {
        libc::SOCK_DGRAM => SockType::Datagram,
        libc::SOCK_SEQPACKET => SockType::SeqPacket,
        _ => SockType::Stream,
    }
}

/// A socket whose file was unlinked at dump (a ghost): bound at its path for a moment, its
/// file held by an `O_PATH` descriptor and unlinked at once, so the path is free again
/// (for a live socket or a FIFO made there since). Connections reach it through
/// [`Ghost::reach`]; the file goes when this is dropped.
#[derive(Debug)]
pub(crate) struct Ghost {
    file: OwnedFd,
}

impl Ghost {
    /// A name `connect`/`sendto` can reach the ghost at: its file through `/proc/self/fd`
    /// (the kernel resolves the link to the unlinked socket inode).
    pub(crate) fn reach(&self) -> Vec<u8> {
        format!("/proc/self/fd/{}", self.file.as_raw_fd()).into_bytes()
    }

    /// The same, for another process of criu's pid namespace: through criu's pid.
    pub(crate) fn reach_from_outside(&self) -> Vec<u8> {
        format!("/proc/{}/fd/{}", std::process::id(), self.file.as_raw_fd()).into_bytes()
    }
}

/// Binds a ghost at `path` (whatever is there now moved aside for the moment and put
/// back), keeping its file by an `O_PATH` descriptor.
fn bind_ghost(
    path: &OsStr,
    u: &UnixSkEntry,
    bind: &dyn Fn() -> Result<(), Errno>,
    fail: &dyn Fn(Errno) -> PluginError,
) -> Result<Ghost, PluginError> {
    let made_dirs = make_missing_dirs(path)?;
    let aside = match lstat(path) {
        Ok(_) => {
            let mut aside = path.to_os_string();
            aside.push(format!(".criu-rs-ghost-{}-{}", std::process::id(), u.ino));
            std::fs::rename(path, &aside).map_err(|e| PluginError::Path {
                path: path.into(),
                op: "rename aside (for a ghost socket's bind)",
                source: e,
            })?;
            Some(PathBuf::from(aside))
        }
        Err(_) => None,
    };
    let made = bind().map_err(fail).and_then(|()| {
        let file = nix::fcntl::open(
            path,
            nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| PluginError::path(path, "open O_PATH (ghost socket file)", e));
        // The file goes whether the open worked or not: the path must be as it was.
        let gone =
            unlink(path).map_err(|e| PluginError::path(path, "unlink (ghost socket file)", e));
        let file = file?;
        gone?;
        Ok(Ghost { file })
    });
    if let Some(aside) = aside {
        std::fs::rename(&aside, path).map_err(|e| PluginError::Path {
            path: aside.clone(),
            op: "rename back (the file a ghost socket's bind moved aside)",
            source: e,
        })?;
    }
    // Directories removed since the dump go again, deepest first.
    for dir in made_dirs.iter().rev() {
        std::fs::remove_dir(dir).map_err(|e| PluginError::Path {
            path: dir.clone(),
            op: "rmdir (directory made for a ghost socket's bind)",
            source: e,
        })?;
    }
    made
}

/// Makes the missing directories above `path` (a ghost's directory may have been removed
/// since it was bound, as in CRIU's zdtm sk-unix01); returns them, outermost first.
fn make_missing_dirs(path: &OsStr) -> Result<Vec<PathBuf>, PluginError> {
    let mut missing = Vec::new();
    let mut dir = std::path::Path::new(path).parent();
    while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty() && lstat(*d).is_err()) {
        missing.push(d.to_path_buf());
        dir = d.parent();
    }
    missing.reverse();
    for d in &missing {
        std::fs::create_dir(d).map_err(|e| PluginError::Path {
            path: d.clone(),
            op: "mkdir (directory of a ghost socket, removed since)",
            source: e,
        })?;
    }
    Ok(missing)
}

/// Binds `fd` to `u`'s name; a path gets the dumped mode and owner. A ghost (its file was
/// unlinked at dump) is bound at its path for a moment and its file unlinked again: the
/// returned [`Ghost`] holds it for the connections still to make.
pub(crate) fn bind_name(
    fd: BorrowedFd<'_>,
    u: &UnixSkEntry,
    fail: &dyn Fn(Errno) -> PluginError,
) -> Result<Option<Ghost>, PluginError> {
    let addr = queue::addr_of(&u.name).map_err(fail)?;
    if !is_path(&u.name) {
        return bind(fd.as_raw_fd(), &addr).map(|()| None).map_err(fail);
    }
    let full = full_name(u);
    let path = OsStr::from_bytes(&full);
    let bind = |fd: BorrowedFd<'_>, addr: &UnixAddr| match (&u.name_dir, u.name[0]) {
        (Some(dir), c) if c != b'/' => bind_in_dir(fd, addr, dir),
        (None, c) if c != b'/' => Err(Errno::EINVAL),
        _ => bind(fd.as_raw_fd(), addr),
    };
    if u.deleted == Some(true) {
        return bind_ghost(path, u, &|| bind(fd, &addr), fail).map(Some);
    }
    clear_path(path, sock_type_of(u), u.id)?;
    bind(fd, &addr).map_err(fail)?;
    if let Some(p) = &u.file_perms {
        let io = |op| {
            move |e: std::io::Error| PluginError::Path {
                path: path.into(),
                op,
                source: e,
            }
        };
        std::os::unix::fs::lchown(path, Some(p.uid), Some(p.gid))
            .map_err(io("lchown (socket file)"))?;
        std::fs::set_permissions(
            path,
            std::os::unix::fs::PermissionsExt::from_mode(p.mode & 0o7777),
        )
        .map_err(io("chmod (socket file)"))?;
    }
    Ok(None)
}

/// Binds a temporary sender to `name` (the name a queued datagram came from); a path is
/// removed right away (the name stays with the socket).
pub(crate) fn bind_temporary(
    fd: BorrowedFd<'_>,
    name: &[u8],
    fail: &dyn Fn(Errno) -> PluginError,
) -> Result<(), PluginError> {
    let addr = queue::addr_of(name).map_err(fail)?;
    bind(fd.as_raw_fd(), &addr).map_err(fail)?;
    if is_path(name) {
        let path = OsStr::from_bytes(name);
        unlink(path).map_err(|e| PluginError::path(path, "unlink (temporary sender's file)", e))?;
    }
    Ok(())
}
