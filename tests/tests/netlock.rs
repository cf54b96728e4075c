//! The eBPF network lock on real connections (plugins/netlock): a connection whose server
//! side vanishes silently (closed in repair mode, as a dumped and killed tree) must not get
//! a reset to its client while locked, other traffic must flow, and lifting the lock must
//! let the reset through. Over a veth pair between a namespace and the host, over
//! loopback (IPv4 and IPv6), for the whole namespace, for a lock pinned by a process
//! that exited and lifted by another (`criu network-unlock`), for two locks sharing a
//! namespace's programs, and for the pins of a namespace that is gone (swept).

use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::time::Duration;

use criu_plugin_netlock::ebpf::{self, LockSpec};
use criu_plugin_netlock::{LockRecord, Scope, Tuple};
use criu_tests::{ScratchDir, skip_unless_root};
use netlock_support::{
    NetNs, PinDir, Seen, close_silently, connect, other_traffic_flows, send_and_watch, server_tuple,
};

mod netlock_support;

const QUIET: Duration = Duration::from_millis(800);
const RESET_WITHIN: Duration = Duration::from_secs(8);

/// The scenario once the server end is locked and gone: silence, other traffic, counter,
/// then after `lift` a reset.
fn silence_then_reset(
    client: &mut std::net::TcpStream,
    listener: &TcpListener,
    to: SocketAddr,
    pins: &std::path::Path,
    tuple: Tuple,
    lift: impl FnOnce(),
) {
    assert_eq!(
        send_and_watch(client, QUIET),
        Seen::Silence,
        "a reset reached the client through the lock"
    );
    let (ingress, egress) = ebpf::dropped(pins).unwrap();
    assert!(ingress + egress > 0, "the lock dropped nothing");
    // The client retransmits (RTO backoff: a few seconds at most); each one is dropped.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let (mut i2, mut e2) = (ingress, egress);
    while i2 + e2 == ingress + egress && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        (i2, e2) = ebpf::dropped(pins).unwrap();
    }
    assert!(
        i2 + e2 > ingress + egress,
        "no retransmission dropped ({ingress}+{egress} then {i2}+{e2} dropped)"
    );
    assert_eq!(
        send_and_watch(client, Duration::from_millis(100)),
        Seen::Silence,
        "a reset reached the client through the lock"
    );
    assert!(
        other_traffic_flows(listener, to),
        "another connection is blocked by a connection lock"
    );
    lift();
    assert!(
        !ebpf::is_listed(pins, &tuple).unwrap(),
        "{tuple} still listed after the lift"
    );
    assert_eq!(
        send_and_watch(client, RESET_WITHIN),
        Seen::Reset,
        "no reset after the lock was lifted"
    );
}

#[test]
fn veth_connection_lock_keeps_the_reset_out_until_lifted() {
    if skip_unless_root("veth_connection_lock_keeps_the_reset_out_until_lifted") {
        return;
    }
    let ns = NetNs::with_veth("veth", 231);
    let pins = PinDir::of(&ns);
    let to: SocketAddr = "10.231.0.2:7001".parse().unwrap();
    let listener = ns.enter(|| TcpListener::bind(to).unwrap());
    let (mut client, server) = connect(&listener, to);
    let tuple = server_tuple(&server);
    let path = ns.path();
    let locked = ebpf::lock(&LockSpec {
        netns: Some(&path),
        scope: Scope::Connections,
        tuples: &[tuple],
    })
    .unwrap();
    assert!(locked.interfaces.contains(&"lo".to_string()), "{locked:?}");
    assert_eq!(locked.interfaces.len(), 2, "{locked:?}");
    assert_eq!(locked.attached.len(), 2, "{locked:?}");
    assert_eq!(locked.pin_dir, pins.path());
    close_silently(server);
    silence_then_reset(&mut client, &listener, to, pins.path(), tuple, || {
        assert!(ebpf::lift(pins.path(), Scope::Connections, &[tuple]).unwrap());
    });
}

fn loopback(addr: &str) {
    let ns = NetNs::new(if addr.contains(':') { "lo6" } else { "lo4" });
    let pins = PinDir::of(&ns);
    let to: SocketAddr = addr.parse().unwrap();
    // Both ends inside the namespace, whose only interface is lo.
    let (listener, mut client, server) = ns.enter(|| {
        let l = TcpListener::bind(to).unwrap();
        let (c, s) = connect(&l, to);
        (l, c, s)
    });
    let path = ns.path();
    let tuple = server_tuple(&server);
    ebpf::lock(&LockSpec {
        netns: Some(&path),
        scope: Scope::Connections,
        tuples: &[tuple],
    })
    .unwrap();
    close_silently(server);
    ns.enter(|| {
        silence_then_reset(&mut client, &listener, to, pins.path(), tuple, || {
            assert!(ebpf::lift(pins.path(), Scope::Connections, &[tuple]).unwrap());
        })
    });
}

#[test]
fn loopback_connection_lock_ipv4() {
    if skip_unless_root("loopback_connection_lock_ipv4") {
        return;
    }
    loopback("127.0.0.1:7002");
}

#[test]
fn loopback_connection_lock_ipv6() {
    if skip_unless_root("loopback_connection_lock_ipv6") {
        return;
    }
    loopback("[::1]:7003");
}

