//! The command line: CRIU's commands and options, parsed as CRIU parses them.
//!
//! [`crate::getopt`] splits the words over CRIU's table ([`crate::optable`]); this module
//! applies them in order: a single-valued option takes its last value (config files come
//! first, so the command line wins), a list option appends, `--no-NAME` turns a flag off.
//! Values are checked as CRIU checks them. Options that ask for something not built yet are
//! kept and refused by [`refuse_unsupported`] for the commands they would change.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use crate::getopt::{self, Item};
use crate::optable::{self, Class, OptSpec};

/// CRIU's default verbosity: errors and warnings.
pub const DEFAULT_VERBOSITY: u8 = 2;

/// Everything the command line and config files said.
#[derive(Debug, Clone, Default)]
pub struct Cli {
    /// dump, pre-dump, restore, check, page-server, lazy-pages, cpuinfo, swrk, ...
    pub command: Option<String>,
    /// The words after the command (the fd of `swrk`, the action of `cpuinfo`, the command
    /// of `--exec-cmd`).
    pub command_args: Vec<String>,
    pub opts: Options,
    pub help: bool,
    pub version: bool,
}

/// An option given, kept for the checks that depend on the command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Given {
    pub spec: &'static OptSpec,
    pub value: Option<String>,
}

/// The options, named as CRIU names them.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub tree: Option<i32>,
    pub images_dir: Option<PathBuf>,
    pub work_dir: Option<PathBuf>,
    pub log_file: Option<PathBuf>,
    pub shell_job: bool,
    pub restore_detached: bool,
    /// `-s` and `-R` set CRIU's final state: the last one given wins.
    pub leave_stopped: bool,
    /// Restore: check the pages against criu-rs-pages-digest.bin before resuming the tree.
    pub verify_pages: bool,
    /// Dump and restore: `--secret-key FILE`, the key of the images holding secrets.
    pub secret_key: Option<PathBuf>,
    /// Dump: `--compress lz4|zstd[:LEVEL]`, the pages files compressed.
    pub compress: Option<criu_core::image::compress::Compression>,
    pub leave_running: bool,
    pub pidfile: Option<PathBuf>,
    /// `-L/--libdir`, `--plugin-dir` (ours appends; CRIU keeps one).
    pub plugin_dir: Vec<PathBuf>,
    pub config: Option<PathBuf>,
    pub no_default_config: bool,
    pub ghost_limit: Option<u64>,
    pub display_stats: bool,
    pub feature: Vec<String>,
    /// `--all`, `--extra`, `--experimental`.
    pub all: bool,
    pub plugins: bool,
    pub timeout: Option<u32>,
    pub close: Vec<i32>,
    /// `--exec-cmd`: the words after the command are a program to exec after restore.
    pub exec_cmd: bool,
    pub verbosity: u8,
    /// `--tcp-established`, `--tcp-close`, `--skip-in-flight`, `--file-locks`,
    /// `--ext-unix-sk`: handed to the plugins.
    pub tcp_established: bool,
    pub tcp_close: bool,
    pub skip_in_flight: bool,
    pub file_locks: bool,
    pub ext_unix_sk: bool,
    /// `--link-remap`: handed to the files plugin at dump.
    pub link_remap: bool,
    /// `--network-lock`: ebpf (ours, the default), iptables, nftables, skip.
    pub network_lock: criu_plugin_api::NetworkLock,
    /// `--external` values, in order (`--ext-mount-map KEY:VAL` as `mnt[KEY]:VAL`).
    pub external: Vec<String>,
    /// `-r/--root`: the directory the restored mount namespace's root mount binds.
    pub root: Option<PathBuf>,
    /// `--address`: the socket `criu service` listens on.
    pub address: Option<PathBuf>,
    /// `--status-fd`: `criu service` writes a byte there once it listens.
    pub status_fd: Option<i32>,
    /// Options of [`Class::Unsupported`] that are on, in order (checked per command).
    pub unsupported: Vec<Given>,
    /// `--manage-cgroups`, `--cgroup-root`, `--cgroup-yard`, `--cgroup-dump-controller`.
    pub cgroups: criu_core::cgroup::CgroupOptions,
}

/// Parses `argv` (program name first) as CRIU does.
pub fn parse(argv: &[String]) -> Result<Cli> {
    let items = getopt::parse(argv.get(1..).unwrap_or_default())?;
    let mut cli = Cli {
        opts: Options {
            verbosity: DEFAULT_VERBOSITY,
            ..Options::default()
        },
        ..Cli::default()
    };
    let mut words = Vec::new();
    for item in items {
        match item {
            Item::Word(w) => words.push(w),
            Item::Opt {
                spec,
                value,
                negated,
            } => apply(&mut cli, spec, value, negated)
                .with_context(|| format!("invalid argument for --{}", spec.long))?,
        }
    }
    let mut words = words.into_iter();
    cli.command = words.next();
    cli.command_args = words.collect();
    Ok(cli)
}

