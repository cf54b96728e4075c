//! Network fixtures for the netlock tests: a named network namespace (`ip netns add`) with
//! an optional veth pair to the host, sockets made inside it, a repair-mode close that sends
//! nothing, and checks of what a client sees (reset or silence).

#![allow(dead_code)]

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, setns};
use nix::sys::socket::{setsockopt, sockopt};

/// Whether `ip` (iproute2) runs; its absence fails the test with the package to install.
pub fn need_ip() {
    let ok = Command::new("ip")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(ok, "the netlock tests need `ip` (apt-get install iproute2)");
}

fn run(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("ip {}: {e}", args.join(" ")));
    assert!(
        out.status.success(),
        "ip {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Serializes `ip netns add`/`del` of the tests of one binary: run side by side, the
/// first ones each bind-mount /run/netns, one hiding the namespace files made under the
/// other (setns: EINVAL).
fn ip_netns_serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// A named network namespace with `lo` up, deleted (with its veth) when dropped.
#[derive(Debug)]
pub struct NetNs {
    pub name: String,
    /// The host end of the veth pair, when there is one.
    pub host_if: Option<String>,
}

impl NetNs {
    /// A namespace `nlk-<tag>-<pid>` with only `lo`.
    pub fn new(tag: &str) -> NetNs {
        need_ip();
        let _one = ip_netns_serial();
        let name = format!("nlk-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        run(&["netns", "add", &name]);
        let ns = NetNs {
            name,
            host_if: None,
        };
        run(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    /// A namespace joined to the host by a veth pair: host `10.<net>.0.1/24`, namespace
    /// `10.<net>.0.2/24`.
    pub fn with_veth(tag: &str, net: u8) -> NetNs {
        let mut ns = NetNs::new(tag);
        let host = format!("nlh{net}-{}", std::process::id() % 100000);
        let peer = format!("nln{net}-{}", std::process::id() % 100000);
        let _ = Command::new("ip").args(["link", "del", &host]).output();
        run(&["link", "add", &host, "type", "veth", "peer", "name", &peer]);
        ns.host_if = Some(host.clone());
        run(&["link", "set", &peer, "netns", &ns.name]);
        run(&["addr", "add", &format!("10.{net}.0.1/24"), "dev", &host]);
        run(&["link", "set", &host, "up"]);
        run(&[
            "-n",
            &ns.name,
            "addr",
            "add",
            &format!("10.{net}.0.2/24"),
            "dev",
            &peer,
        ]);
        run(&["-n", &ns.name, "link", "set", &peer, "up"]);
        ns
    }

    /// Its namespace file.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.name))
    }

    /// Runs `f` on a thread inside the namespace: sockets made there belong to it.
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let file = File::open(self.path()).expect("open netns");
        std::thread::scope(|s| {
            s.spawn(|| {
                setns(file.as_fd(), CloneFlags::CLONE_NEWNET).expect("setns");
                f()
            })
            .join()
            .expect("netns thread")
        })
    }

    /// The namespace's inode.
    pub fn inode(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(self.path()).expect("stat netns").ino()
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _one = ip_netns_serial();
        if let Some(h) = &self.host_if {
            let _ = Command::new("ip").args(["link", "del", h]).output();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// The eBPF lock's pins of a test's namespace, detached and removed when dropped.
#[derive(Debug)]
pub struct PinDir(pub PathBuf);

impl PinDir {
    pub fn of(ns: &NetNs) -> PinDir {
        PinDir(criu_plugin_netlock::ebpf::pin_dir_for(ns.inode()))
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = criu_plugin_netlock::ebpf::detach(&self.0);
    }
}

/// A connected pair: the client end and the accepted (server) end.
pub fn connect(listener: &TcpListener, to: SocketAddr) -> (TcpStream, TcpStream) {
    let client = TcpStream::connect_timeout(&to, Duration::from_secs(5)).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    (client, server)
}

/// The connection as the server's side sees it (the locked tree's view).
pub fn server_tuple(server: &TcpStream) -> criu_plugin_netlock::Tuple {
    criu_plugin_netlock::Tuple::new(server.local_addr().unwrap(), server.peer_addr().unwrap())
}

/// Closes `s` in repair mode: the kernel forgets the connection and sends nothing, as a
/// dumped and killed tree does; the peer's next packet then gets a reset, unless locked.
pub fn close_silently(s: TcpStream) {
    setsockopt(&s, sockopt::TcpRepair, &1).expect("TCP_REPAIR (needs CAP_NET_ADMIN)");
    drop(s);
}

/// What the client sees of its connection after sending.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen {
    /// No answer: still established (no error, nothing to read).
    Silence,
    /// The connection was reset.
    Reset,
}

/// Writes to `client`, then watches it for `window`: [`Seen::Reset`] as soon as an error
/// shows up, [`Seen::Silence`] when none came.
pub fn send_and_watch(client: &mut TcpStream, window: Duration) -> Seen {
    client.set_nonblocking(true).unwrap();
    if client.write_all(b"ping").is_err() {
        return Seen::Reset;
    }
    let deadline = Instant::now() + window;
    let mut buf = [0u8; 16];
    loop {
        match client.read(&mut buf) {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Seen::Reset,
            Err(e) => panic!("unexpected error on the client: {e}"),
            Ok(0) => panic!("the peer closed cleanly: a FIN got through"),
            Ok(n) => panic!("the peer answered {n} bytes"),
        }
        if Instant::now() >= deadline {
            return Seen::Silence;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether a new connection to `to` through `listener` carries data both ways.
pub fn other_traffic_flows(listener: &TcpListener, to: SocketAddr) -> bool {
    let Ok(mut c) = TcpStream::connect_timeout(&to, Duration::from_millis(700)) else {
        return false;
    };
    let Ok((mut s, _)) = listener.accept() else {
        return false;
    };
    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut b = [0u8; 2];
    c.write_all(b"hi").is_ok()
        && s.read_exact(&mut b).is_ok()
        && s.write_all(b"yo").is_ok()
        && c.read_exact(&mut b).is_ok()
        && &b == b"yo"
}

/// Whether [`other_traffic_flows`] succeeds within `window` (tries again on failure).
pub fn flows_within(listener: &TcpListener, to: SocketAddr, window: Duration) -> bool {
    let deadline = Instant::now() + window;
    loop {
        if other_traffic_flows(listener, to) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
    }
}
