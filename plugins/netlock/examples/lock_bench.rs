//! Benchmark (not a test): time to take and to lift the eBPF lock with 1 and 1,000
//! connections, in fresh network namespaces with only `lo` (a thread unshares them).
//! Run as root: `cargo run --release -p criu-plugin-netlock --example lock_bench`.
//!
//! Three figures: the first lock in a namespace (loads the programs and attaches them),
//! a later lock and its lift in the same process, and a later lock and lift made by a new
//! process (as each `criu dump` is: `lock_bench child NETNS N` run by the parent).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
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

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// One lock and its lift in namespace `netns` (`None`: this thread's).
fn lock_and_lift(netns: Option<&Path>, t: &[Tuple]) -> (Duration, Duration) {
    let start = Instant::now();
    let locked = ebpf::lock(&LockSpec {
        netns,
        scope: Scope::Connections,
        tuples: t,
    })
    .expect("lock");
    let lock = start.elapsed();
    let start = Instant::now();
    assert!(ebpf::lift(&locked.pin_dir, Scope::Connections, t).expect("lift"));
    (lock, start.elapsed())
}

fn child(netns: &str, n: usize) {
    let (l, u) = lock_and_lift(Some(Path::new(netns)), &tuples(n));
    println!("{} {}", l.as_nanos(), u.as_nanos());
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [cmd, netns, n] = args.as_slice()
        && cmd == "child"
    {
        return child(netns, n.parse().expect("N"));
    }
    std::thread::spawn(|| {
        let mut cold = Vec::new();
        for _ in 0..ROUNDS {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare");
            // The previous namespace is torn down in the background (under the RTNL lock,
            // which attaching takes too): let it finish outside the measure.
            std::thread::sleep(Duration::from_millis(300));
            cold.push(lock_and_lift(None, &tuples(1)).0);
        }
        println!(
            "first lock in a namespace (load + attach): {:.2} ms (median of {ROUNDS})",
            ms(median(cold))
        );
        let me = std::env::current_exe().expect("current_exe");
        let netns = format!("/proc/{}/task/{}/ns/net", std::process::id(), nix::unistd::gettid());
        for n in [1usize, 1000] {
            let t = tuples(n);
            let (mut lock, mut unlock) = (Vec::new(), Vec::new());
            for _ in 0..ROUNDS {
                let (l, u) = lock_and_lift(None, &t);
                lock.push(l);
                unlock.push(u);
            }
            let (l, u) = (median(lock), median(unlock));
            let (mut plock, mut punlock) = (Vec::new(), Vec::new());
            for _ in 0..ROUNDS {
                let out = Command::new(&me)
                    .args(["child", &netns, &n.to_string()])
                    .output()
                    .expect("run the child");
                assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
                let text = String::from_utf8_lossy(&out.stdout);
                let v: Vec<u64> = text.split_whitespace().map(|x| x.parse().unwrap()).collect();
                plock.push(Duration::from_nanos(v[0]));
                punlock.push(Duration::from_nanos(v[1]));
            }
            let (pl, pu) = (median(plock), median(punlock));
            println!(
                "{n:>5} connection(s), programs attached: lock {:.2} ms, unlock {:.2} ms, total {:.2} ms; \
                 in a new process: lock {:.2} ms, unlock {:.2} ms, total {:.2} ms (medians of {ROUNDS})",
                ms(l),
                ms(u),
                ms(l + u),
                ms(pl),
                ms(pu),
                ms(pl + pu)
            );
        }
        let dir = ebpf::pin_dir_for(
            criu_plugin_netlock::ns::own_netns().expect("own netns inode"),
        );
        ebpf::detach(&dir).expect("detach");
    })
    .join()
    .expect("bench thread");
}
