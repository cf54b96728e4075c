//! Dump and restore throughput, freeze downtime and image size for a process with touched
//! anonymous memory, beside this machine's memcpy speed measured in the same run. The pages
//! digest: XXH3 speed, the restore with `--verify-pages` against the plain one, alternated,
//! and a check done before the restore instead (`criu check-images` style, one pass).
//!
//! `cargo bench -p criu-tests --bench dump_restore [-- MIB]` (default 1024 MiB; needs root).
//! Prints a Markdown table; the README keeps a copy of the latest one.

use std::path::Path;
use std::time::{Duration, Instant};

use criu_core::dump::{DumpOptions, dump};
use criu_core::image::digest::{self, ChunkHasher};
use criu_core::restore::{RestoreOptions, restore};
use criu_tests::{PidGuard, ScratchDir, Workload, is_root, wait_pid_gone};

// The built-in plugins register through inventory; naming them links them in.
use criu_plugin_files as _;
use criu_plugin_pipes as _;

const GIB: f64 = (1u64 << 30) as f64;

fn main() {
    if !is_root() {
        eprintln!("dump_restore bench: needs root (ptrace, clone3 set_tid); skipped");
        return;
    }
    let mib: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1024);
    let bytes = (mib as u64) << 20;
    let (memcpy, xxh3) = memcpy_and_xxh3_gibps(bytes as usize);
    let scratch = ScratchDir::new("bench");
    // Where the images go, the same amount written as plainly as it can be: the dump can
    // write no faster than this.
    let file_write = file_write_gibps(&scratch.path().join("write-probe"), bytes as usize);

    // 1. --leave-running dump: the downtime the workload sees.
    let report = scratch.path().join("report");
    let wl = start(mib, &report);
    let run_dir = scratch.path().join("running");
    std::fs::create_dir_all(&run_dir).expect("mkdir");
    let mut opts = DumpOptions::new(wl.pid(), &run_dir);
    opts.leave_running = true;
    // The workload shares our session, like a shell job.
    opts.shell_job = true;
    let t = Instant::now();
    let live = dump(&opts).expect("leave-running dump");
    let live_total = t.elapsed();
    verify(&wl, &report, "after --leave-running dump");

    // Both dumps start from the same state: without this the second one would pay for the
    // writeback of the first one's gigabyte of dirty page cache.
    std::fs::remove_dir_all(&run_dir).expect("remove first images");
    nix::unistd::sync();

    // 2. Full dump (kills the workload), then restore.
    let dir = scratch.path().join("images");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let mut opts = DumpOptions::new(wl.pid(), &dir);
    opts.shell_job = true;
    let t = Instant::now();
    let dumped = dump(&opts).expect("dump");
    let dump_time = t.elapsed();
    let pid = wl.pid();
    drop(wl);
    assert!(
        wait_pid_gone(pid, Duration::from_secs(10)),
        "pid {pid} not freed"
    );
    let image_bytes = dir_size(&dir);

    let ropts = RestoreOptions {
        images_dir: dir.clone(),
        detach: true,
        shell_job: true,
        ..Default::default()
    };
    // The page cache holds the images for every restore: each pays the same reads.
    let t = Instant::now();
    let checked = digest::verify_dir(&dir).expect("pages match their digest");
    let verify_before = t.elapsed();
    assert!(matches!(checked, digest::DirDigest::Verified { .. }));
    // Restores with --verify-pages and without, in ABBA order after one unmeasured restore:
    // the first restore after the dump and drift over the run hit both alike.
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for round in 0..13 {
        let check = matches!(round % 4, 1 | 0) && round > 0;
        let t = Instant::now();
        restore(&RestoreOptions {
            verify_pages: check,
            ..ropts.clone()
        })
        .expect("restore");
        let took = t.elapsed();
        match (round, check) {
            (0, _) => {} // warm-up, not counted
            (_, true) => with.push(took),
            (_, false) => without.push(took),
        }
        let restored = PidGuard::new(pid);
        verify_pid(restored.pid(), &report, "after restore");
        drop(restored);
        assert!(
            wait_pid_gone(pid, Duration::from_secs(10)),
            "pid {pid} not freed"
        );
    }
    let restore_time = median(&mut with);
    let unchecked = median(&mut without);

    let data = dumped.pages_written * 4096;
    println!("| figure | value |");
    println!("|---|---|");
    println!("| touched anonymous memory | {mib} MiB |");
    println!("| memcpy (this machine, same run) | {:.2} GiB/s |", memcpy);
    println!(
        "| XXH3-128 per MiB (pages digest), same buffer | {:.2} GiB/s |",
        xxh3
    );
    println!(
        "| buffered file write, 16 MiB writes into the images' filesystem (same run) | {:.2} GiB/s |",
        file_write
    );
    println!(
        "| dump (kill) | {:.3} s, {:.2} GiB/s |",
        dump_time.as_secs_f64(),
        data as f64 / GIB / dump_time.as_secs_f64()
    );
    println!(
        "| restore, median of 6 | {:.3} s, {:.2} GiB/s |",
        unchecked.as_secs_f64(),
        data as f64 / GIB / unchecked.as_secs_f64()
    );
    println!(
        "| restore --verify-pages (checked beside it), median of 6 | {:.3} s ({:+.1}%) |",
        restore_time.as_secs_f64(),
        (restore_time.as_secs_f64() / unchecked.as_secs_f64() - 1.0) * 100.0
    );
    println!(
        "| pages checked before a restore instead (one streaming pass) | {:.3} s ({:.1}% of a restore) |",
        verify_before.as_secs_f64(),
        verify_before.as_secs_f64() / unchecked.as_secs_f64() * 100.0
    );
    println!(
        "| all restores (--verify-pages / plain) | {} / {} |",
        list(&with),
        list(&without)
    );
    println!(
        "| --leave-running: frozen (downtime) / whole dump | {:.3} s / {:.3} s |",
        live.frozen_time_us as f64 / 1e6,
        live_total.as_secs_f64()
    );
    println!(
        "| image size (all files) | {:.1} MiB ({} pages) |",
        image_bytes as f64 / (1 << 20) as f64,
        dumped.pages_written
    );
}

