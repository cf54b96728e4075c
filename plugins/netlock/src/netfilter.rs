//! `--network-lock iptables|nftables`: CRIU's rules, loaded with the external binaries as
//! CRIU does (criu/netfilter.c): per connection, an `iptables`/`ip6tables` DROP rule in
//! INPUT and OUTPUT that spares packets marked `SOCCR_MARK`; or an `inet` nftables table
//! `CRIU-<id>` with input/output chains dropping the elements of sets `conns4`/`conns6`.
//! Only run when asked for; a missing binary fails with its name.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::error::NetlockError;
use crate::key::{SOCCR_MARK, Tuple};

/// Whether `tool` is an executable in `PATH`.
pub fn in_path(tool: &str) -> bool {
    in_dirs(&std::env::var_os("PATH").unwrap_or_default(), tool)
}

/// Whether `tool` is an executable in one of the `:`-separated `dirs`.
fn in_dirs(dirs: &std::ffi::OsStr, tool: &str) -> bool {
    std::env::split_paths(dirs).any(|d| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(d.join(tool))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

fn need(method: &'static str, tool: &'static str) -> Result<(), NetlockError> {
    need_in(&std::env::var_os("PATH").unwrap_or_default(), method, tool)
}

fn need_in(
    dirs: &std::ffi::OsStr,
    method: &'static str,
    tool: &'static str,
) -> Result<(), NetlockError> {
    if in_dirs(dirs, tool) {
        Ok(())
    } else {
        Err(NetlockError::ToolMissing { method, tool })
    }
}

fn run(tool: &str, args: &[String], stdin: Option<&str>) -> Result<(), NetlockError> {
    let command = format!("{tool} {}", args.join(" "));
    tracing::debug!(%command, "running");
    let mut child = Command::new(tool)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| NetlockError::Tool {
            command: command.clone(),
            why: e.to_string(),
        })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .map_err(|e| NetlockError::Tool {
                command: command.clone(),
                why: format!("writing its input: {e}"),
            })?;
    }
    let out = child.wait_with_output().map_err(|e| NetlockError::Tool {
        command: command.clone(),
        why: e.to_string(),
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NetlockError::Tool {
            command,
            why: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        })
    }
}

/// CRIU's rule for one direction of a connection: `-I`/`-D`, INPUT or OUTPUT.
fn iptables_args(t: &Tuple, op: &str, input: bool) -> Vec<String> {
    // INPUT sees the peer as source; OUTPUT sees the tree's end as source.
    let (src, dst) = if input {
        (t.remote, t.local)
    } else {
        (t.local, t.remote)
    };
    [
        "-w",
        "-t",
        "filter",
        op,
        if input { "INPUT" } else { "OUTPUT" },
        "--protocol",
        "tcp",
        "-m",
        "mark",
        "!",
        "--mark",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([
        format!("{SOCCR_MARK:#X}").replace("0X", "0x"),
        "--source".into(),
        src.ip().to_string(),
        "--sport".into(),
        src.port().to_string(),
        "--destination".into(),
        dst.ip().to_string(),
        "--dport".into(),
        dst.port().to_string(),
        "-j".into(),
        "DROP".into(),
    ])
    .collect()
}

fn iptables_tool(t: &Tuple) -> &'static str {
    if t.is_ipv6() { "ip6tables" } else { "iptables" }
}

/// Inserts CRIU's DROP rules for every connection (both directions); on failure the rules
/// inserted so far are deleted again.
pub fn iptables_lock(tuples: &[Tuple]) -> Result<(), NetlockError> {
    for t in tuples {
        need("iptables", iptables_tool(t))?;
    }
    let mut done: Vec<(Tuple, bool)> = Vec::new();
    for t in tuples {
        for input in [true, false] {
            if let Err(e) = run(iptables_tool(t), &iptables_args(t, "-I", input), None) {
                for (t, input) in done.iter().rev() {
                    let _ = run(iptables_tool(t), &iptables_args(t, "-D", *input), None);
                }
                return Err(e);
            }
            done.push((*t, input));
        }
    }
    Ok(())
}

/// Deletes the rules [`iptables_lock`] inserted; goes on past a failed deletion and
/// returns the first error.
pub fn iptables_unlock(tuples: &[Tuple]) -> Result<(), NetlockError> {
    let mut first = None;
    for t in tuples {
        for input in [true, false] {
            if let Err(e) = need("iptables", iptables_tool(t))
                .and_then(|()| run(iptables_tool(t), &iptables_args(t, "-D", input), None))
            {
                first.get_or_insert(e);
            }
        }
    }
    first.map_or(Ok(()), Err)
}

