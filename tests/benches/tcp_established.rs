//! The frozen time that established TCP connections add to a dump: `--tcp-established
//! --leave-running` dumps of a workload holding 0 and then 1,000 loopback connections (its
//! ends; the peers are this bench's), with the default eBPF network lock taken and lifted
//! inside the frozen window. Median of a few dumps of each.
//!
//! `cargo bench -p criu-tests --bench tcp_established [-- CONNECTIONS]` (default 1000;
//! needs root). Prints a Markdown table; the README keeps a copy of the latest one.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;

use criu_core::dump::{DumpOptions, dump};
use criu_tests::{ScratchDir, Workload, is_root};

// The built-in plugins register through inventory; naming them links them in.
use criu_plugin_files as _;
use criu_plugin_inet as _;
use criu_plugin_netlock as _;
use criu_plugin_pipes as _;

const ROUNDS: usize = 5;

/// Connects `n` times to `port`, prints `ready`, then waits to be killed.
const HOLDER: &str = r#"
import resource, signal, socket, sys
n, port = int(sys.argv[1]), int(sys.argv[2])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, n + 64)), hard))
held = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
print("ready", flush=True)
while True:
    signal.pause()
"#;

/// Median frozen time (ms) of `--leave-running` dumps of a holder of `n` connections.
fn frozen_ms(n: usize, scratch: &Path) -> f64 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let port = listener.local_addr().expect("addr").port().to_string();
    let accept = std::thread::spawn(move || -> Vec<TcpStream> {
        (0..n)
            .map(|_| listener.accept().expect("accept").0)
            .collect()
    });
    let wl = Workload::start(
        Path::new("python3"),
        &["-c", HOLDER, &n.to_string(), &port],
        "ready",
        Duration::from_secs(60),
    );
    let peers = accept.join().expect("accept thread");
    let mut times = Vec::new();
    for round in 0..ROUNDS {
        let dir = scratch.join(format!("{n}-{round}"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let mut opts = DumpOptions::new(wl.pid(), &dir);
        opts.leave_running = true;
        opts.tcp_established = true;
        // The workload shares our session, like a shell job.
        opts.shell_job = true;
        let report = dump(&opts).unwrap_or_else(|e| panic!("dump of {n} connections: {e}"));
        times.push(report.frozen_time_us as f64 / 1e3);
        std::fs::remove_dir_all(&dir).expect("remove images");
    }
    drop(wl);
    drop(peers);
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn main() {
    if !is_root() {
        eprintln!("tcp_established bench: needs root (ptrace, TCP repair, bpf); skipped");
        return;
    }
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1000);
    let scratch = ScratchDir::new("bench-tcp");
    let none = frozen_ms(0, scratch.path());
    let many = frozen_ms(n, scratch.path());
    println!("| figure | value |");
    println!("|---|---|");
    println!("| frozen, no connection (median of {ROUNDS}) | {none:.1} ms |");
    println!("| frozen, {n} established connections (median of {ROUNDS}) | {many:.1} ms |");
    println!(
        "| added per 1,000 connections | {:.1} ms |",
        (many - none) * 1000.0 / n as f64
    );
}
