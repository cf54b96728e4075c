//! `userns-N.img`: the root's user namespace. The root is cloned with CLONE_NEWUSER beside
//! its other namespace flags (the kernel makes the user namespace first, so it owns the
//! others), and criu writes its uid and gid maps from outside while the root is still
//! stopped, before anything of the tree runs. The credentials of the images are the
//! namespace's ids (CRIU's form): set inside at the end as any task's, and compared with
//! /proc (which shows criu the host's ids) through these maps.

use std::io::Write;

use criu_proto::ImageKind;
use criu_proto::images::{UidGidExtent, UsernsEntry};

use crate::dump::ns::user::{IdMaps, MAX_EXTENTS, OVERFLOW_ID, to_ns};
use crate::restore::error::{RestoreError, Result, bad};
use crate::restore::imgread::Images;

/// The maps to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserState {
    pub maps: IdMaps,
}

/// Checks one map as the kernel would: 1 to 340 extents, none empty or wrapping past
/// 2^32, none overlapping another on either side.
pub fn check_map(map: &[UidGidExtent]) -> std::result::Result<(), String> {
    if map.is_empty() || map.len() > MAX_EXTENTS {
        return Err(format!(
            "{} extents (the kernel takes 1 to {MAX_EXTENTS})",
            map.len()
        ));
    }
    let end = |start: u32, count: u32| u64::from(start) + u64::from(count);
    for (i, e) in map.iter().enumerate() {
        if e.count == 0 || end(e.first, e.count) > 1 << 32 || end(e.lower_first, e.count) > 1 << 32
        {
            return Err(format!(
                "extent {i} ({} {} {}) is empty or wraps",
                e.first, e.lower_first, e.count
            ));
        }
        for (j, o) in map.iter().enumerate().take(i) {
            let overlap =
                |a: u32, b: u32| u64::from(a) < end(b, o.count) && u64::from(b) < end(a, e.count);
            if overlap(e.first, o.first) || overlap(e.lower_first, o.lower_first) {
                return Err(format!("extent {i} overlaps extent {j}"));
            }
        }
    }
    Ok(())
}

fn map_text(map: &[UidGidExtent]) -> String {
    map.iter()
        .map(|e| format!("{} {} {}\n", e.first, e.lower_first, e.count))
        .collect()
}

impl UserState {
    /// Reads and checks `userns-<id>.img`.
    pub fn load(images: &Images, id: u32) -> Result<UserState> {
        let kind = ImageKind::Userns;
        let name = kind.file_name(u64::from(id));
        if !images.exists(&name) {
            return Err(bad(&name, None, "missing (the root's user namespace)"));
        }
        let e: UsernsEntry = images.single(&name, kind.magic())?;
        for (field, map) in [("uid_map", &e.uid_map), ("gid_map", &e.gid_map)] {
            check_map(map).map_err(|r| bad(&name, Some(0), format!("{field}: {r}")))?;
        }
        Ok(UserState {
            maps: IdMaps {
                uid: e.uid_map,
                gid: e.gid_map,
            },
        })
    }

    /// Writes both maps of `pid`'s new user namespace (one write each: the kernel takes a
    /// map once, whole).
    pub fn apply(&self, pid: i32, host: i32) -> Result<()> {
        for (file, map) in [("uid_map", &self.maps.uid), ("gid_map", &self.maps.gid)] {
            let path = format!("/proc/{host}/{file}");
            let text = map_text(map);
            std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|mut f| f.write_all(text.as_bytes()))
                .map_err(|e| RestoreError::Task {
                    pid,
                    tid: host,
                    step: format!("user namespace: writing {path}"),
                    reason: format!("{e} (map {:?})", text.trim()),
                })?;
        }
        tracing::info!(pid, uid_map = ?self.maps.uid, gid_map = ?self.maps.gid, "user namespace maps written");
        Ok(())
    }

    /// Rewrites ids read from /proc (criu's view) as the namespace names them.
    pub fn host_to_ns(&self, uids: &mut [u32; 4], gids: &mut [u32; 4], groups: &mut [u32]) {
        for u in uids.iter_mut() {
            *u = to_ns(&self.maps.uid, *u).unwrap_or(OVERFLOW_ID);
        }
        for g in gids.iter_mut().chain(groups.iter_mut()) {
            *g = to_ns(&self.maps.gid, *g).unwrap_or(OVERFLOW_ID);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ext(first: u32, lower_first: u32, count: u32) -> UidGidExtent {
        UidGidExtent {
            first,
            lower_first,
            count,
        }
    }

    #[test]
    fn maps_the_kernel_would_refuse_are_refused() {
        check_map(&[ext(0, 100000, 65536)]).unwrap();
        check_map(&[ext(0, 100000, 1), ext(1, 5, 10)]).unwrap();
        assert!(check_map(&[]).is_err());
        let e = check_map(&[ext(0, 100000, 100), ext(50, 1, 10)]).unwrap_err();
        assert!(e.contains("overlaps"), "{e}");
        assert!(check_map(&[ext(0, 100, 10), ext(20, 105, 10)]).is_err());
        assert!(check_map(&[ext(0, 1, 0)]).is_err());
        assert!(check_map(&[ext(u32::MAX, 1, 2)]).is_err());
        let many: Vec<_> = (0..341).map(|i| ext(i, 1000 + i, 1)).collect();
        assert!(check_map(&many).unwrap_err().contains("341 extents"));
        check_map(&many[..340]).unwrap();
    }

    proptest! {
        /// A map written as text reads back the same (the kernel's uid_map format).
        #[test]
        fn map_text_round_trips(exts in proptest::collection::vec((0u32..1 << 20, 0u32..1 << 20, 1u32..1000), 1..20)) {
            let map: Vec<_> = exts.iter().map(|&(a, b, c)| ext(a, b, c)).collect();
            let back = crate::dump::ns::user::parse_map(&map_text(&map)).unwrap();
            prop_assert_eq!(back, map);
        }
    }
}