fn apply(cli: &mut Cli, spec: &'static OptSpec, value: Option<String>, off: bool) -> Result<()> {
    let o = &mut cli.opts;
    let v = || value.clone().unwrap_or_default();
    let path = || Some(PathBuf::from(value.clone().unwrap_or_default()));
    match spec.long {
        "tree" => o.tree = Some(positive(&v())?),
        "images-dir" => o.images_dir = path(),
        "work-dir" => o.work_dir = path(),
        "log-file" => o.log_file = path(),
        "pidfile" => o.pidfile = path(),
        "config" => o.config = path(),
        "no-default-config" => o.no_default_config = true,
        "verbosity" => o.verbosity = verbosity(o.verbosity, value.as_deref())?,
        "close" => o.close.push(number(&v())?),
        "libdir" | "plugin-dir" => o.plugin_dir.push(PathBuf::from(v())),
        "display-stats" => o.display_stats = !off,
        "help" => cli.help = true,
        "version" => cli.version = true,
        "ms" => bail!("--ms is deprecated; see \"Check options\" of criu --help"),
        "leave-stopped" => (o.leave_stopped, o.leave_running) = (true, false),
        "leave-running" => (o.leave_stopped, o.leave_running) = (false, true),
        "shell-job" => o.shell_job = !off,
        "timeout" => o.timeout = Some(number(&v())?),
        "ghost-limit" => o.ghost_limit = Some(parse_size(&v()).map_err(anyhow::Error::msg)?),
        "restore-detached" | "daemon" => o.restore_detached = !off,
        "exec-cmd" => o.exec_cmd = true,
        "feature" => o.feature.push(v()),
        "all" => o.all = true,
        "extra" | "experimental" => o.all = !off,
        "plugins" => o.plugins = true,
        "verify-pages" => o.verify_pages = true,
        "secret-key" => o.secret_key = path(),
        "compress" => {
            o.compress = Some(
                criu_core::image::compress::Compression::parse(&v()).map_err(anyhow::Error::msg)?,
            )
        }
        "tcp-established" => o.tcp_established = !off,
        "tcp-close" => o.tcp_close = !off,
        "skip-in-flight" => o.skip_in_flight = !off,
        "file-locks" => o.file_locks = !off,
        "ext-unix-sk" => {
            o.ext_unix_sk = !off;
            // CRIU's `-xINO,INO`: each inode as `--external unix[INO]`.
            for ino in value.as_deref().unwrap_or_default().split(',') {
                match ino.parse::<u32>() {
                    Ok(n) if n != 0 => o.external.push(format!("unix[{n}]")),
                    _ if ino.is_empty() => {}
                    _ => bail!("--ext-unix-sk: cannot parse a unix socket inode from {ino:?}"),
                }
            }
        }
        "link-remap" => o.link_remap = !off,
        "external" => o.external.push(v()),
        // CRIU's older spelling of `--external mnt[KEY]:VAL` (dump: mountpoint to key;
        // restore: key to host path).
        "ext-mount-map" => match v().split_once(':') {
            Some((key, val)) => o.external.push(format!("mnt[{key}]:{val}")),
            None => bail!("--ext-mount-map: expected KEY:VAL (auto is not supported)"),
        },
        "root" => o.root = path(),
        // CRIU's spelling of `--external veth[IN]:OUT`.
        "veth-pair" => match v().split_once('=') {
            Some((inner, outer)) => o.external.push(format!("veth[{inner}]:{outer}")),
            None => bail!("--veth-pair: expected IN=OUT"),
        },
        "network-lock" => o.network_lock = network_lock(&v())?,
        "address" => o.address = path(),
        "status-fd" => o.status_fd = Some(number(&v())?),
        "manage-cgroups" => {
            o.cgroups.mode = match value.as_deref() {
                None => criu_core::cgroup::Mode::Soft,
                Some(m) => criu_core::cgroup::Mode::from_name(m).ok_or_else(|| {
                    anyhow::anyhow!(
                        "'{m}': expected one of none, props, soft, full, strict, ignore"
                    )
                })?,
            }
        }
        "cgroup-root" => o.cgroups.add_root(&v())?,
        "cgroup-yard" => o.cgroups.yard = path(),
        "cgroup-dump-controller" => o.cgroups.dump_controllers.push(v()),
        _ => check_value(spec.long, value.as_deref())?,
    }
    if let Class::Unsupported { .. } = spec.class {
        o.unsupported.retain(|g| g.spec != spec || spec.list);
        // `--external unix[INO]` (the unix plugin) and `veth[IN]:OUT` (the restore of a
        // network namespace) are honoured, other kinds are not yet.
        let ignore = spec.long == "external"
            && value.as_deref().is_some_and(|v| {
                v.starts_with("unix[") || v.starts_with("veth[") || v.starts_with("mnt[")
            });
        if !off && !ignore {
            o.unsupported.push(Given { spec, value });
        }
    }
    Ok(())
}

