//! Shared by the inotify and fanotify tests: Debian's crit 3.17 decodes our files.img.

#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

use criu_proto::ImageKind;
use criu_proto::json::{self, DecodeOptions, compat};

/// crit 3.17 decodes `files.img` as we do (less our own fields), and it holds an entry with
/// member `member` (`ify`, `ffy`); skipped without crit unless under CI.
pub fn crit_317_decodes_files_img(images: &Path, member: &str) {
    let crit = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("crit"))
            .find(|p| p.is_file())
    });
    let Some(crit) = crit else {
        if std::env::var_os("CI").is_some() {
            panic!("crit is not installed (apt-get install -y criu); required under CI");
        }
        eprintln!("not checking crit 3.17: no crit on PATH (apt-get install -y criu)");
        return;
    };
    let file = images.join("files.img");
    let out = Command::new(crit)
        .args(["decode", "--pretty", "-i"])
        .arg(&file)
        .output()
        .expect("run crit");
    assert!(
        out.status.success(),
        "crit decode files.img: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs: serde_json::Value = serde_json::from_slice(&out.stdout).expect("crit JSON");
    let opts = DecodeOptions {
        pretty: true,
        no_payload: false,
    };
    let bytes = std::fs::read(&file).expect("files.img");
    let mut ours = json::decode_as(ImageKind::Files, &bytes, opts).expect("our decode");
    compat::to_crit_317(&mut ours);
    assert_eq!(ours, theirs, "crit 3.17 decodes files.img differently");
    let has = theirs["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .any(|e| e.get(member).is_some());
    assert!(has, "no {member} entry in crit's decode: {theirs}");
}
