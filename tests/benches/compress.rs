//! Pages compression (`--compress`): image size, dump time, frozen time and the restore's
//! decompression speed, raw against lz4, zstd:1 and zstd:3, beside memcpy, for incompressible
//! memory (python3 holding os.urandom bytes), a python3 dict and a Rust program's heap
//! (`wl_heap`: a HashMap of formatted records and a Vec of floats).
//!
//! `cargo bench -p criu-tests --bench compress [-- MIB]` (default 256 MiB per workload; needs
//! root and python3). Each dump is `--leave-running`, so one workload serves every mode;
//! the frozen time is the workload's downtime. Prints a Markdown table.

use std::path::Path;
use std::time::{Duration, Instant};

use criu_core::dump::{DumpOptions, dump};
use criu_core::image::compress::Compression;
use criu_core::image::compress_read;
use criu_tests::{ScratchDir, Workload, is_root};

use criu_plugin_files as _;
use criu_plugin_pipes as _;

const GIB: f64 = (1u64 << 30) as f64;
const MODES: [&str; 4] = ["raw", "lz4", "zstd:1", "zstd:3"];

fn main() {
    if !is_root() {
        eprintln!("compress bench: needs root (ptrace); skipped");
        return;
    }
    let mib: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(256);
    let memcpy = memcpy_gibps(mib << 20);
    println!("memcpy: {memcpy:.2} GiB/s\n");
    println!("| memory | mode | pages stored | ratio | dump | frozen | pages decode (restore) |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    let scratch = ScratchDir::new("bench-compress");
    let py_random = format!(
        "import os,sys,time\nb=os.urandom({})\nprint('ready',flush=True)\nwhile True: time.sleep(1)",
        mib << 20
    );
    // About 150 bytes per entry (dict slot, int, str).
    let py_dict = format!(
        "import time\nd={{i: 'user-%08d score=%d' % (i, i*7 % 1000) for i in range({})}}\nprint('ready',flush=True)\nwhile True: time.sleep(1)",
        (mib << 20) / 150
    );
    let heap_arg = mib.to_string();
    let workloads: [(&str, &str, Vec<&str>); 3] = [
        (
            "random (python3 os.urandom)",
            "python3",
            vec!["-c", &py_random],
        ),
        ("python3 dict", "python3", vec!["-c", &py_dict]),
        (
            "Rust heap (wl_heap)",
            env!("CARGO_BIN_EXE_wl_heap"),
            vec![&heap_arg],
        ),
    ];
    for (what, prog, args) in &workloads {
        let wl = Workload::start(Path::new(prog), args, "ready", Duration::from_secs(300));
        for mode in MODES {
            let dir = scratch
                .path()
                .join(format!("img-{}", mode.replace(':', "-")));
            std::fs::create_dir_all(&dir).expect("mkdir");
            nix::unistd::sync();
            let mut opts = DumpOptions::new(wl.pid(), &dir);
            opts.leave_running = true;
            opts.shell_job = true;
            opts.compress = (mode != "raw").then(|| Compression::parse(mode).expect("mode"));
            let t = Instant::now();
            let rep = dump(&opts).expect("dump");
            let dump_time = t.elapsed();
            let (stored, raw, decode) = pages_files(&dir);
            // A raw file is read in place by the tasks: nothing to decode.
            let speed = if mode == "raw" {
                "–".to_string()
            } else {
                format!(
                    "{:.2} GiB/s",
                    raw as f64 / GIB / decode.as_secs_f64().max(1e-9)
                )
            };
            println!(
                "| {what} | {mode} | {:.1} MiB | {:.3} | {:.2} s | {:.2} s | {speed} |",
                stored as f64 / (1 << 20) as f64,
                stored as f64 / raw.max(1) as f64,
                dump_time.as_secs_f64(),
                rep.frozen_time_us as f64 / 1e6,
            );
            std::fs::remove_dir_all(&dir).expect("rm images");
        }
        drop(wl);
    }
}

/// Stored bytes, raw bytes and the time to open every pages file as restore does (a raw
/// file: opened; a compressed one: decompressed into a memfd).
fn pages_files(dir: &Path) -> (u64, u64, Duration) {
    let (mut stored, mut raw, mut took) = (0, 0, Duration::ZERO);
    for e in std::fs::read_dir(dir).expect("readdir").flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("pages-") {
            continue;
        }
        stored += e.metadata().expect("stat").len();
        let t = Instant::now();
        let f = compress_read::open_pages(&e.path()).expect("open pages");
        took += t.elapsed();
        raw += f.metadata().expect("stat").len();
    }
    (stored, raw, took)
}

fn memcpy_gibps(bytes: usize) -> f64 {
    let src = vec![7u8; bytes];
    let mut dst = vec![0u8; bytes];
    dst.copy_from_slice(&src);
    let t = Instant::now();
    for _ in 0..4 {
        dst.copy_from_slice(std::hint::black_box(&src));
    }
    std::hint::black_box(&dst);
    4.0 * bytes as f64 / GIB / t.elapsed().as_secs_f64()
}
