//! The plugin's error type: one variant per failed step, naming the path, program,
//! interface or tool.

use std::io;
use std::path::PathBuf;

use criu_plugin_api::PluginError;

/// A network lock step failed.
#[derive(Debug, thiserror::Error)]
pub enum NetlockError {
    /// bpffs could not be checked or mounted.
    #[error("bpffs at {path}: {op}")]
    Bpffs {
        /// The mount point.
        path: PathBuf,
        /// What was attempted.
        op: &'static str,
        /// The failure.
        #[source]
        source: io::Error,
    },
    /// A file or directory operation on the pins failed.
    #[error("{op} {path}")]
    Path {
        /// The path.
        path: PathBuf,
        /// What was attempted.
        op: &'static str,
        /// The failure.
        #[source]
        source: io::Error,
    },
    /// Entering a network namespace failed.
    #[error("entering the network namespace {path}")]
    Netns {
        /// The namespace file.
        path: PathBuf,
        /// The failure.
        #[source]
        source: io::Error,
    },
    /// Loading the BPF object (maps, BTF) failed.
    #[error("loading the network lock's eBPF object")]
    Load(#[source] Box<aya::EbpfError>),
    /// Loading or attaching a program failed.
    #[error("{op} of eBPF program {program}{on}")]
    Program {
        /// The program name.
        program: &'static str,
        /// What was attempted.
        op: &'static str,
        /// ` on IFACE` when attaching.
        on: String,
        /// The failure.
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    /// Using a map failed.
    #[error("eBPF map {map}: {op}")]
    Map {
        /// The map name.
        map: &'static str,
        /// What was attempted.
        op: String,
        /// The failure.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Pinning an object into bpffs failed.
    #[error("pinning {path}")]
    Pin {
        /// The pin path.
        path: PathBuf,
        /// The failure.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// An external tool (iptables, nft) is not installed.
    #[error(
        "--network-lock {method} needs the {tool} binary, which is not in PATH; install it, or use --network-lock ebpf (no external tool)"
    )]
    ToolMissing {
        /// The method asked for.
        method: &'static str,
        /// The missing binary.
        tool: &'static str,
    },
    /// An external tool failed.
    #[error("{command} failed: {why}")]
    Tool {
        /// The command line.
        command: String,
        /// Exit status and stderr.
        why: String,
    },
    /// The tree's sockets could not be listed.
    #[error("listing the TCP sockets of pid {pid}: {op}")]
    Sockets {
        /// The task.
        pid: i32,
        /// What was read.
        op: String,
        /// The failure.
        #[source]
        source: io::Error,
    },
}

impl NetlockError {
    pub(crate) fn path(path: impl Into<PathBuf>, op: &'static str, source: io::Error) -> Self {
        NetlockError::Path {
            path: path.into(),
            op,
            source,
        }
    }
}

/// The whole chain of causes, `a: b: c`.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s += &format!(": {c}");
        cur = c.source();
    }
    s
}

impl From<NetlockError> for PluginError {
    fn from(e: NetlockError) -> PluginError {
        match e {
            NetlockError::ToolMissing { method, tool } => PluginError::Unsupported {
                resource: format!("--network-lock {method}"),
                pid: 0,
                hint: format!(
                    "the {tool} binary is not in PATH; install it, or use --network-lock ebpf (no external tool)"
                ),
            },
            other => PluginError::Plugin {
                plugin: crate::NAME.into(),
                message: chain(&other),
            },
        }
    }
}
