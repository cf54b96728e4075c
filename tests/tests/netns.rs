//! A tree whose root has a network namespace of its own (the C workload
//! `workloads/netns_wl.c` unshares it; the test sets it up with `ip`: loopback up with an
//! extra address, a veth pair to the host with IPv4/IPv6 addresses and a route, sysctls) is
//! dumped into CRIU's `netdev`/`netns` images and raw `ifaddr`/`route`/`route6`/`rule`
//! images, and restored into a new network namespace with `--external veth[IN]:OUT`. The
//! test compares links, addresses, routes and sysctls (read with `ip -j` and /proc from
//! inside), drives TCP and UDP over the veth from the host, and the workload checks its
//! socketpair, an established loopback connection (`--tcp-established`), loopback
//! addresses and a connection out over the veth. crit 3.17 decodes the protobuf images,
//! iproute2's `showdump` the raw ones. Bad images (an unknown device type, an address
//! image cut short, no outer veth name) fail the restore naming them, leaving nothing; a
//! bridge inside is refused at dump, the tree running on.

mod crit317;
mod restore_common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use criu_core::dump::{DumpOptions, dump};
use criu_core::restore::{RestoreOptions, restore};
use criu_proto::ImageKind;
use criu_proto::images::{NetDeviceEntry, TaskKobjIdsEntry};
use criu_tests::{ScratchDir, TreeGuard, pid_exists, skip_unless_root, wait_pid_gone};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use prost::Message;

use criu_plugin_files as _;
use criu_plugin_inet as _;
use criu_plugin_netlock as _;
use criu_plugin_unix as _;

use restore_common::{spawn_bg, wait_lines};

/// The name of the veth end inside the namespace.
const INNER: &str = "crn0";

struct Started {
    pid: i32,
    report: PathBuf,
    trigger: PathBuf,
    images: PathBuf,
    /// The host end of the veth.
    host_if: String,
    _scratch: ScratchDir,
}

fn tools_present(test: &str) -> bool {
    for (tool, arg) in [("gcc", "--version"), ("ip", "-V"), ("nsenter", "--version")] {
        let ok = Command::new(tool)
            .arg(arg)
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            assert!(
                std::env::var_os("CI").is_none(),
                "{test}: {tool} missing in CI"
            );
            eprintln!("skipping {test}: {tool} is not installed");
            return false;
        }
    }
    true
}

fn sh(script: &str) -> String {
    let out = Command::new("sh")
        .args(["-c", script])
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `script` inside `pid`'s network namespace.
fn ns_sh(pid: i32, script: &str) -> String {
    sh(&format!("nsenter -t {pid} -n sh -c '{script}'"))
}

fn link_exists(name: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", name])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn wait_link_gone(name: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while link_exists(name) {
        assert!(Instant::now() < deadline, "host device {name} still there");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Removes the host end on drop (the namespace may outlive a failed test's tree briefly).
struct LinkGuard(String);

impl Drop for LinkGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.0]).output();
    }
}

