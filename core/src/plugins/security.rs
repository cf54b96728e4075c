//! Who may provide code that criu (usually root) runs: a plugin file, its directory and every
//! directory above them must be owned by root or the invoking user, and writable by nobody
//! else. A directory above may be writable by others when it has the sticky bit (`/tmp`):
//! then they cannot rename or replace what they do not own. The same rules as sshd's
//! StrictModes: whoever can swap a directory on the path can swap the plugin.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Why a path is not trusted, or `None` when it is. `what` is "plugin directory" or
/// "plugin file" (for the message). Symlinks are judged by the link and its target; the
/// directories above are judged along the path as given and along its resolved form.
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
    ancestors_reason(path, what, uid)
}

/// The first directory above `path` (as given, then resolved) that someone other than root
/// and `uid` could change: owned by another user, or writable by group/others without the
/// sticky bit.
fn ancestors_reason(path: &Path, what: &str, uid: u32) -> Option<String> {
    let absolute = match std::path::absolute(path) {
        Ok(p) => p,
        Err(e) => return Some(format!("cannot resolve {what} {}: {e}", path.display())),
    };
    let mut dirs: Vec<PathBuf> = absolute
        .ancestors()
        .skip(1)
        .map(Path::to_path_buf)
        .collect();
    if let Ok(real) = std::fs::canonicalize(path) {
        for d in real.ancestors().skip(1) {
            if !dirs.iter().any(|x| x == d) {
                dirs.push(d.to_path_buf());
            }
        }
    }
    for dir in dirs {
        let meta = match std::fs::metadata(&dir) {
            Ok(m) => m,
            Err(e) => {
                return Some(format!(
                    "cannot stat {}, a directory above {what} {}: {e}",
                    dir.display(),
                    path.display()
                ));
            }
        };
        let (owner, mode) = (meta.uid(), meta.mode());
        if owner != 0 && owner != uid {
            return Some(format!(
                "{} (above {what} {}) is owned by uid {owner}, not by root or the invoking \
                 user (uid {uid}); its owner could replace the plugins",
                dir.display(),
                path.display()
            ));
        }
        if mode & 0o022 != 0 && mode & 0o1000 == 0 {
            return Some(format!(
                "{} (above {what} {}) is writable by others than its owner without the sticky \
                 bit (mode {:04o}); they could replace the plugins: remove group/other write \
                 permission or set the sticky bit",
                dir.display(),
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
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
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
    fn a_directory_above_writable_by_others_is_refused_unless_sticky() {
        let top = scratch("anc");
        let mid = top.join("shared");
        let plugins = mid.join("plugins");
        std::fs::create_dir_all(&plugins).unwrap();
        let file = plugins.join("libx.so");
        std::fs::write(&file, b"").unwrap();
        for d in [&top, &mid, &plugins] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(untrusted_reason(&plugins, "plugin directory"), None);
        assert_eq!(untrusted_reason(&file, "plugin file"), None);
        for mode in [0o777, 0o775] {
            std::fs::set_permissions(&mid, std::fs::Permissions::from_mode(mode)).unwrap();
            for (p, what) in [(&plugins, "plugin directory"), (&file, "plugin file")] {
                let why = untrusted_reason(p, what).expect("refused");
                assert!(
                    why.starts_with(&format!("{} (above {what}", mid.display()))
                        && why.contains("sticky")
                        && why.contains(&format!("{mode:04o}")),
                    "{why}"
                );
            }
        }
        // Sticky (as /tmp): others cannot rename or replace what they do not own.
        std::fs::set_permissions(&mid, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert_eq!(untrusted_reason(&plugins, "plugin directory"), None);
        // Reached through a symlink in a trusted place: the resolved path is judged too.
        std::fs::set_permissions(&mid, std::fs::Permissions::from_mode(0o777)).unwrap();
        let link = top.join("link");
        std::os::unix::fs::symlink(&plugins, &link).unwrap();
        let why = untrusted_reason(&link, "plugin directory").expect("refused");
        assert!(why.starts_with(&mid.display().to_string()), "{why}");
        std::fs::set_permissions(&mid, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::remove_dir_all(&top).unwrap();
    }

    #[test]
    fn a_directory_above_owned_by_another_user_is_refused() {
        if !nix::unistd::getuid().is_root() {
            eprintln!("skipping a_directory_above_owned_by_another_user_is_refused: needs root");
            return;
        }
        let top = scratch("anc-owner");
        let plugins = top.join("plugins");
        std::fs::create_dir_all(&plugins).unwrap();
        std::fs::set_permissions(&top, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&plugins, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::chown(&top, Some(65534), None).unwrap();
        let why = untrusted_reason(&plugins, "plugin directory").expect("refused");
        assert!(
            why.starts_with(&top.display().to_string()) && why.contains("owned by uid 65534"),
            "{why}"
        );
        std::fs::remove_dir_all(&top).unwrap();
    }

    #[test]
    fn missing_path_is_refused_with_reason() {
        let why = untrusted_reason(Path::new("/nonexistent/criu-plugins"), "plugin directory");
        assert!(why.unwrap().contains("cannot stat"));
    }
}
