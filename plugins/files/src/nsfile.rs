//! Namespace files (`open("/proc/self/ns/net")`: an nsfs file, link `net:[4026531840]`) as
//! CRIU's NS_FILE entries (`ns_file_entry`: namespace id, its `CLONE_NEW*` flag, open flags).
//! criu-rs restores a tree in criu's own namespaces (the core refuses any other at dump), so
//! only a namespace file of the holding task's own namespace is dumped; restore opens
//! `/proc/self/ns/<kind>`, which is then the restored task's namespace too.

use std::os::fd::{AsFd, OwnedFd};

use criu_plugin_api::{FdDesc, PluginError, RestoreContext};
use criu_proto::images::{FdTypes, FileEntry, NsFileEntry};
use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;

/// `NSFS_MAGIC`, the `f_type` of nsfs.
const NSFS_MAGIC: i64 = 0x6e73_6673;

/// Namespace kinds: link prefix, `CLONE_NEW*` flag, and the id the core gives criu's own
/// namespace of that kind (criu's namespaces are numbered first, 1 to 8, in the order the
/// core reads `/proc/PID/ns`: pid, net, ipc, uts, time, mnt, user, cgroup).
const KINDS: [(&str, i32, u32); 8] = [
    ("pid", libc::CLONE_NEWPID, 1),
    ("net", libc::CLONE_NEWNET, 2),
    ("ipc", libc::CLONE_NEWIPC, 3),
    ("uts", libc::CLONE_NEWUTS, 4),
    ("time", libc::CLONE_NEWTIME, 5),
    ("mnt", libc::CLONE_NEWNS, 6),
    ("user", libc::CLONE_NEWUSER, 7),
    ("cgroup", libc::CLONE_NEWCGROUP, 8),
];

/// The kind of a namespace file link (`net:[4026531840]`) and its inode.
fn parse_link(link: &str) -> Option<(&'static (&'static str, i32, u32), u64)> {
    let (kind, rest) = link.split_once(":[")?;
    let ino = rest.strip_suffix(']')?.parse().ok()?;
    KINDS.iter().find(|k| k.0 == kind).map(|k| (k, ino))
}

/// Whether `fd` is a namespace file.
pub(crate) fn claims(fd: &FdDesc) -> bool {
    parse_link(&fd.link).is_some_and(|(_, ino)| ino == fd.stat.ino)
        && nix::sys::statfs::fstatfs(fd.file.as_fd())
            .is_ok_and(|s| s.filesystem_type().0 == NSFS_MAGIC)
}

/// The NS_FILE entry of `fd`; a namespace other than the task's own is refused.
pub(crate) fn dump(fd: &FdDesc, id: u32) -> Result<FileEntry, PluginError> {
    let Some((&(kind, cflag, ns_id), ino)) = parse_link(&fd.link) else {
        return Err(PluginError::BadFdInfo {
            field: "link".into(),
            reason: format!("{} is not a namespace file link", fd.link),
        });
    };
    let own = format!("/proc/{}/ns/{kind}", fd.pid);
    let own_ino = nix::sys::stat::stat(own.as_str())
        .map_err(|e| PluginError::path(&own, "stat", e))?
        .st_ino;
    if own_ino != ino {
        return Err(PluginError::Unsupported {
            resource: fd.describe(),
            pid: fd.pid,
            hint: format!(
                "a file of a {kind} namespace that is not the task's own ({own} is inode {own_ino}): namespaces are not checkpointed yet"
            ),
        });
    }
    tracing::debug!(
        pid = fd.pid,
        fd = fd.fd,
        id,
        kind,
        ino,
        "dumping namespace file"
    );
    Ok(FileEntry {
        r#type: FdTypes::Ns as i32,
        id,
        nsf: Some(NsFileEntry {
            id,
            ns_id,
            ns_cflag: cflag as u32,
            flags: fd.fdinfo.file_flags(),
        }),
        ..Default::default()
    })
}

/// Opens the namespace file of `entry`: criu's own namespace of its kind, which the restored
/// tree shares.
pub(crate) fn open_file(
    ctx: &mut dyn RestoreContext,
    entry: &FileEntry,
) -> Result<OwnedFd, PluginError> {
    let nsf = entry.nsf.as_ref().ok_or_else(|| {
        PluginError::bad_image(
            "files.img",
            format!("NS_FILE entry {} without nsf", entry.id),
        )
    })?;
    let Some(&(kind, _, own_id)) = KINDS.iter().find(|k| k.1 as u32 == nsf.ns_cflag) else {
        return Err(PluginError::bad_image(
            "files.img",
            format!(
                "NS_FILE entry {}: namespace flag {:#x} is no CLONE_NEW* flag",
                entry.id, nsf.ns_cflag
            ),
        ));
    };
    if nsf.ns_id != own_id {
        return Err(PluginError::Unsupported {
            resource: format!(
                "file id {}: a {kind} namespace file of namespace id {}",
                entry.id, nsf.ns_id
            ),
            pid: ctx.current_pid(),
            hint: format!(
                "only a file of the tree's own {kind} namespace (id {own_id}) can be restored: namespaces are not restored yet"
            ),
        });
    }
    let path = format!("/proc/self/ns/{kind}");
    let flags = OFlag::from_bits_truncate(nsf.flags as i32) & (OFlag::O_ACCMODE | OFlag::O_PATH);
    open(path.as_str(), flags | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| PluginError::path(path, "open", e))
}

#[cfg(test)]
mod tests {
    use super::parse_link;

    #[test]
    fn namespace_links_parse() {
        let (k, ino) = parse_link("net:[4026531840]").unwrap();
        assert_eq!(
            (k.0, k.1, k.2, ino),
            ("net", libc::CLONE_NEWNET, 2, 4026531840)
        );
        assert_eq!(parse_link("mnt:[7]").unwrap().0.1, libc::CLONE_NEWNS);
        assert!(parse_link("pipe:[7]").is_none());
        assert!(parse_link("net:[x]").is_none());
        assert!(parse_link("/proc/self/ns/net").is_none());
    }
}
