//! Page integrity: a dump writes `criu-rs-pages-digest.bin`; bytes flipped in `pages-1.img`
//! makes the restore fail naming the file and the damaged range, with nothing left running,
//! and `criu check-images` names it too. Without the digest image (as with CRIU) the same
//! damage restores silently and the workload finds its memory corrupt. CRIU 4.2's own images
//! (no digest) still check.

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use criu_core::check_images::{CheckError, check_images};
use criu_core::image::digest::{DIGEST_FILE, DirDigest};
use criu_core::restore::{RestoreError, RestoreOptions, restore};
use criu_tests::{PidGuard, ScratchDir, Workload, pid_exists, skip_unless_root, wait_pid_gone};

use criu_plugin_files as _;
use criu_plugin_pipes as _;

mod cli_support;

const WL: &str = env!("CARGO_BIN_EXE_wl_bigmem");
/// CRIU 4.2's image set, in shared/ beside the project's checkout.
fn sample() -> String {
    concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/fixtures/criu-4.2-sample"
    )
    .to_string()
}
/// Inside the workload's 8 MiB buffer (the first pages of the file are its other mappings).
const FLIP_AT: u64 = (4 << 20) + 4096 * 3;
/// Two pages: the buffer's checked words sit at malloc's offset into each mapped page, so
/// this covers at least one whole checked page of the workload.
const FLIP_LEN: usize = 8192;

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(e) = src {
        s.push_str(": ");
        s.push_str(&e.to_string());
        src = e.source();
    }
    s
}

/// Inverts some bits of `FLIP_LEN` bytes at `at` (twice gives the original back).
fn flip(path: &Path, at: u64) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open pages file");
    let mut b = vec![0u8; FLIP_LEN];
    f.read_exact_at(&mut b, at).expect("read bytes");
    b.iter_mut().for_each(|x| *x ^= 0x5a);
    f.write_all_at(&b, at).expect("write bytes");
}

