//! The dumped tree's TCP connections: the socket inodes behind its fds
//! (`/proc/PID/fd/N` → `socket:[INO]`) matched against `/proc/PID/net/tcp` and `tcp6`,
//! which list the sockets of that task's network namespace.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use crate::error::NetlockError;
use crate::key::{Tuple, parse_proc_addr};

/// TCP states whose connection has a peer that must not see a reset: ESTABLISHED and the
/// half-closed ones (FIN_WAIT1, FIN_WAIT2, CLOSE_WAIT, LAST_ACK, CLOSING), as in
/// `/proc/net/tcp`'s `st` column.
const LOCKED_STATES: [u8; 6] = [0x01, 0x04, 0x05, 0x08, 0x09, 0x0b];

/// The socket inodes among `pid`'s fds.
pub fn socket_inodes(pid: i32) -> Result<BTreeSet<u64>, NetlockError> {
    let dir = format!("/proc/{pid}/fd");
    let err = |op: String| move |e| NetlockError::Sockets { pid, op, source: e };
    let mut inodes = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).map_err(err(format!("opendir {dir}")))? {
        let entry = entry.map_err(err(format!("readdir {dir}")))?;
        // An fd closed since the listing has no link any more: not ours to lock.
        let Ok(link) = std::fs::read_link(entry.path()) else {
            continue;
        };
        let link = link.to_string_lossy();
        if let Some(ino) = link
            .strip_prefix("socket:[")
            .and_then(|s| s.strip_suffix(']'))
            .and_then(|s| s.parse().ok())
        {
            inodes.insert(ino);
        }
    }
    Ok(inodes)
}

/// One line of `/proc/net/tcp{,6}`: the connection and its inode, when its state is one
/// to lock. `None` for the header, other states and lines not in the expected form.
pub fn parse_tcp_line(line: &str) -> Option<(Tuple, u64)> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < 10 || !f[0].ends_with(':') {
        return None;
    }
    let state = u8::from_str_radix(f[3], 16).ok()?;
    if !LOCKED_STATES.contains(&state) {
        return None;
    }
    let addr = |s: &str| {
        let (a, p) = s.split_once(':')?;
        Some(SocketAddr::new(
            parse_proc_addr(a)?,
            u16::from_str_radix(p, 16).ok()?,
        ))
    };
    let inode = f[9].parse::<u64>().ok()?;
    Some((Tuple::new(addr(f[1])?, addr(f[2])?), inode))
}

/// The connections (in a state to lock) of the tasks `pids`, seen from their network
/// namespace (that of `pids[0]`; the callers check every task shares it).
pub fn tree_connections(pids: &[i32]) -> Result<Vec<Tuple>, NetlockError> {
    let Some(&first) = pids.first() else {
        return Ok(Vec::new());
    };
    let mut inodes = BTreeSet::new();
    for &pid in pids {
        inodes.extend(socket_inodes(pid)?);
    }
    if inodes.is_empty() {
        return Ok(Vec::new());
    }
    let mut found = BTreeSet::new();
    for table in ["tcp", "tcp6"] {
        let path = format!("/proc/{first}/net/{table}");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            // No IPv6 in this kernel: no tcp6 table.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && table == "tcp6" => continue,
            Err(e) => {
                return Err(NetlockError::Sockets {
                    pid: first,
                    op: format!("read {path}"),
                    source: e,
                });
            }
        };
        found.extend(
            text.lines()
                .filter_map(parse_tcp_line)
                .filter(|(_, ino)| inodes.contains(ino))
                .map(|(t, _)| t),
        );
    }
    Ok(found.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_proc_net_tcp() {
        let lo = u32::from_ne_bytes([127, 0, 0, 1]);
        let est = format!(
            "   1: {lo:08X}:1F90 {lo:08X}:A1B2 01 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 20 4 30 10 -1"
        );
        let (t, ino) = parse_tcp_line(&est).unwrap();
        assert_eq!(t.to_string(), "127.0.0.1:8080 127.0.0.1:41394");
        assert_eq!(ino, 4242);
        let listen = est.replace(" 01 ", " 0A ");
        assert_eq!(parse_tcp_line(&listen), None);
        let close_wait = est.replace(" 01 ", " 08 ");
        assert!(parse_tcp_line(&close_wait).is_some());
        assert_eq!(
            parse_tcp_line(
                "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode"
            ),
            None
        );
    }

    #[test]
    fn own_connection_is_found() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        let me = std::process::id() as i32;
        let found = tree_connections(&[me]).unwrap();
        let client = Tuple::new(c.local_addr().unwrap(), c.peer_addr().unwrap());
        let server = Tuple::new(s.local_addr().unwrap(), s.peer_addr().unwrap());
        assert!(
            found.contains(&client) && found.contains(&server),
            "{found:?}"
        );
    }
}