/// Builds and starts the workload, sets its namespace up (veth `host_if` on `10.A.B.0/24`,
/// `extra` run inside too), and waits for its sockets.
fn start(name: &str, host_if: &str, net: &str, extra: &str) -> Started {
    let scratch = ScratchDir::new(name);
    let dir = scratch.path().canonicalize().expect("scratch");
    let exe = dir.join("netns_wl");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads/netns_wl.c");
    let ok = Command::new("gcc")
        .args(["-O1", "-Wall", "-o"])
        .arg(&exe)
        .arg(src)
        .status()
        .expect("gcc");
    assert!(ok.success(), "gcc failed on netns_wl.c");
    let images = dir.join("images");
    std::fs::create_dir(&images).expect("images dir");
    let report = dir.join("report");
    let trigger = dir.join("trigger");
    let pid = spawn_bg(
        exe.to_str().expect("path"),
        &[
            report.to_str().expect("path"),
            trigger.to_str().expect("path"),
        ],
    );
    let first = wait_lines(&report, 1, Duration::from_secs(10));
    assert_eq!(first[0], format!("ns {pid}"), "{first:?}");
    let w = Started {
        pid,
        report,
        trigger,
        images,
        host_if: host_if.into(),
        _scratch: scratch,
    };
    sh(&format!(
        "ip link add {host_if} type veth peer name {INNER} netns {pid} && \
         ip addr add {net}.1/24 dev {host_if} && ip link set {host_if} up"
    ));
    ns_sh(
        pid,
        &format!(
            "ip link set lo up && ip addr add 10.99.0.1/32 dev lo && \
             ip link set {INNER} mtu 1400 && ip addr add {net}.2/24 dev {INNER} && \
             ip addr add fd00:77::2/64 dev {INNER} nodad && ip link set {INNER} up && \
             ip route add 10.88.0.0/16 via {net}.1 && \
             ip rule add from 10.99.0.1 table 101 pref 1001 && \
             ip -6 rule add from fd00:77::/64 table 100 pref 1000 && \
             echo 77 > /proc/sys/net/unix/max_dgram_qlen && \
             echo 2 > /proc/sys/net/ipv4/conf/{INNER}/rp_filter && {extra} true"
        ),
    );
    std::fs::write(&w.trigger, b"1").expect("trigger");
    let lines = wait_lines(&w.report, 2, Duration::from_secs(10));
    assert_eq!(lines[1], "ready", "{lines:?}");
    w
}

/// What the test compares: links, addresses, routes, rules and two sysctls, as `ip` shows
/// them.
fn net_state(pid: i32) -> String {
    let links: serde_json::Value =
        serde_json::from_str(&ns_sh(pid, "ip -j addr show")).expect("ip -j addr");
    let mut out = Vec::new();
    for l in links.as_array().expect("links") {
        let up = l["flags"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x == "UP"));
        let mut addrs: Vec<String> = l["addr_info"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|x| format!("{}/{}", x["local"], x["prefixlen"]))
                    .collect()
            })
            .unwrap_or_default();
        addrs.sort();
        out.push(format!(
            "{} {} mtu {} up {up} {addrs:?}",
            l["ifindex"], l["ifname"], l["mtu"]
        ));
    }
    for fam in ["-4", "-6"] {
        let routes: serde_json::Value =
            serde_json::from_str(&ns_sh(pid, &format!("ip -j {fam} route show"))).expect("routes");
        let mut r: Vec<String> = routes
            .as_array()
            .expect("routes")
            .iter()
            .map(|x| format!("{} via {} dev {}", x["dst"], x["gateway"], x["dev"]))
            .collect();
        r.sort();
        out.extend(r);
    }
    // Rules of both families (IPv6 ones are ours: CRIU saves IPv4 rules only).
    for fam in ["-4", "-6"] {
        out.push(ns_sh(pid, &format!("ip {fam} rule show")));
    }
    out.push(ns_sh(
        pid,
        &format!("cat /proc/sys/net/unix/max_dgram_qlen /proc/sys/net/ipv4/conf/{INNER}/rp_filter"),
    ));
    out.join("\n")
}

