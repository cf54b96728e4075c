//! What a dump locked, as the plugin's own image `criu-rs-netlock.txt`, so that the restore
//! (or `criu network-unlock`) lifts exactly that.
//!
//! A text file, one fact per line: `criu-rs-netlock 1`, then `method ebpf|iptables|nftables`,
//! `netns INODE`, `pin DIR` (eBPF), `table NAME` (nftables), `scope connections|namespace`,
//! one `tcp LOCAL REMOTE` line per locked connection, and `lifted` when the dump lifted it
//! already (`--leave-running`).

use std::path::PathBuf;

use criu_plugin_api::{NetworkLock, PluginError};

use crate::key::Tuple;

/// The image's file name in the images directory.
pub const IMAGE: &str = "criu-rs-netlock.txt";

const HEADER: &str = "criu-rs-netlock 1";

/// What is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The listed connections, both directions.
    Connections,
    /// Every packet of the network namespace (but criu's marked ones).
    Namespace,
}

/// One lock, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockRecord {
    /// How it was taken.
    pub method: NetworkLock,
    /// The inode of the network namespace it is in.
    pub netns: u64,
    /// eBPF: the bpffs directory holding its pins.
    pub pin_dir: Option<PathBuf>,
    /// nftables: the table (`CRIU-<id>`, family `inet`).
    pub table: Option<String>,
    /// What it drops.
    pub scope: Scope,
    /// The locked connections (connection scope).
    pub tuples: Vec<Tuple>,
    /// Already lifted by the dump (`--leave-running`): the restore has nothing to lift.
    pub lifted: bool,
}

impl LockRecord {
    /// The file's text.
    pub fn encode(&self) -> String {
        let mut s = format!("{HEADER}\nmethod {}\nnetns {}\n", self.method, self.netns);
        if let Some(p) = &self.pin_dir {
            s += &format!("pin {}\n", p.display());
        }
        if let Some(t) = &self.table {
            s += &format!("table {t}\n");
        }
        s += match self.scope {
            Scope::Connections => "scope connections\n",
            Scope::Namespace => "scope namespace\n",
        };
        for t in &self.tuples {
            s += &format!("tcp {t}\n");
        }
        if self.lifted {
            s += "lifted\n";
        }
        s
    }

    /// The text of this record marked as lifted.
    pub fn encode_lifted(&self) -> String {
        LockRecord {
            lifted: true,
            ..self.clone()
        }
        .encode()
    }

    /// Parses [`LockRecord::encode`]'s text; a bad line is a [`PluginError::BadImage`]
    /// naming the image and the line.
    pub fn decode(text: &str) -> Result<LockRecord, PluginError> {
        let bad = |n: usize, why: String| PluginError::bad_image(IMAGE, format!("line {n}: {why}"));
        let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
        match lines.next() {
            Some((_, HEADER)) => {}
            other => {
                return Err(bad(
                    1,
                    format!("expected {HEADER:?}, found {:?}", other.map(|l| l.1)),
                ));
            }
        }
        let (mut method, mut netns, mut scope) = (None, None, None);
        let (mut pin_dir, mut table, mut tuples) = (None, None, Vec::new());
        let mut lifted = false;
        for (n, line) in lines {
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            match key {
                "method" => {
                    let m = NetworkLock::from_name(value)
                        .filter(|m| *m != NetworkLock::Skip)
                        .ok_or_else(|| bad(n, format!("unknown method {value:?}")))?;
                    method = Some(m);
                }
                "netns" => {
                    netns = Some(
                        value
                            .parse::<u64>()
                            .map_err(|_| bad(n, format!("bad netns inode {value:?}")))?,
                    );
                }
                "pin" if value.starts_with('/') => pin_dir = Some(PathBuf::from(value)),
                "table" if !value.is_empty() && !value.contains(char::is_whitespace) => {
                    table = Some(value.to_string());
                }
                "scope" => {
                    scope = Some(match value {
                        "connections" => Scope::Connections,
                        "namespace" => Scope::Namespace,
                        _ => return Err(bad(n, format!("unknown scope {value:?}"))),
                    });
                }
                "lifted" if value.is_empty() => lifted = true,
                "tcp" => tuples.push(value.parse::<Tuple>().map_err(|e| bad(n, e))?),
                _ => return Err(bad(n, format!("unexpected {line:?}"))),
            }
        }
        let missing = |what: &str| PluginError::bad_image(IMAGE, format!("no {what} line"));
        let method = method.ok_or_else(|| missing("method"))?;
        if method == NetworkLock::Ebpf && pin_dir.is_none() {
            return Err(missing("pin"));
        }
        if method == NetworkLock::Nftables && table.is_none() {
            return Err(missing("table"));
        }
        Ok(LockRecord {
            method,
            netns: netns.ok_or_else(|| missing("netns"))?,
            pin_dir,
            table,
            scope: scope.ok_or_else(|| missing("scope"))?,
            tuples,
            lifted,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> LockRecord {
        LockRecord {
            method: NetworkLock::Ebpf,
            netns: 4026531840,
            pin_dir: Some("/sys/fs/bpf/criu-rs/4026531840-77".into()),
            table: None,
            scope: Scope::Connections,
            tuples: vec!["10.0.0.1:80 10.0.0.2:41000".parse().unwrap()],
            lifted: false,
        }
    }

    #[test]
    fn bad_lines_name_the_image_and_line() {
        let text = sample()
            .encode()
            .replace("tcp 10.0.0.1:80", "tcp 10.0.0.1:99999");
        let e = LockRecord::decode(&text).unwrap_err().to_string();
        assert!(e.contains(IMAGE) && e.contains("line 6"), "{e}");
        let e = LockRecord::decode("nonsense").unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
        let text = sample()
            .encode()
            .replace("pin /sys/fs/bpf/criu-rs/4026531840-77\n", "");
        assert!(
            LockRecord::decode(&text)
                .unwrap_err()
                .to_string()
                .contains("no pin")
        );
        assert!(LockRecord::decode(&format!("{HEADER}\nmethod skip\n")).is_err());
    }

    proptest! {
        #[test]
        fn round_trips(
            tuples in proptest::collection::vec(crate::key::tests::arb_tuple(), 0..8),
            netns in any::<u64>(),
            m in 0..3usize,
            ns in any::<bool>(),
            lifted in any::<bool>(),
        ) {
            let method = [NetworkLock::Ebpf, NetworkLock::Iptables, NetworkLock::Nftables][m];
            let r = LockRecord {
                method,
                netns,
                pin_dir: (method == NetworkLock::Ebpf).then(|| format!("/sys/fs/bpf/criu-rs/{netns}").into()),
                table: (method == NetworkLock::Nftables).then(|| format!("inet CRIU-{netns}").replace(' ', "-")),
                scope: if ns { Scope::Namespace } else { Scope::Connections },
                tuples,
                lifted,
            };
            prop_assert_eq!(LockRecord::decode(&r.encode()).unwrap(), r);
        }
    }
}
