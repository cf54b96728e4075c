//! `criu dump --compress lz4|zstd`: the pages go to `pages-N.img.lz4`/`.zst` (blocks of
//! 1 MiB, each a standard frame behind a skippable header of ours), the pagemap head says
//! which (`criu_rs_compression`) and still decodes with crit 3.17, and the restore reads them:
//! a workload with 48 MiB of private memory and one with anonymous shared memory check their
//! own memory after the restore. A damaged block fails the restore naming the file and the
//! block's offset, nothing left running.

use std::path::Path;
use std::time::{Duration, Instant};

use criu_core::check_images::check_images;
use criu_core::image::digest::DirDigest;
use criu_core::restore::{RestoreOptions, RestoreOutcome, restore};
use criu_proto::ImageKind;
use criu_tests::{PidGuard, ScratchDir, Workload, skip_unless_root, wait_pid_gone};

use criu_plugin_files as _;
use criu_plugin_pipes as _;

mod cli_support;
mod crit317;

const BIGMEM: &str = env!("CARGO_BIN_EXE_wl_bigmem");
const SHMEM: &str = env!("CARGO_BIN_EXE_wl_shmem");

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

fn restore_detached(dir: &Path) -> Result<i32, String> {
    restore(&RestoreOptions {
        images_dir: dir.to_path_buf(),
        detach: true,
        shell_job: true,
        ..Default::default()
    })
    .map(|o| match o {
        RestoreOutcome::Detached { root } => root,
        other => panic!("detached restore gave {other:?}"),
    })
    .map_err(|e| chain(&e))
}

/// Sends SIGUSR1 and waits for the workload's verdict line in `report`.
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

/// Dumps `pid` with the command line's `--compress ALGO` into `images`.
fn dump_cli(pid: i32, images: &Path, algo: &str) {
    let pid_s = pid.to_string();
    let out = cli_support::criu(&[
        "dump",
        "-t",
        &pid_s,
        "-D",
        images.to_str().unwrap(),
        "--shell-job",
        "--compress",
        algo,
    ]);
    cli_support::assert_exit(&out, 0, "criu dump --compress");
}

#[test]
fn compressed_dumps_restore_and_damage_is_named() {
    if skip_unless_root("compressed_dumps_restore_and_damage_is_named") {
        return;
    }
    for (algo, suffix, marker) in [("zstd:3", "zst", "zstd"), ("lz4", "lz4", "lz4")] {
        let work = ScratchDir::new(&format!("compress-{suffix}"));
        let report = work.path().join("report");
        let images = work.path().join("images");
        std::fs::create_dir(&images).unwrap();
        let wl = Workload::start(
            Path::new(BIGMEM),
            &["48", report.to_str().unwrap()],
            "ready",
            Duration::from_secs(30),
        );
        let pid = wl.pid();
        dump_cli(pid, &images, algo);
        drop(wl);
        assert!(wait_pid_gone(pid, Duration::from_secs(10)));

        let packed = images.join(format!("pages-1.img.{suffix}"));
        assert!(
            !images.join("pages-1.img").exists(),
            "raw pages written too"
        );
        let stored = std::fs::metadata(&packed).expect("compressed pages").len();
        // 48 MiB of pages with two words set in each: they shrink far below 1/10.
        assert!(stored < (48 << 20) / 10, "{algo}: {stored} bytes stored");
        let pagemap = images.join(format!("pagemap-{pid}.img"));
        crit317::decodes_as_we_do(&pagemap, ImageKind::Pagemap, |ours| {
            assert_eq!(ours["entries"][0]["criu_rs_compression"], marker, "{ours}");
        });
        let rep = check_images(&images).unwrap_or_else(|e| panic!("{}", chain(&e)));
        assert!(
            matches!(rep.digest, DirDigest::Verified { files: 1, bytes } if bytes == stored),
            "{:?}",
            rep.digest
        );
        assert!(rep.pages[0].1 >= 48 << 20, "{:?}", rep.pages);

        let root = restore_detached(&images).unwrap_or_else(|e| panic!("{algo}: {e}"));
        let guard = PidGuard::new(root);
        assert_eq!(verdict(root, &report), format!("ok {}", 48 * 256), "{algo}");
        drop(guard);
        assert!(wait_pid_gone(pid, Duration::from_secs(10)));

        // A damaged frame in the middle of the file: the restore names file and block.
        let bytes = std::fs::read(&packed).unwrap();
        let mut bad = bytes.clone();
        let at = bad.len() / 2;
        bad[at..at + 64].iter_mut().for_each(|b| *b ^= 0xa5);
        std::fs::write(&packed, &bad).unwrap();
        let e = restore_detached(&images).expect_err("damaged block restored");
        let _guard = PidGuard::new(pid);
        assert!(
            e.contains(&packed.display().to_string()) && e.contains("block at offset"),
            "{algo}: {e}"
        );
        assert!(
            wait_pid_gone(pid, Duration::from_secs(10)),
            "pid {pid} left after a refused restore"
        );
        let e = chain(&check_images(&images).expect_err("check-images of damage"));
        assert!(e.contains(&format!("pages-1.img.{suffix}")), "{e}");
    }
}

#[test]
fn compressed_shared_memory_restores() {
    if skip_unless_root("compressed_shared_memory_restores") {
        return;
    }
    let work = ScratchDir::new("compress-shmem");
    let report = work.path().join("report");
    let images = work.path().join("images");
    std::fs::create_dir(&images).unwrap();
    let wl = Workload::start(
        Path::new(SHMEM),
        &[report.to_str().unwrap()],
        "ready",
        Duration::from_secs(30),
    );
    let pid = wl.pid();
    dump_cli(pid, &images, "lz4");
    drop(wl);
    assert!(wait_pid_gone(pid, Duration::from_secs(10)));
    let shm_pagemaps: Vec<_> = std::fs::read_dir(&images)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("pagemap-shmem-"))
        .collect();
    assert_eq!(shm_pagemaps.len(), 1, "{shm_pagemaps:?}");
    crit317::decodes_as_we_do(
        &images.join(&shm_pagemaps[0]),
        ImageKind::ShmemPagemap,
        |ours| assert_eq!(ours["entries"][0]["criu_rs_compression"], "lz4", "{ours}"),
    );
    let root = restore_detached(&images).unwrap_or_else(|e| panic!("{e}"));
    let guard = PidGuard::new(root);
    assert_eq!(verdict(root, &report), "ok");
    drop(guard);
}