/// Signals the workload to check its memory and returns its verdict line.
fn verdict(pid: i32, report: &Path) -> String {
    let _ = std::fs::remove_file(report);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .expect("SIGUSR1");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(t) = std::fs::read_to_string(report)
            && t.ends_with('\n')
        {
            return t.trim().to_string();
        }
        assert!(Instant::now() < deadline, "no verdict from {pid}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn restore_detached(dir: &Path, verify_pages: bool) -> Result<i32, RestoreError> {
    restore(&RestoreOptions {
        images_dir: dir.to_path_buf(),
        detach: true,
        shell_job: true,
        verify_pages,
        ..Default::default()
    })
    .map(|o| match o {
        criu_core::restore::RestoreOutcome::Detached { root } => root,
        other => panic!("detached restore gave {other:?}"),
    })
}

#[test]
fn damaged_pages_fail_restore_and_check_images_names_them() {
    if skip_unless_root("damaged_pages_fail_restore_and_check_images_names_them") {
        return;
    }
    let work = ScratchDir::new("digest");
    let report = work.path().join("report");
    let images = work.path().join("images");
    std::fs::create_dir(&images).unwrap();
    let wl = Workload::start(
        Path::new(WL),
        &["8", report.to_str().unwrap()],
        "ready",
        Duration::from_secs(30),
    );
    let pid = wl.pid();
    let mut o = criu_core::dump::DumpOptions::new(pid, &images);
    o.shell_job = true;
    criu_core::dump::dump(&o).unwrap_or_else(|e| panic!("dump: {}", chain(&e)));
    drop(wl);
    assert!(wait_pid_gone(pid, Duration::from_secs(10)));
    assert!(images.join(DIGEST_FILE).is_file(), "no {DIGEST_FILE}");

    // A good directory checks, through the library and the command line.
    let rep = check_images(&images).unwrap_or_else(|e| panic!("{}", chain(&e)));
    assert_eq!(rep.tasks, 1);
    let size = std::fs::metadata(images.join("pages-1.img")).unwrap().len();
    assert_eq!(
        rep.digest,
        DirDigest::Verified {
            files: 1,
            bytes: size
        }
    );
    let criu = cli_support::criu_bin();
    let dir_arg = images.to_str().unwrap();
    let out = cli_support::run(&criu, &["check-images", "-D", dir_arg]);
    let (stdout, stderr) = cli_support::text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("pages match their digest"), "{stdout}");

    // Flipped bytes: check-images and restore both name the file and the range.
    let pages = images.join("pages-1.img");
    flip(&pages, FLIP_AT);
    let range = "bytes 0x400000-0x4fffff (pages 1024-1279)";
    let e = check_images(&images).expect_err("damage found");
    assert!(matches!(e, CheckError::Digest { .. }), "{e:?}");
    let msg = chain(&e);
    assert!(msg.contains("pages-1.img") && msg.contains(range), "{msg}");
    let out = cli_support::run(&criu, &["check-images", "-D", dir_arg]);
    let (_, stderr) = cli_support::text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("pages-1.img") && stderr.contains(range),
        "{stderr}"
    );
    // The command line's restore --verify-pages refuses it too.
    let out = cli_support::run(
        &criu,
        &[
            "restore",
            "-D",
            dir_arg,
            "-d",
            "--shell-job",
            "--verify-pages",
        ],
    );
    let (_, stderr) = cli_support::text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("pages-1.img") && stderr.contains(range),
        "{stderr}"
    );
    assert!(wait_pid_gone(pid, Duration::from_secs(10)));
    let e = restore_detached(&images, true).expect_err("restore of damaged pages");
    let _guard = PidGuard::new(pid);
    let msg = chain(&e);
    assert!(
        matches!(e, RestoreError::PagesDigest { .. })
            && msg.contains("pages-1.img")
            && msg.contains(range),
        "{msg}"
    );
    assert!(
        wait_pid_gone(pid, Duration::from_secs(10)),
        "pid {pid} left after a refused restore"
    );

    // Asked to verify images without a digest (as CRIU's): refused, naming the file.
    let saved = work.path().join(DIGEST_FILE);
    std::fs::rename(images.join(DIGEST_FILE), &saved).unwrap();
    let msg = chain(&restore_detached(&images, true).expect_err("no digest"));
    assert!(
        msg.contains(DIGEST_FILE) && msg.contains("is missing"),
        "{msg}"
    );
    assert!(wait_pid_gone(pid, Duration::from_secs(10)));
    // Without --verify-pages (CRIU's behaviour): the restore succeeds and the workload's own
    // check finds the damage.
    std::fs::rename(&saved, images.join(DIGEST_FILE)).unwrap();
    let root = restore_detached(&images, false).unwrap_or_else(|e| panic!("{}", chain(&e)));
    let guard = PidGuard::new(root);
    let v = verdict(root, &report);
    assert!(v.starts_with("bad "), "undetected damage should show: {v}");
    drop(guard);
    assert!(wait_pid_gone(pid, Duration::from_secs(10)));

    // Repaired: restores with --verify-pages, and the memory is intact.
    flip(&pages, FLIP_AT);
    let root = restore_detached(&images, true).unwrap_or_else(|e| panic!("{}", chain(&e)));
    let guard = PidGuard::new(root);
    assert!(pid_exists(root));
    assert_eq!(verdict(root, &report), "ok 2048");
    drop(guard);
    assert!(wait_pid_gone(pid, Duration::from_secs(10)));

    // Other damage check-images names: a missing referenced image, a truncated pages file,
    // a damaged image.
    let core = images.join(format!("core-{pid}.img"));
    let core_bytes = std::fs::read(&core).unwrap();
    std::fs::remove_file(&core).unwrap();
    let msg = chain(&check_images(&images).expect_err("missing core"));
    assert!(msg.contains(&format!("core-{pid}.img")), "{msg}");
    std::fs::write(&core, &core_bytes[..core_bytes.len() - 3]).unwrap();
    let msg = chain(&check_images(&images).expect_err("cut core"));
    assert!(
        msg.contains(&format!("core-{pid}.img")) && msg.contains("offset"),
        "{msg}"
    );
    std::fs::write(&core, &core_bytes).unwrap();
    let set_len = |len: u64| {
        std::fs::OpenOptions::new()
            .write(true)
            .open(&pages)
            .unwrap()
            .set_len(len)
            .unwrap()
    };
    set_len(size - 4096);
    let msg = chain(&check_images(&images).expect_err("short pages"));
    assert!(
        msg.contains(&format!("pagemap-{pid}.img")) && msg.contains(&format!("{}", size - 4096)),
        "{msg}"
    );
    set_len(size + 4096);
    let msg = chain(&check_images(&images).expect_err("long pages"));
    assert!(
        msg.contains(&format!("pages-1.img has {} bytes", size + 4096))
            && msg.contains(&format!("pagemap-{pid}.img indexes {size}")),
        "{msg}"
    );
}

#[test]
fn criu_42_images_check_without_digest() {
    let sample = sample();
    let sample = sample.as_str();
    if !Path::new(sample).is_dir() {
        assert!(std::env::var_os("CI").is_none(), "{sample} missing in CI");
        eprintln!("skipping: {sample} missing");
        return;
    }
    let rep = check_images(Path::new(sample)).unwrap_or_else(|e| panic!("{}", chain(&e)));
    assert_eq!(rep.digest, DirDigest::Absent);
    assert_eq!(rep.tasks, 1);
    assert_eq!(rep.pages, vec![("pages-1.img".to_string(), 4321280)]);
    let out = cli_support::run(&cli_support::criu_bin(), &["check-images", "-D", sample]);
    let (stdout, stderr) = cli_support::text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("no digest"), "{stdout}");
}
