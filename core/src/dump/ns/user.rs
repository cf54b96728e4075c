//! `userns-N.img`: the uid and gid maps of the root's user namespace (a rootless container's
//! shape: `0 100000 65536`).
//!
//! CRIU keeps credentials as the namespace sees them: /proc shows criu the host's ids, which
//! [`IdMaps::to_ns`] maps back through the namespace's maps (an id the namespace cannot name
//! reads as the overflow id 65534, as the kernel shows it). The restore creates the user
//! namespace first so that it owns the root's other new namespaces; a root namespace of
//! another kind that the root's user namespace does not own would come back owned by it, and
//! is refused here.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use criu_proto::images::{CredsEntry, UidGidExtent, UsernsEntry};

use crate::image::{ImageDir, ImageKind};

use super::super::DumpError;
use super::super::run::img;

/// The kernel's limit on the lines of a uid_map or gid_map (`UID_GID_MAP_MAX_EXTENTS`).
pub const MAX_EXTENTS: usize = 340;
/// What the kernel shows for an id a namespace cannot name (`/proc/sys/kernel/overflowuid`).
pub const OVERFLOW_ID: u32 = 65534;

/// The maps of a user namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdMaps {
    pub uid: Vec<UidGidExtent>,
    pub gid: Vec<UidGidExtent>,
}

/// `host` (an id of the parent namespace) as `map` names it, if it does.
pub fn to_ns(map: &[UidGidExtent], host: u32) -> Option<u32> {
    map.iter()
        .find(|e| {
            host >= e.lower_first && u64::from(host) < u64::from(e.lower_first) + u64::from(e.count)
        })
        .map(|e| e.first + (host - e.lower_first))
}

/// `id` (an id inside the namespace) as the parent namespace names it, if mapped.
pub fn to_host(map: &[UidGidExtent], id: u32) -> Option<u32> {
    map.iter()
        .find(|e| id >= e.first && u64::from(id) < u64::from(e.first) + u64::from(e.count))
        .map(|e| e.lower_first + (id - e.first))
}

impl IdMaps {
    /// Rewrites `c`'s ids (read from /proc as criu's namespace names them) as the namespace
    /// names them.
    pub fn creds_to_ns(&self, c: &mut CredsEntry) {
        let u = |v: u32| to_ns(&self.uid, v).unwrap_or(OVERFLOW_ID);
        let g = |v: u32| to_ns(&self.gid, v).unwrap_or(OVERFLOW_ID);
        for id in [&mut c.uid, &mut c.euid, &mut c.suid, &mut c.fsuid] {
            *id = u(*id);
        }
        for id in [&mut c.gid, &mut c.egid, &mut c.sgid, &mut c.fsgid] {
            *id = g(*id);
        }
        for id in c.groups.iter_mut() {
            *id = g(*id);
        }
    }

    /// The image entry.
    pub fn entry(&self) -> UsernsEntry {
        UsernsEntry {
            uid_map: self.uid.clone(),
            gid_map: self.gid.clone(),
        }
    }
}

/// Parses `/proc/PID/uid_map` or `gid_map` (`FIRST LOWER_FIRST COUNT` lines).
pub fn parse_map(text: &str) -> Result<Vec<UidGidExtent>, String> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let n: Vec<u32> = l
                .split_whitespace()
                .map(str::parse)
                .collect::<Result<_, _>>()
                .map_err(|_| format!("line {l:?}: not three numbers"))?;
            match n[..] {
                [first, lower_first, count] => Ok(UidGidExtent {
                    first,
                    lower_first,
                    count,
                }),
                _ => Err(format!("line {l:?}: not three numbers")),
            }
        })
        .collect()
}

fn read_map(pid: i32, name: &str) -> Result<Vec<UidGidExtent>, DumpError> {
    let path = format!("/proc/{pid}/{name}");
    let unexpected = |what: String| DumpError::Unexpected {
        pid,
        step: "userns",
        what,
    };
    let text = std::fs::read_to_string(&path).map_err(|e| unexpected(format!("{path}: {e}")))?;
    parse_map(&text).map_err(|e| unexpected(format!("{path}: {e}")))
}

/// The maps of `pid`'s user namespace when it is not criu's (None when it is).
pub fn maps_if_own(pid: i32) -> Result<Option<IdMaps>, DumpError> {
    let me = std::process::id() as i32;
    let mine = crate::proc::misc::read_ns_inode(me, "user");
    let theirs = crate::proc::misc::read_ns_inode(pid, "user");
    match (mine, theirs) {
        (Ok(a), Ok(b)) if a != b => Ok(Some(IdMaps {
            uid: read_map(pid, "uid_map")?,
            gid: read_map(pid, "gid_map")?,
        })),
        _ => Ok(None),
    }
}