fn start(mib: usize, report: &Path) -> Workload {
    Workload::start(
        Path::new(env!("CARGO_BIN_EXE_wl_bigmem")),
        &[&mib.to_string(), report.to_str().expect("utf-8 path")],
        "ready",
        Duration::from_secs(120),
    )
}

fn verify(wl: &Workload, report: &Path, when: &str) {
    verify_pid(wl.pid(), report, when);
}

/// Asks the workload to check its memory and waits for its verdict.
fn verify_pid(pid: i32, report: &Path, when: &str) {
    let _ = std::fs::remove_file(report);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGUSR1)
        .expect("signal workload");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(text) = std::fs::read_to_string(report)
            && text.ends_with('\n')
        {
            assert!(text.starts_with("ok "), "{when}: workload reports {text:?}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{when}: no report from pid {pid}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// memcpy and XXH3 (as the dump digests pages) speeds of this machine: best of 3 passes over
/// `len` bytes each.
fn memcpy_and_xxh3_gibps(len: usize) -> (f64, f64) {
    let src = vec![0x5au8; len];
    let mut dst = vec![0u8; len];
    let (mut copy, mut hash) = (f64::MAX, f64::MAX);
    for _ in 0..3 {
        let t = Instant::now();
        dst.copy_from_slice(&src);
        std::hint::black_box(&mut dst);
        copy = copy.min(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let mut h = ChunkHasher::new();
        // In the dump's writer pieces: 16 MiB.
        for piece in dst.chunks(16 << 20) {
            h.update(piece);
        }
        std::hint::black_box(h.finish(String::new()));
        hash = hash.min(t.elapsed().as_secs_f64());
    }
    (len as f64 / GIB / copy, len as f64 / GIB / hash)
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn list(v: &[Duration]) -> String {
    v.iter()
        .map(|d| format!("{:.3}", d.as_secs_f64()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Sequential buffered write speed into a new file at `path` (no fsync, as the dump does
/// not sync either), best of 2; the file is removed.
fn file_write_gibps(path: &Path, len: usize) -> f64 {
    use std::io::Write;
    let chunk = vec![0xa5u8; 16 << 20];
    let mut best = f64::MAX;
    for _ in 0..2 {
        let mut f = std::fs::File::create(path).expect("create write probe");
        let t = Instant::now();
        let mut left = len;
        while left > 0 {
            let n = left.min(chunk.len());
            f.write_all(&chunk[..n]).expect("write probe");
            left -= n;
        }
        drop(f);
        best = best.min(t.elapsed().as_secs_f64());
        std::fs::remove_file(path).expect("remove write probe");
    }
    len as f64 / GIB / best
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .expect("read images dir")
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum()
}
