//! memfd_secret end to end through the real `criu` binary: a workload (tests/workloads/
//! secretmem.c, built with gcc) holds two secret memory objects, one open and mapped twice
//! (read-write and read-only at an offset), one mapped with its fd closed, both shared with
//! a child forked after the mappings, which maps the first again from the inherited fd; it fills them from a seed and checks every byte itself
//! after the restore, plus the fd and one object shared by both tasks (a token written by
//! one reaches the other). In clear and with `--secret-key`: the encrypted images hold no
//! run of the secret, and a restore without the key, with another key, or of a changed
//! image is refused naming the file.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use criu_core::image::{ImageDir, ImageKind};
use criu_proto::images::{FdTypes, FileEntry, MmEntry};
use criu_tests::{ScratchDir, TreeGuard, skip_unless_root, wait_pid_gone};
use restore_common::{lines, spawn_bg, wait_lines};

mod restore_common;

const SIZE_A: usize = 6 * 4096;

/// The workload's pattern (secretmem.c `pattern`).
fn pattern(seed: u64, obj: u64, i: u64) -> u8 {
    let mut x = (seed ^ (obj << 56)).wrapping_add(i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    x ^= x >> 29;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    (x >> 32) as u8
}

/// Whether this kernel gives secret memory (off unless booted with it on some kernels).
fn have_secretmem(test: &str) -> bool {
    let ok = criu_core::sys::probe::memfd_secret().is_ok();
    if !ok {
        eprintln!("skipping {test}: memfd_secret() is not available on this kernel");
    }
    ok
}

struct Run {
    dir: ScratchDir,
    exe: PathBuf,
    report: PathBuf,
    images: PathBuf,
    seed: u64,
    /// Run the workload as uid/gid 65534 (no capabilities) instead of root.
    as_nobody: bool,
}

impl Run {
    fn new(name: &str, seed: u64) -> Run {
        let dir = ScratchDir::new(name);
        let exe = dir.path().join("secretmem");
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads/secretmem.c");
        let built = Command::new("gcc")
            .args(["-O1", "-Wall", "-o"])
            .arg(&exe)
            .arg(src)
            .status()
            .expect("run gcc");
        assert!(built.success(), "gcc failed");
        let report = dir.path().join("report");
        let images = dir.path().join("images");
        std::fs::create_dir(&images).expect("mkdir");
        Run {
            dir,
            exe,
            report,
            images,
            seed,
            as_nobody: false,
        }
    }

    /// Starts the workload; returns (parent, child) once both are ready, guarded.
    fn start(&self) -> ((i32, i32), TreeGuard) {
        let seed = self.seed.to_string();
        let mut args = Vec::new();
        if self.as_nobody {
            // Its report goes into our scratch dir.
            std::fs::set_permissions(self.dir.path(), std::fs::Permissions::from_mode(0o777))
                .expect("chmod scratch");
            args.extend([
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
            ]);
        }
        args.extend([
            self.exe.to_str().expect("utf-8"),
            self.report.to_str().expect("utf-8"),
            &seed,
        ]);
        let root = spawn_bg("setsid", &args);
        let mut guard = TreeGuard::new([root]);
        let got = wait_lines(&self.report, 2, Duration::from_secs(10));
        let pid_of = |role: &str| -> i32 {
            got.iter()
                .find_map(|l| l.strip_prefix(&format!("ready {role} "))?.parse().ok())
                .unwrap_or_else(|| panic!("no {role} in {got:?}"))
        };
        let pids = (pid_of("parent"), pid_of("child"));
        assert_eq!(pids.0, root);
        guard.extend([pids.1]);
        (pids, guard)
    }

    fn criu(&self, args: &[&str], log: &str) -> (Output, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_criu_under_test"))
            .args(args)
            .arg("-D")
            .arg(&self.images)
            .args(["-v4", "-o", log])
            .output()
            .expect("run criu");
        let log = std::fs::read_to_string(self.images.join(log)).unwrap_or_default();
        let text = format!("{}\n{log}", String::from_utf8_lossy(&out.stderr));
        (out, text)
    }

    /// Dumps the tree left stopped (`extra`: more options), then kills it.
    fn dump(&self, root: i32, guard: TreeGuard, extra: &[&str]) {
        let root_s = root.to_string();
        let mut args = vec!["dump", "-t", &root_s, "-s"];
        args.extend(extra);
        let (out, text) = self.criu(&args, "dump.log");
        assert!(out.status.success(), "dump failed:\n{text}");
        let taken = guard.kill_and_wait(Duration::from_secs(10));
        assert!(taken.is_empty(), "pids still taken: {taken:?}");
    }

    /// A restore expected to fail; returns its messages. No task of it may stay.
    fn restore_fails(&self, pids: (i32, i32), extra: &[&str]) -> String {
        let mut args = vec!["restore", "-d"];
        args.extend(extra);
        let (out, text) = self.criu(&args, "restore-fail.log");
        let _guard = TreeGuard::new([pids.0, pids.1]);
        assert!(!out.status.success(), "restore succeeded:\n{text}");
        for p in [pids.0, pids.1] {
            assert!(wait_pid_gone(p, Duration::from_secs(10)), "pid {p} left");
        }
        text
    }

    /// Restores, lets the workload check itself, and asserts both tasks say ok; the
    /// restored tree is guarded by the returned guard.
    fn restore_and_check(&self, pids: (i32, i32), extra: &[&str]) -> TreeGuard {
        std::fs::write(&self.report, "").expect("truncate report");
        let mut args = vec!["restore", "-d"];
        args.extend(extra);
        let (out, text) = self.criu(&args, "restore.log");
        let guard = TreeGuard::new([pids.0, pids.1]);
        assert!(out.status.success(), "restore failed:\n{text}");
        std::fs::write(format!("{}.go", self.report.display()), "").expect("go");
        let mut got = wait_lines(&self.report, 2, Duration::from_secs(20));
        got.sort();
        assert_eq!(
            got,
            ["ok child", "ok parent"],
            "report: {:?}",
            lines(&self.report)
        );
        guard
    }

    /// The plugin's files: 0600, and the images name the plugin where CRIU's formats allow.
    fn check_images(&self, pids: (i32, i32)) -> Vec<PathBuf> {
        let ours: Vec<PathBuf> = std::fs::read_dir(&self.images)
            .expect("images")
            .map(|e| e.expect("entry").path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("criu-rs-secretmem"))
            })
            .collect();
        // Index + object A (one range per mapping offset: 6 pages, and 2 at page 2) + B +
        // D in three chunks (2.5 MiB).
        assert_eq!(ours.len(), 7, "{ours:?}");
        for p in &ours {
            let mode = std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", p.display());
        }
        let dir = ImageDir::open(&self.images).expect("images");
        let files: Vec<FileEntry> = dir.read_all(ImageKind::Files, 0).expect("files.img");
        let ext: Vec<&FileEntry> = files
            .iter()
            .filter(|f| f.r#type == FdTypes::Ext as i32)
            .collect();
        assert_eq!(ext.len(), 1, "one secretmem description: {files:?}");
        let e = ext[0].ext.as_ref().expect("ext");
        assert_eq!(e.criu_rs_plugin.as_deref(), Some("secretmem"));
        for pid in [pids.0, pids.1] {
            let mm: MmEntry = dir.read_single(ImageKind::Mm, pid as u64).expect("mm");
            let claimed = mm
                .vmas
                .iter()
                .filter(|v| v.criu_rs_plugin.as_deref() == Some("secretmem"))
                .count();
            // The child also maps A again itself after the fork (M3).
            // The child also maps A again itself after the fork (M3).
            let want = if pid == pids.0 { 4 } else { 5 };
            assert_eq!(claimed, want, "pid {pid}: M1, M2, C, D (and M3)");
        }
        crit_decodes(&self.images, pids);
        ours
    }

    /// Whether any image file holds 64 bytes of the secret in a row.
    fn images_show_secret(&self) -> bool {
        let needle: Vec<u8> = (100..164).map(|i| pattern(self.seed, 0, i)).collect();
        std::fs::read_dir(&self.images).expect("images").any(|e| {
            let data = std::fs::read(e.expect("entry").path()).unwrap_or_default();
            data.windows(needle.len()).any(|w| w == needle.as_slice())
        })
    }

    fn write_key(&self, name: &str, byte: u8) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, [byte; 32]).expect("key");
        path.to_str().expect("utf-8").to_string()
    }
}

