//! Benchmark (not a test): time to take and to lift the eBPF lock with 1 and 1,000
//! connections, in a fresh network namespace with only `lo` (a thread unshares it).
//! Run as root: `cargo run --release -p criu-plugin-netlock --example lock_bench`.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criu_plugin_netlock::ebpf::{self, LockSpec};
use criu_plugin_netlock::{Scope, Tuple};

const ROUNDS: usize = 20;

fn tuples(n: usize) -> Vec<Tuple> {
    (0..n)
        .map(|i| {
            Tuple::new(
                SocketAddr::new(Ipv4Addr::new(10, 9, (i >> 8) as u8, i as u8).into(), 80),
                SocketAddr::new(Ipv4Addr::new(10, 8, 0, 1).into(), 40000 + i as u16),
            )
        })
        .collect()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    std::thread::spawn(|| {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
        let dir = PathBuf::from(format!("{}/bench-{}", criu_plugin_netlock::ns::PIN_ROOT, std::process::id()));
        for n in [1usize, 1000] {
            let t = tuples(n);
            let (mut lock, mut unlock) = (Vec::new(), Vec::new());
            for _ in 0..ROUNDS {
                let start = Instant::now();
                ebpf::lock(&LockSpec {
                    netns: None,
                    scope: Scope::Connections,
                    tuples: &t,
                    pin_dir: &dir,
                })
                .expect("lock");
                lock.push(start.elapsed());
                let start = Instant::now();
                assert!(ebpf::lift(&dir).expect("lift"));
                unlock.push(start.elapsed());
            }
            let (l, u) = (median(lock), median(unlock));
            println!(
                "{n:>5} connection(s): lock {:.2} ms, unlock {:.2} ms, total {:.2} ms (median of {ROUNDS})",
                l.as_secs_f64() * 1e3,
                u.as_secs_f64() * 1e3,
                (l + u).as_secs_f64() * 1e3
            );
        }
    })
    .join()
    .expect("bench thread");
}