/// `NS_GET_USERNS`: the user namespace owning a namespace.
const NS_GET_USERNS: libc::c_ulong = 0xb701;

/// Inode of the user namespace that owns `pid`'s namespace of `kind`.
fn owner_inode(pid: i32, kind: &str) -> Result<u64, DumpError> {
    let path = format!("/proc/{pid}/ns/{kind}");
    let f = std::fs::File::open(&path).map_err(|e| DumpError::Unexpected {
        pid,
        step: "userns",
        what: format!("{path}: {e}"),
    })?;
    // SAFETY: NS_GET_USERNS takes no argument and returns a new fd or -1.
    let fd = unsafe { libc::ioctl(f.as_raw_fd(), NS_GET_USERNS) };
    if fd < 0 {
        return Err(DumpError::sys(
            pid,
            "userns",
            format!("ioctl(NS_GET_USERNS) on {path}"),
            nix::errno::Errno::last(),
        ));
    }
    // SAFETY: the ioctl returned a new fd that nothing else owns.
    let owner = unsafe { OwnedFd::from_raw_fd(fd) };
    let st = nix::sys::stat::fstat(&owner)
        .map_err(|e| DumpError::sys(pid, "userns", "fstat of the owner user namespace", e))?;
    Ok(st.st_ino)
}

/// Refuses a root whose own namespaces of `kinds` are not owned by its user namespace, and
/// a root with a network namespace of its own (criu makes that one before the root, outside
/// the new user namespace).
pub fn check_owners(pid: i32, kinds: &[&'static str]) -> Result<(), DumpError> {
    let user = crate::proc::misc::read_ns_inode(pid, "user")
        .map_err(|e| DumpError::proc(pid, "userns", e))?;
    for kind in kinds {
        if *kind == "net" {
            return Err(DumpError::Unsupported {
                pid,
                step: "namespaces",
                what: "a user namespace of its own together with a network namespace of its \
                       own"
                .into(),
                hint: "the network namespace would be restored outside the new user \
                       namespace; run criu inside the tree's network namespace",
            });
        }
        let owner = owner_inode(pid, kind)?;
        if owner != user {
            return Err(DumpError::Unsupported {
                pid,
                step: "namespaces",
                what: format!(
                    "a {kind} namespace of its own owned by user namespace [{owner}], not by \
                     its own user namespace [{user}]"
                ),
                hint: "the restore creates every namespace of the root inside its new user \
                       namespace (as CRIU requires); create them after the user namespace",
            });
        }
    }
    Ok(())
}

/// Writes `userns-<id>.img` with `maps`.
pub fn dump(dir: &ImageDir, pid: i32, id: u32, maps: &IdMaps) -> Result<(), DumpError> {
    tracing::info!(pid, id, uid_map = ?maps.uid, gid_map = ?maps.gid, "user namespace");
    dir.write_single(ImageKind::Userns, u64::from(id), &maps.entry())
        .map_err(img(pid, "userns"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(first: u32, lower_first: u32, count: u32) -> UidGidExtent {
        UidGidExtent {
            first,
            lower_first,
            count,
        }
    }

    #[test]
    fn maps_parse_and_translate() {
        let m = parse_map("         0     100000      65536\n     65536       1000          1\n")
            .unwrap();
        assert_eq!(m, vec![ext(0, 100000, 65536), ext(65536, 1000, 1)]);
        assert_eq!(to_ns(&m, 100000), Some(0));
        assert_eq!(to_ns(&m, 165535), Some(65535));
        assert_eq!(to_ns(&m, 165536), None);
        assert_eq!(to_ns(&m, 1000), Some(65536));
        assert_eq!(to_host(&m, 65536), Some(1000));
        assert_eq!(to_host(&m, 7), Some(100007));
        assert_eq!(
            to_ns(&[ext(0, 0, u32::MAX)], u32::MAX - 1),
            Some(u32::MAX - 1)
        );
        assert!(parse_map("0 1\n").is_err());
        assert!(parse_map("0 1 x\n").is_err());
    }

    #[test]
    fn creds_are_kept_as_the_namespace_sees_them() {
        let maps = IdMaps {
            uid: vec![ext(0, 100000, 65536)],
            gid: vec![ext(0, 200000, 10)],
        };
        let mut c = CredsEntry {
            uid: 100000,
            euid: 100005,
            suid: 0,
            fsuid: 100000,
            gid: 200001,
            egid: 200001,
            sgid: 200001,
            fsgid: 200001,
            groups: vec![200002, 5],
            ..Default::default()
        };
        maps.creds_to_ns(&mut c);
        assert_eq!((c.uid, c.euid, c.suid, c.fsuid), (0, 5, OVERFLOW_ID, 0));
        assert_eq!((c.gid, c.fsgid), (1, 1));
        assert_eq!(c.groups, vec![2, OVERFLOW_ID]);
    }
}