/// Debian's crit 3.17 decodes the images of CRIU's formats that name the plugin (when crit
/// is installed).
fn crit_decodes(images: &Path, pids: (i32, i32)) {
    if Command::new("crit").arg("--help").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "crit is missing in CI");
        eprintln!("crit is not installed: not checking that it decodes the images");
        return;
    }
    let mm = |pid: i32| format!("mm-{pid}.img");
    for f in ["files.img".to_string(), mm(pids.0), mm(pids.1)] {
        let out = Command::new("crit")
            .args(["show"])
            .arg(images.join(&f))
            .output()
            .expect("run crit");
        assert!(
            out.status.success(),
            "crit show {f}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn secretmem_round_trip_in_clear() {
    if skip_unless_root("secretmem_round_trip_in_clear")
        || !have_secretmem("secretmem_round_trip_in_clear")
    {
        return;
    }
    let run = Run::new("secretmem-clear", 0x5eed_0001);
    let (pids, guard) = run.start();
    run.dump(pids.0, guard, &[]);
    run.check_images(pids);
    // Without a key the secret is in the images, as the README says.
    assert!(run.images_show_secret());
    assert_eq!(SIZE_A, 24576);
    let _guard = run.restore_and_check(pids, &[]);
}

#[test]
fn secretmem_encrypted_round_trip_and_refusals() {
    if skip_unless_root("secretmem_encrypted_round_trip_and_refusals")
        || !have_secretmem("secretmem_encrypted_round_trip_and_refusals")
    {
        return;
    }
    let run = Run::new("secretmem-key", 0x5eed_0002);
    let key = run.write_key("key", 0x42);
    let other = run.write_key("other", 0x43);
    let (pids, guard) = run.start();
    run.dump(pids.0, guard, &["--secret-key", &key]);
    let ours = run.check_images(pids);
    assert!(!run.images_show_secret(), "the secret is in the images");

    let text = run.restore_fails(pids, &[]);
    assert!(
        text.contains("is encrypted: restore with --secret-key"),
        "{text}"
    );
    let text = run.restore_fails(pids, &["--secret-key", &other]);
    assert!(text.contains("criu-rs-secretmem.bin"), "{text}");
    assert!(text.contains("wrong --secret-key"), "{text}");

    // One byte of one content file changed: refused, naming that file.
    let chunk = ours
        .iter()
        .find(|p| p.to_str().is_some_and(|s| s.ends_with("-0.bin")))
        .expect("a content file");
    let good = std::fs::read(chunk).expect("read");
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x10;
    std::fs::write(chunk, &bad).expect("tamper");
    let text = run.restore_fails(pids, &["--secret-key", &key]);
    let name = chunk.file_name().and_then(|n| n.to_str()).expect("name");
    assert!(text.contains(name), "{name} not named:\n{text}");
    std::fs::write(chunk, &good).expect("untamper");

    let _guard = run.restore_and_check(pids, &["--secret-key", &key]);
}

/// An unprivileged workload: the task runs the dump's remote calls (scratch page, pipe) as
/// itself, and comes back under its own uid.
#[test]
fn secretmem_round_trip_as_nobody() {
    if skip_unless_root("secretmem_round_trip_as_nobody")
        || !have_secretmem("secretmem_round_trip_as_nobody")
    {
        return;
    }
    let mut run = Run::new("secretmem-nobody", 0x5eed_0003);
    run.as_nobody = true;
    let key = run.write_key("key", 0x44);
    let (pids, guard) = run.start();
    let uid = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .expect("status")
            .lines()
            .find_map(|l| {
                l.strip_prefix("Uid:")
                    .map(|u| u.split_whitespace().next().map(str::to_string))
            })
            .flatten()
            .expect("Uid line")
    };
    assert_eq!(uid(pids.0), "65534");
    run.dump(pids.0, guard, &["--secret-key", &key]);
    let _guard = run.restore_and_check(pids, &["--secret-key", &key]);
    assert_eq!(uid(pids.0), "65534");
    assert_eq!(uid(pids.1), "65534");
}