fn tcp_echo(addr: &str, msg: &str) -> String {
    let mut s = TcpStream::connect_timeout(&addr.parse().expect("addr"), Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    s.write_all(msg.as_bytes()).expect("write");
    let mut got = String::new();
    s.read_to_string(&mut got).expect("read");
    got
}

fn udp_echo(addr: &str, msg: &str) -> String {
    let s = UdpSocket::bind("0.0.0.0:0").expect("udp");
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    s.send_to(msg.as_bytes(), addr).expect("send");
    let mut buf = [0u8; 64];
    let n = s.recv(&mut buf).expect("udp answer");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn ns_inode(pid: i32) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/net"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The root's net namespace id from its ids image.
fn net_id(images: &Path, pid: i32) -> u32 {
    let bytes = std::fs::read(images.join(format!("ids-{pid}.img"))).expect("ids image");
    let raw = criu_proto::framing::parse(&bytes).expect("ids framing");
    let ids = TaskKobjIdsEntry::decode(raw.entries[0].payload.as_slice()).expect("ids");
    ids.net_ns_id.expect("net")
}

/// Dumps with `--tcp-established` (left stopped), kills, waits for the pid and the host end.
fn dump_and_kill(w: &Started, guard: TreeGuard) {
    let mut dopts = DumpOptions::new(w.pid, &w.images);
    dopts.leave_stopped = true;
    dopts.tcp_established = true;
    dump(&dopts).unwrap_or_else(|e| panic!("dump: {e}\n{e:?}"));
    let _ = kill(Pid::from_raw(w.pid), Signal::SIGKILL);
    assert!(guard.kill_and_wait(Duration::from_secs(10)).is_empty());
    assert!(wait_pid_gone(w.pid, Duration::from_secs(10)));
    wait_link_gone(&w.host_if);
}

fn restore_opts(w: &Started, external: bool) -> RestoreOptions {
    RestoreOptions {
        images_dir: w.images.clone(),
        detach: true,
        tcp_established: true,
        external: if external {
            vec![format!("veth[{INNER}]:{}", w.host_if)]
        } else {
            Vec::new()
        },
        ..RestoreOptions::default()
    }
}

#[test]
fn netns_root_with_veth_survives_dump_kill_restore() {
    let name = "netns_root_with_veth_survives_dump_kill_restore";
    if skip_unless_root(name) || !tools_present(name) {
        return;
    }
    let w = start("netns-main", "crnh0", "10.77.0", "");
    let _link = LinkGuard(w.host_if.clone());
    let guard = TreeGuard::new([w.pid]);
    let me = std::process::id() as i32;
    assert_ne!(ns_inode(w.pid), ns_inode(me));
    assert_eq!(tcp_echo("10.77.0.2:7000", "a"), "tcp:a");
    assert_eq!(udp_echo("10.77.0.2:7001", "b"), "udp:b");
    let before = net_state(w.pid);
    let old_ns = std::fs::metadata(format!("/proc/{}/ns/net", w.pid))
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .expect("ns inode");
    dump_and_kill(&w, guard);

    // The network lock was taken in the tree's namespace.
    let lock = std::fs::read_to_string(w.images.join("criu-rs-netlock.txt")).expect("lock");
    assert!(lock.contains(&format!("netns {old_ns}")), "{lock}");
    let id = net_id(&w.images, w.pid);
    let netdev = w.images.join(ImageKind::Netdev.file_name(u64::from(id)));
    crit317::decodes_as_we_do(&netdev, ImageKind::Netdev, |ours| {
        let names: Vec<_> = ours["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .map(|e| format!("{} {}", e["type"], e["name"]))
            .collect();
        assert_eq!(
            names,
            ["\"LOOPBACK\" \"lo\"", "\"VETH\" \"crn0\""],
            "{ours}"
        );
    });
    let netns = w.images.join(ImageKind::Netns.file_name(u64::from(id)));
    crit317::decodes_as_we_do(&netns, ImageKind::Netns, |ours| {
        assert_eq!(ours["entries"][0]["unix_conf"][0]["iarg"], 77, "{ours}");
    });
    for (args, file, want) in [
        ("addr showdump", ImageKind::Ifaddr, "10.77.0.2/24"),
        (
            "route showdump",
            ImageKind::Route,
            "10.88.0.0/16 via 10.77.0.1",
        ),
        ("-6 route showdump", ImageKind::Route6, "fd00:77::/64"),
    ] {
        let path = w.images.join(file.file_name(u64::from(id)));
        let shown = sh(&format!("ip {args} < {}", path.display()));
        assert!(shown.contains(want), "ip {args}: {shown}");
    }

    let outcome = restore(&restore_opts(&w, true));
    let guard = TreeGuard::new([w.pid]);
    outcome.unwrap_or_else(|e| panic!("restore: {e}\n{e:?}"));
    assert!(link_exists(&w.host_if), "the outer end is back");
    sh(&format!(
        "ip addr add 10.77.0.1/24 dev {0} && ip link set {0} up",
        w.host_if
    ));
    assert_ne!(ns_inode(w.pid), ns_inode(me), "a new namespace");
    assert_eq!(net_state(w.pid), before);
    assert_eq!(tcp_echo("10.77.0.2:7000", "c"), "tcp:c");
    assert_eq!(udp_echo("10.77.0.2:7001", "d"), "udp:d");
    let host = TcpListener::bind("10.77.0.1:7100").expect("host listener");
    let answer = std::thread::spawn(move || {
        let (mut c, _) = host.accept().expect("accept from the namespace");
        let mut buf = [0u8; 7];
        c.read_exact(&mut buf).expect("read");
        c.write_all(b"host-ok").expect("write");
        buf
    });
    std::fs::write(&w.trigger, b"12").expect("trigger");
    let lines = wait_lines(&w.report, 3, Duration::from_secs(15));
    assert_eq!(lines[2], "ok", "{lines:?}");
    assert_eq!(&answer.join().expect("host thread"), b"from-ns");
    drop(guard);
    wait_link_gone(&w.host_if);
}

fn restore_fails_naming(w: &Started, external: bool, what: &[&str]) {
    let err = restore(&restore_opts(w, external)).expect_err("restore must fail");
    let chain = std::iter::successors(Some(&err as &dyn std::error::Error), |e| e.source())
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join(": ");
    for w in what {
        assert!(chain.contains(w), "{w}: {chain}");
    }
    assert!(!pid_exists(w.pid), "pid {} left running", w.pid);
    assert!(!link_exists(&w.host_if), "{} left behind", w.host_if);
}

#[test]
fn bad_network_images_fail_the_restore_naming_them() {
    let name = "bad_network_images_fail_the_restore_naming_them";
    if skip_unless_root(name) || !tools_present(name) {
        return;
    }
    let w = start("netns-bad", "crnh1", "10.78.1", "");
    let _link = LinkGuard(w.host_if.clone());
    dump_and_kill(&w, TreeGuard::new([w.pid]));
    let id = u64::from(net_id(&w.images, w.pid));

    restore_fails_naming(&w, false, &["veth crn0", "--external veth[IN]:OUT"]);

    let netdev = w.images.join(ImageKind::Netdev.file_name(id));
    let good = std::fs::read(&netdev).expect("netdev");
    let raw = criu_proto::framing::parse(&good).expect("netdev framing");
    let mut bytes = criu_proto::framing::header_bytes(ImageKind::Netdev).expect("header");
    for (i, e) in raw.entries.iter().enumerate() {
        let mut d = NetDeviceEntry::decode(e.payload.as_slice()).expect("netdev entry");
        if i == 1 {
            d.r#type = 42;
        }
        criu_proto::framing::frame_message(&mut bytes, &d).expect("frame");
    }
    std::fs::write(&netdev, bytes).expect("write");
    let file = ImageKind::Netdev.file_name(id);
    restore_fails_naming(&w, true, &[&file, "entry 1", "unknown device type 42"]);
    std::fs::write(&netdev, good).expect("write");

    let ifaddr = w.images.join(ImageKind::Ifaddr.file_name(id));
    let bytes = std::fs::read(&ifaddr).expect("ifaddr");
    std::fs::write(&ifaddr, &bytes[..bytes.len() - 6]).expect("cut");
    restore_fails_naming(&w, true, &[&ImageKind::Ifaddr.file_name(id), "bytes left"]);
}

#[test]
fn a_bridge_inside_is_refused_at_dump() {
    let name = "a_bridge_inside_is_refused_at_dump";
    if skip_unless_root(name) || !tools_present(name) {
        return;
    }
    let w = start(
        "netns-refused",
        "crnh2",
        "10.78.2",
        "ip link add crbr0 type bridge &&",
    );
    let _link = LinkGuard(w.host_if.clone());
    let guard = TreeGuard::new([w.pid]);
    let mut dopts = DumpOptions::new(w.pid, &w.images);
    dopts.tcp_established = true;
    let err = dump(&dopts).expect_err("a bridge is refused").to_string();
    let pid = format!("pid {}", w.pid);
    for want in [pid.as_str(), "crbr0", "kind bridge", "remove the device"] {
        assert!(err.contains(want), "{want}: {err}");
    }
    assert!(pid_exists(w.pid), "the tree runs on");
    assert_eq!(tcp_echo("10.78.2.2:7000", "e"), "tcp:e");
    drop(guard);
}
