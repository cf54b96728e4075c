//! Test helper: `netlock_tool lock NETNS IMAGES_DIR "LOCAL REMOTE"...` takes an
//! eBPF connection lock in namespace file NETNS (pinned), writes its record to
//! IMAGES_DIR/criu-rs-netlock.txt (as a dump does) and exits, leaving the lock in force.

use std::path::Path;

use criu_plugin_api::NetworkLock;
use criu_plugin_netlock::ebpf::{self, LockSpec};
use criu_plugin_netlock::{LockRecord, Scope, Tuple, ns};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [cmd, netns, images, tuples @ ..] = args.as_slice() else {
        eprintln!("usage: netlock_tool lock NETNS IMAGES_DIR \"LOCAL REMOTE\"...");
        std::process::exit(2);
    };
    assert_eq!(cmd, "lock", "unknown command {cmd}");
    let tuples: Vec<Tuple> = tuples
        .iter()
        .map(|t| t.parse().unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let netns = Path::new(netns);
    let locked = ebpf::lock(&LockSpec {
        netns: Some(netns),
        scope: Scope::Connections,
        tuples: &tuples,
    })
    .unwrap_or_else(|e| panic!("lock: {}", criu_plugin_netlock::error::chain(&e)));
    let record = LockRecord {
        method: NetworkLock::Ebpf,
        netns: ns::ns_inode(netns).expect("netns inode"),
        pin_dir: Some(locked.pin_dir),
        table: None,
        scope: Scope::Connections,
        tuples,
        lifted: false,
    };
    std::fs::write(
        Path::new(images).join("criu-rs-netlock.txt"),
        record.encode(),
    )
    .expect("write the record");
}