/// The nft script CRIU's `nftables_init_connection_lock` and `nftables_lock_connection`
/// run, for table `inet <table>`.
pub fn nft_lock_script(table: &str, tuples: &[Tuple]) -> String {
    let t = format!("inet {table}");
    let mark = format!("{SOCCR_MARK:#X}").replace("0X", "0x");
    let mut s = format!("create table {t}\n");
    for chain in ["output", "input"] {
        s += &format!("add chain {t} {chain} {{ type filter hook {chain} priority 0; }}\n");
        s += &format!("add rule {t} {chain} meta mark {mark} accept\n");
    }
    for (v, ip, addr) in [("4", "ip", "ipv4_addr"), ("6", "ip6", "ipv6_addr")] {
        s += &format!(
            "add set {t} conns{v} {{ type {addr} . inet_service . {addr} . inet_service; }}\n"
        );
        for chain in ["output", "input"] {
            s += &format!(
                "add rule {t} {chain} {ip} saddr . tcp sport . {ip} daddr . tcp dport @conns{v} drop\n"
            );
        }
    }
    for c in tuples {
        let v = if c.is_ipv6() { "6" } else { "4" };
        for (a, b) in [(c.remote, c.local), (c.local, c.remote)] {
            s += &format!(
                "add element {t} conns{v} {{ {} . {} . {} . {} }}\n",
                a.ip(),
                a.port(),
                b.ip(),
                b.port()
            );
        }
    }
    s
}

/// Loads [`nft_lock_script`] with `nft -f -` (one transaction: all or nothing).
pub fn nft_lock(table: &str, tuples: &[Tuple]) -> Result<(), NetlockError> {
    need("nftables", "nft")?;
    run(
        "nft",
        &["-f".into(), "-".into()],
        Some(&nft_lock_script(table, tuples)),
    )
}

/// Deletes the table (`nft delete table inet <table>`), as CRIU's `nftables_network_unlock`.
pub fn nft_unlock(table: &str) -> Result<(), NetlockError> {
    need("nftables", "nft")?;
    run(
        "nft",
        &["delete".into(), "table".into(), "inet".into(), table.into()],
        None,
    )
}

/// The nftables table of a dump: `CRIU-<netns inode>-<root pid>`.
pub fn table_for(netns: u64, root: i32) -> String {
    format!("CRIU-{netns}-{root}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_are_criu_s() {
        let t: Tuple = "10.0.0.1:80 10.0.0.2:41000".parse().unwrap();
        assert_eq!(
            iptables_args(&t, "-I", true).join(" "),
            "-w -t filter -I INPUT --protocol tcp -m mark ! --mark 0xC114 --source 10.0.0.2 \
             --sport 41000 --destination 10.0.0.1 --dport 80 -j DROP"
        );
        assert_eq!(
            iptables_args(&t, "-D", false).join(" "),
            "-w -t filter -D OUTPUT --protocol tcp -m mark ! --mark 0xC114 --source 10.0.0.1 \
             --sport 80 --destination 10.0.0.2 --dport 41000 -j DROP"
        );
        let s = nft_lock_script("CRIU-1-2", &[t]);
        assert!(s.starts_with("create table inet CRIU-1-2\n"), "{s}");
        assert!(s.contains("add rule inet CRIU-1-2 input meta mark 0xC114 accept\n"));
        assert!(
            s.contains("add element inet CRIU-1-2 conns4 { 10.0.0.2 . 41000 . 10.0.0.1 . 80 }\n")
        );
        assert!(
            s.contains("add element inet CRIU-1-2 conns4 { 10.0.0.1 . 80 . 10.0.0.2 . 41000 }\n")
        );
    }

    #[test]
    fn a_missing_tool_is_named() {
        let dirs = std::ffi::OsStr::new("/nonexistent:/proc/self");
        let e = need_in(dirs, "iptables", "ip6tables")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("ip6tables binary") && e.contains("--network-lock ebpf"),
            "{e}"
        );
        assert!(need_in(std::ffi::OsStr::new("/bin:/usr/bin"), "x", "sh").is_ok());
    }
}
