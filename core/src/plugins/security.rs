//! Who may provide code that criu (usually root) runs: a plugin file and its directory must
//! be owned by root or the invoking user and writable by nobody else.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Why a path is not trusted, or `None` when it is. `what` is "plugin directory" or
/// "plugin file" (for the message). Symlinks are judged by the link and its target.
pub fn untrusted_reason(path: &Path, what: &str) -> Option<String> {
    let uid = nix::unistd::getuid().as_raw();
    let link = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) => return Some(format!("cannot stat {what} {}: {e}", path.display())),
    };
    let mut checks = vec![(link.uid(), link.mode(), link.file_type().is_symlink())];
    if link.file_type().is_symlink() {
        match std::fs::metadata(path) {
            Ok(m) => checks.push((m.uid(), m.mode(), false)),
            Err(e) => return Some(format!("cannot stat {what} {}: {e}", path.display())),
        }
    }
    for (owner, mode, is_link) in checks {
        if owner != 0 && owner != uid {
            return Some(format!(
                "{what} {} is owned by uid {owner}, not by root or the invoking user (uid {uid})",
                path.display()
            ));
        }
        // A symlink's own mode is always 0777 and means nothing.
        if !is_link && mode & 0o022 != 0 {
            return Some(format!(
                "{what} {} is writable by others than its owner (mode {:04o}); \
                 remove group/other write permission",
                path.display(),
                mode & 0o7777
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("criu-sec-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn writable_by_others_is_refused() {
        let dir = scratch("ww");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(untrusted_reason(&dir, "plugin directory"), None);
        for mode in [0o777, 0o775, 0o757] {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
            let why = untrusted_reason(&dir, "plugin directory").expect("refused");
            assert!(
                why.contains("writable by others") && why.contains(&format!("{mode:04o}")),
                "{why}"
            );
        }
        let file = dir.join("libx.so");
        std::fs::write(&file, b"").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o646)).unwrap();
        assert!(untrusted_reason(&file, "plugin file").is_some());
        // A symlink is judged by its target.
        let link = dir.join("liby.so");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(untrusted_reason(&link, "plugin file").is_some());
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(untrusted_reason(&link, "plugin file"), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn foreign_owner_is_refused() {
        if !nix::unistd::getuid().is_root() {
            eprintln!("skipping foreign_owner_is_refused: needs root to chown");
            return;
        }
        let dir = scratch("owner");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::chown(&dir, Some(65534), None).unwrap();
        let why = untrusted_reason(&dir, "plugin directory").expect("refused");
        assert!(why.contains("owned by uid 65534"), "{why}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_path_is_refused_with_reason() {
        let why = untrusted_reason(Path::new("/nonexistent/criu-plugins"), "plugin directory");
        assert!(why.unwrap().contains("cannot stat"));
    }
}
