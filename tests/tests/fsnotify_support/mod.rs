//! Shared by the inotify and fanotify tests: Debian's crit 3.17 decodes our files.img.

#![allow(dead_code)]

use std::path::Path;

use criu_proto::ImageKind;

#[path = "../crit317/mod.rs"]
mod crit317;

/// crit 3.17 decodes `files.img` as we do (less our own fields), and it holds an entry with
/// member `member` (`ify`, `ffy`); skipped without crit unless under CI.
pub fn crit_317_decodes_files_img(images: &Path, member: &str) {
    crit317::decodes_as_we_do(&images.join("files.img"), ImageKind::Files, |ours| {
        let has = ours["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .any(|e| e.get(member).is_some());
        assert!(has, "no {member} entry in files.img: {ours}");
    });
}