#[test]
fn namespace_scope_drops_all_traffic_until_lifted() {
    if skip_unless_root("namespace_scope_drops_all_traffic_until_lifted") {
        return;
    }
    let ns = NetNs::with_veth("nsall", 232);
    let pins = PinDir::of(&ns);
    let to: SocketAddr = "10.232.0.2:7004".parse().unwrap();
    let listener = ns.enter(|| TcpListener::bind(to).unwrap());
    assert!(
        other_traffic_flows(&listener, to),
        "no traffic before the lock"
    );
    let path = ns.path();
    ebpf::lock(&LockSpec {
        netns: Some(&path),
        scope: Scope::Namespace,
        tuples: &[],
    })
    .unwrap();
    assert!(
        !other_traffic_flows(&listener, to),
        "a connection into a locked namespace went through"
    );
    let inside: SocketAddr = "127.0.0.1:7005".parse().unwrap();
    let flows_inside = ns.enter(|| {
        let l = TcpListener::bind(inside).unwrap();
        other_traffic_flows(&l, inside)
    });
    assert!(
        !flows_inside,
        "loopback traffic of a locked namespace went through"
    );
    let (ingress, egress) = ebpf::dropped(pins.path()).unwrap();
    assert!(
        ingress > 0 && egress > 0,
        "dropped {ingress} in, {egress} out"
    );
    assert!(ebpf::lift(pins.path(), Scope::Namespace, &[]).unwrap());
    assert!(
        netlock_support::flows_within(&listener, to, Duration::from_secs(5)),
        "still blocked after the lift"
    );
}

/// The lock taken by another process (`netlock_tool`, which pins it, writes the record
/// and exits), still in force after that process is gone, lifted by `criu network-unlock`.
#[test]
fn a_pinned_lock_outlives_its_process_and_criu_network_unlock_lifts_it() {
    if skip_unless_root("a_pinned_lock_outlives_its_process_and_criu_network_unlock_lifts_it") {
        return;
    }
    let ns = NetNs::with_veth("pin", 233);
    let pins = PinDir::of(&ns);
    let images = ScratchDir::new("netlock-pin");
    let to: SocketAddr = "10.233.0.2:7006".parse().unwrap();
    let listener = ns.enter(|| TcpListener::bind(to).unwrap());
    let (mut client, server) = connect(&listener, to);
    let tuple = server_tuple(&server);
    let out = Command::new(env!("CARGO_BIN_EXE_netlock_tool"))
        .arg("lock")
        .arg(ns.path())
        .arg(images.path())
        .arg(tuple.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "netlock_tool: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let record = std::fs::read_to_string(images.path().join("criu-rs-netlock.txt")).unwrap();
    let record = LockRecord::decode(&record).unwrap();
    assert_eq!(record.tuples, vec![tuple]);
    assert_eq!(record.netns, ns.inode());
    close_silently(server);
    let criu = env!("CARGO_BIN_EXE_criu_under_test");
    silence_then_reset(&mut client, &listener, to, pins.path(), tuple, || {
        let out = Command::new(criu)
            .args(["network-unlock", "-D"])
            .arg(images.path())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("Network unlocked: 1 connection"),
            "criu network-unlock: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
    // Twice is not an error: nothing is left to lift.
    let out = Command::new(criu)
        .args(["network-unlock", "-D"])
        .arg(images.path())
        .output()
        .unwrap();
    assert!(out.status.success());
}

/// Two locks in one namespace share its programs (the second attaches nothing); lifting
/// one leaves the other's connection listed; once the namespace is gone, its pins are
/// swept by the next lock taken anywhere.
#[test]
fn locks_share_a_namespace_and_pins_of_a_gone_namespace_are_swept() {
    if skip_unless_root("locks_share_a_namespace_and_pins_of_a_gone_namespace_are_swept") {
        return;
    }
    let ns = NetNs::new("share");
    let pins = PinDir::of(&ns);
    let path = ns.path();
    let a: Tuple = "127.0.0.1:7010 127.0.0.1:40010".parse().unwrap();
    let b: Tuple = "127.0.0.1:7011 127.0.0.1:40011".parse().unwrap();
    let lock = |t: Tuple| {
        ebpf::lock(&LockSpec {
            netns: Some(&path),
            scope: Scope::Connections,
            tuples: &[t],
        })
        .unwrap()
    };
    assert_eq!(lock(a).attached, ["lo"]);
    let second = lock(b);
    assert!(second.attached.is_empty(), "{second:?}");
    assert!(ebpf::lift(pins.path(), Scope::Connections, &[a]).unwrap());
    assert!(!ebpf::is_listed(pins.path(), &a).unwrap());
    assert!(ebpf::is_listed(pins.path(), &b).unwrap());
    // Lifting twice finds nothing to lift.
    assert!(!ebpf::lift(pins.path(), Scope::Connections, &[a]).unwrap());
    assert!(
        criu_plugin_netlock::pins::link_ifindex(&pins.path().join("ingress-1"))
            .unwrap()
            .is_some()
    );
    drop(ns);
    // The kernel tears the namespace down in the background; its lo goes last. A lock
    // taken meanwhile by a test running beside this one may sweep it first.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline && pins.path().exists() {
        std::thread::sleep(Duration::from_millis(100));
        ebpf::sweep_stale().unwrap();
    }
    assert!(
        !pins.path().exists(),
        "the pins of a deleted namespace were not swept: {}",
        pins.path().display()
    );
    assert!(!pins.path().exists());
}