/// The value checks CRIU makes for options we only accept.
fn check_value(long: &str, value: Option<&str>) -> Result<()> {
    let v = value.unwrap_or_default();
    let one_of = |allowed: &[&str]| -> Result<()> {
        if allowed.contains(&v) {
            Ok(())
        } else {
            bail!("'{v}': expected one of {}", allowed.join(", "))
        }
    };
    match long {
        "pre-dump-mode" => one_of(&["splice", "read"]),
        "file-validation" => one_of(&["filesize", "buildid"]),
        "empty-ns" => one_of(&["net"]),
        "port" | "status-fd" | "ps-socket" => number::<i32>(v).map(drop),
        "ext-mount-map" if v != "auto" && !v.contains(':') => bail!("'{v}': expected KEY:VAL"),
        "join-ns" if !v.contains(':') => bail!("'{v}': expected NS:PID or NS:FILE"),
        "cpu-cap" => match value {
            None => Ok(()),
            Some(list) => list.split(',').try_for_each(|c| {
                if ["fpu", "cpu", "ins", "all", "none", "^fpu", "^cpu", "^ins"].contains(&c) {
                    Ok(())
                } else {
                    bail!("unknown cpu capability '{c}'")
                }
            }),
        },
        _ => Ok(()),
    }
}

/// `--network-lock`'s value: ours (`ebpf`) or CRIU's (`none` is CRIU's old name of `skip`).
fn network_lock(v: &str) -> Result<criu_plugin_api::NetworkLock> {
    match v {
        "none" => Ok(criu_plugin_api::NetworkLock::Skip),
        _ => criu_plugin_api::NetworkLock::from_name(v).ok_or_else(|| {
            anyhow::anyhow!("'{v}': expected one of ebpf, iptables, nftables, skip")
        }),
    }
}

fn number<T: std::str::FromStr>(text: &str) -> Result<T> {
    text.trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("'{text}' is not a number"))
}

fn positive(text: &str) -> Result<i32> {
    match number::<i32>(text)? {
        n if n > 0 => Ok(n),
        n => bail!("'{n}' is not a pid"),
    }
}

/// `-v` (+1), `-vv...` (the argument is the extra v's), `-vN`, `--verbosity[=N]`.
fn verbosity(level: u8, value: Option<&str>) -> Result<u8> {
    match value {
        None => Ok(level.saturating_add(1)),
        Some(v) if !v.is_empty() && v.chars().all(|c| c == 'v') => {
            Ok(level.saturating_add(1 + v.len() as u8))
        }
        // CRIU reads the level with atoi(): text without a leading number is level 0. zdtm
        // gates its tests on `criu check -verbosity=0 --feature NAME`, which getopt reads as
        // `-v` with the argument `erbosity=0`.
        Some(v) if !v.starts_with(|c: char| c.is_ascii_digit() || c == '+' || c == '-') => Ok(0),
        Some(v) => v.parse::<u8>().map_err(|_| {
            anyhow::anyhow!("bad verbosity level '{v}': expected a number from 0 to 4")
        }),
    }
}

/// Fails on the first option that asks `command` for something not built yet.
pub fn refuse_unsupported(command: &str, opts: &Options) -> Result<()> {
    let cmd = match command {
        "dump" | "pre-dump" => optable::DUMP,
        "restore" => optable::RESTORE,
        _ => return Ok(()),
    };
    for g in &opts.unsupported {
        if let Class::Unsupported { cmds, why } = g.spec.class
            && cmds & cmd != 0
        {
            let shown = match &g.value {
                Some(v) => format!("--{} {v}", g.spec.long),
                None => format!("--{}", g.spec.long),
            };
            bail!("not supported yet: {shown} ({why}); run without it");
        }
    }
    Ok(())
}

/// Parses CRIU's size syntax: a number with an optional K, M or G suffix.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, shift) = match text.chars().last() {
        Some('K' | 'k') => (&text[..text.len() - 1], 10),
        Some('M' | 'm') => (&text[..text.len() - 1], 20),
        Some('G' | 'g') => (&text[..text.len() - 1], 30),
        _ => (text, 0),
    };
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("'{text}' is not a size (a number with K, M or G)"))?;
    value
        .checked_mul(1u64 << shift)
        .ok_or_else(|| format!("size '{text}' is too large"))
}

#[cfg(test)]
mod tests;
