//! Debian's crit 3.17 against our decoder, for one image file.

use std::path::Path;
use std::process::Command;

use criu_proto::ImageKind;
use criu_proto::json::{self, DecodeOptions, compat};

/// Decodes `file` (an image of `kind`) with crit 3.17 and with our decoder; `check` sees our
/// document first (with our fields), then it must equal crit's once rewritten as crit 3.17
/// shows it. Skipped without crit, except under CI (env CI set).
pub fn decodes_as_we_do(file: &Path, kind: ImageKind, check: impl FnOnce(&serde_json::Value)) {
    if Command::new("crit").arg("-h").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "crit missing under CI");
        eprintln!("not checking crit 3.17: no crit on PATH (apt-get install -y criu)");
        return;
    }
    let out = Command::new("crit")
        .args(["decode", "--pretty", "-i"])
        .arg(file)
        .output()
        .expect("run crit");
    assert!(
        out.status.success(),
        "crit: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs: serde_json::Value = serde_json::from_slice(&out.stdout).expect("crit JSON");
    let opts = DecodeOptions {
        pretty: true,
        no_payload: false,
    };
    let bytes = std::fs::read(file).expect("image");
    let mut ours = json::decode_as(kind, &bytes, opts).expect("our decode");
    check(&ours);
    compat::to_crit_317(&mut ours);
    assert_eq!(
        ours,
        theirs,
        "crit 3.17 decodes {} differently",
        file.display()
    );
}
