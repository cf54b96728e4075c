//! `criu_opts` onto the command line's [`Options`], the way CRIU's `setup_opts_from_req` sets
//! its options: each field becomes the command-line option it stands for (so the RPC and
//! `criu dump`/`criu restore` share one path), read after the default config files and
//! before `config_file` (runc's `/etc/criu/runc.conf`), which overrides the request as in
//! CRIU. A field asking for something not built is refused by its name; a field left at its
//! default value (`false`, empty) is not a request.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

use criu_proto::rpc::{CriuCgMode, CriuNetworkLockMethod, CriuOpts, CriuPreDumpMode};
use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;

use crate::args::{self, Options};
use crate::optable::{self, Class};

/// What the request is for (the options refused depend on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Dump,
    Restore,
    Check,
}

/// A field of `criu_opts` this service cannot honour.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("criu_opts.{field}: {why}")]
pub struct FieldError {
    /// The field's name in rpc.proto (or the config file option).
    pub field: String,
    /// Why, and the way out.
    pub why: String,
}

fn field_err(field: &str, why: impl Into<String>) -> FieldError {
    FieldError {
        field: field.to_string(),
        why: why.into(),
    }
}

/// Where the log goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    /// This file (in the work dir).
    File(PathBuf),
    /// criu's stderr (`log_to_stderr`).
    Stderr,
    /// Nowhere (CHECK without a log file).
    None,
}

/// A request's options, ready for the shared dump/restore path.
#[derive(Debug)]
pub struct Plan {
    /// The options as `criu dump`/`criu restore` would have them.
    pub opts: Options,
    /// `notify_scripts`: send the action notifications and wait for their acks.
    pub notify: bool,
    /// `exec_cmd`: exec this after answering a restore.
    pub exec_cmd: Vec<String>,
    /// `log_file` / `log_to_stderr`, resolved against the work dir.
    pub log: LogTarget,
    /// Our copies of the client's images and work dirs, open while the request runs (the
    /// paths in `opts` name them through /proc/PID/fd).
    _dirs: Vec<OwnedFd>,
}

/// Builds the words of the equivalent command line, remembering which field gave which option.
#[derive(Default)]
struct Words {
    words: Vec<String>,
    /// (option, value) -> the field that gave it.
    origin: HashMap<(&'static str, Option<String>), &'static str>,
}

impl Words {
    fn spec(long: &str) -> Option<&'static optable::OptSpec> {
        optable::OPTIONS.iter().find(|s| s.long == long)
    }

    /// A bool field: `true` turns the option on; `false` turns it off where the command
    /// line can (CRIU: an explicit `false` overrides a config file), else changes nothing.
    fn flag(&mut self, field: &'static str, v: Option<bool>, long: &'static str) {
        match v {
            Some(true) => self.push(field, long, None),
            Some(false) if Self::spec(long).is_some_and(|s| s.negatable) => {
                self.words.push(format!("--no-{long}"));
            }
            _ => {}
        }
    }

    fn val(&mut self, field: &'static str, v: Option<String>, long: &'static str) {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            self.push(field, long, Some(v));
        }
    }

    fn list(
        &mut self,
        field: &'static str,
        vs: impl IntoIterator<Item = String>,
        long: &'static str,
    ) {
        for v in vs {
            self.push(field, long, Some(v));
        }
    }

    fn push(&mut self, field: &'static str, long: &'static str, v: Option<String>) {
        self.words.push(match &v {
            Some(v) => format!("--{long}={v}"),
            None => format!("--{long}"),
        });
        self.origin.insert((long, v), field);
    }
}

/// Opens the client's fd `fd` through /proc (CRIU's `/proc/PID/fd/N`) and returns our copy
/// and a path naming it that stays valid in criu's forked helpers.
fn client_dir(peer: i32, fd: i32, field: &str) -> Result<(OwnedFd, PathBuf), FieldError> {
    let path = format!("/proc/{peer}/fd/{fd}");
    let own = open(
        path.as_str(),
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| {
        field_err(
            field,
            format!("cannot open the client's fd {fd} ({path}): {e}"),
        )
    })?;
    let mine = PathBuf::from(format!(
        "/proc/{}/fd/{}",
        std::process::id(),
        own.as_raw_fd()
    ));
    Ok((own, mine))
}

/// Maps `o` for `op`, from the client `peer`; `swrk` is false for `criu service`.
pub fn plan(o: &CriuOpts, peer: i32, op: Op, swrk: bool) -> Result<Plan, FieldError> {
    let mut dirs = Vec::new();
    let mut w = Words::default();
    let images = if o.images_dir_fd != -1 && !(op == Op::Check && o.images_dir_fd == 0) {
        let (fd, path) = client_dir(peer, o.images_dir_fd, "images_dir_fd")?;
        dirs.push(fd);
        Some(path)
    } else {
        o.images_dir
            .clone()
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
    };
    match &images {
        Some(p) => w.val("images_dir_fd", Some(p.display().to_string()), "images-dir"),
        None if op == Op::Check => {}
        None => {
            return Err(field_err(
                "images_dir_fd",
                "neither images_dir_fd nor images_dir was given",
            ));
        }
    }
    if let Some(fd) = o.work_dir_fd {
        let (own, path) = client_dir(peer, fd, "work_dir_fd")?;
        dirs.push(own);
        w.val("work_dir_fd", Some(path.display().to_string()), "work-dir");
    }
    let log = log_target(o, op)?;
    if let LogTarget::File(f) = &log {
        w.val("log_file", Some(f.display().to_string()), "log-file");
    }
    w.val(
        "log_level",
        Some(o.log_level.unwrap_or(2).to_string()),
        "verbosity",
    );
    fields(o, op, swrk, peer, &mut w)?;
    let mut argv = crate::config::merged_argv(vec!["criu".into()])
        .map_err(|e| field_err("config_file", format!("{e:#}")))?;
    argv.append(&mut w.words);
    argv.extend(rpc_config(o.config_file.as_deref())?);
    let cli = args::parse(&argv).map_err(|e| field_err("opts", format!("{e:#}")))?;
    refuse_unsupported(&cli.opts, op, &w.origin)?;
    Ok(Plan {
        opts: cli.opts,
        notify: o.notify_scripts == Some(true),
        exec_cmd: o.exec_cmd.clone(),
        log,
        _dirs: dirs,
    })
}

/// Writes why a request was refused into the log file it names (in its work dir, else its
/// images dir, as CRIU), so that a client pointing its user at that file (runc: "log file:
/// .../dump.log") shows the reason and not a missing file. Best effort: the reason also goes
/// back in `cr_errmsg`.
pub fn log_refusal(o: &CriuOpts, peer: i32, op: Op, why: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir_fd = o
        .work_dir_fd
        .or((o.images_dir_fd >= 0).then_some(o.images_dir_fd));
    let (Some(fd), Ok(LogTarget::File(name))) = (dir_fd, log_target(o, op)) else {
        return;
    };
    let path = PathBuf::from(format!("/proc/{peer}/fd/{fd}")).join(name);
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| writeln!(f, "Error: request refused: {why}"));
    if let Err(e) = written {
        tracing::warn!(path = %path.display(), "cannot log the refusal: {e}");
    }
}

/// `log_file` (a name in the work dir: CRIU refuses subdirectories) or `log_to_stderr`; a
/// dump or restore logs to `criu.log` by default, as CRIU's service does.
fn log_target(o: &CriuOpts, op: Op) -> Result<LogTarget, FieldError> {
    match o.log_file.as_deref().filter(|f| !f.is_empty()) {
        Some(f) if f.contains('/') => Err(field_err(
            "log_file",
            format!("'{f}': no subdirectories are allowed (the log goes to the work dir)"),
        )),
        _ if o.log_to_stderr == Some(true) => Ok(LogTarget::Stderr),
        Some(f) => Ok(LogTarget::File(PathBuf::from(f))),
        None if op == Op::Check => Ok(LogTarget::None),
        None => Ok(LogTarget::File(PathBuf::from("criu.log"))),
    }
}

/// Every other field, in CRIU's order of `setup_opts_from_req`.
fn fields(o: &CriuOpts, op: Op, swrk: bool, peer: i32, w: &mut Words) -> Result<(), FieldError> {
    w.flag("leave_running", o.leave_running, "leave-running");
    w.flag("leave_stopped", o.leave_stopped, "leave-stopped");
    match (op, o.pid) {
        (_, Some(p)) if p > 0 => w.val("pid", Some(p.to_string()), "tree"),
        (Op::Dump, _) => {
            return Err(field_err(
                "pid",
                "missing: dumping the RPC client itself (CRIU's self-dump) is not supported; \
                 give the pid of the tree to dump",
            ));
        }
        _ => {}
    }
    w.flag("ext_unix_sk", o.ext_unix_sk, "ext-unix-sk");
    // CRIU's older form of `--external unix[INODE]`.
    w.list(
        "unix_sk_ino",
        o.unix_sk_ino.iter().map(|u| format!("unix[{}]", u.inode)),
        "external",
    );
    w.val("root", o.root.clone(), "root");
    if o.rst_sibling == Some(true) && !swrk {
        return Err(field_err(
            "rst_sibling",
            "not allowed in the standalone service (criu swrk only)",
        ));
    }
    w.flag("rst_sibling", o.rst_sibling, "restore-sibling");
    w.flag("tcp_established", o.tcp_established, "tcp-established");
    w.flag("tcp_skip_in_flight", o.tcp_skip_in_flight, "skip-in-flight");
    w.flag("tcp_close", o.tcp_close, "tcp-close");
    w.flag("weak_sysctls", o.weak_sysctls, "weak-sysctls");
    w.flag("evasive_devices", o.evasive_devices, "evasive-devices");
    w.flag("shell_job", o.shell_job, "shell-job");
    w.flag(
        "skip_file_rwx_check",
        o.skip_file_rwx_check,
        "skip-file-rwx-check",
    );
    w.flag("file_locks", o.file_locks, "file-locks");
    w.flag("track_mem", o.track_mem, "track-mem");
    w.flag("link_remap", o.link_remap, "link-remap");
    w.flag("auto_dedup", o.auto_dedup, "auto-dedup");
    w.flag("force_irmap", o.force_irmap, "force-irmap");
    if !o.exec_cmd.is_empty() && op != Op::Restore {
        return Err(field_err("exec_cmd", "only a restore can exec a command"));
    }
    w.flag("lazy_pages", o.lazy_pages, "lazy-pages");
    if let Some(m) = o.pre_dump_mode {
        let v = match CriuPreDumpMode::try_from(m) {
            Ok(CriuPreDumpMode::Splice) => "splice",
            Ok(CriuPreDumpMode::VmRead) => "read",
            Err(_) => return Err(field_err("pre_dump_mode", format!("unknown value {m}"))),
        };
        w.val("pre_dump_mode", Some(v.into()), "pre-dump-mode");
    }
    if let Some(m) = o.network_lock {
        let v = match CriuNetworkLockMethod::try_from(m) {
            Ok(CriuNetworkLockMethod::Iptables) => "iptables",
            Ok(CriuNetworkLockMethod::Nftables) => "nftables",
            Ok(CriuNetworkLockMethod::Skip) => "skip",
            Ok(CriuNetworkLockMethod::Ebpf) => "ebpf",
            Err(_) => return Err(field_err("network_lock", format!("unknown value {m}"))),
        };
        w.val("network_lock", Some(v.into()), "network-lock");
    }
    if let Some(ps) = &o.ps {
        w.flag("ps", Some(true), "page-server");
        w.val("ps", ps.address.clone(), "address");
        w.val("ps", ps.port.map(|p| p.to_string()), "port");
        w.val("ps", ps.fd.map(|p| p.to_string()), "ps-socket");
    }
    w.list(
        "veths",
        o.veths.iter().map(|v| format!("{}={}", v.if_in, v.if_out)),
        "veth-pair",
    );
    w.list(
        "ext_mnt",
        o.ext_mnt.iter().map(|m| format!("{}:{}", m.key, m.val)),
        "ext-mount-map",
    );
    w.list(
        "join_ns",
        o.join_ns.iter().map(|j| match &j.extra_opt {
            Some(x) => format!("{}:{},{x}", j.ns, j.ns_file),
            None => format!("{}:{}", j.ns, j.ns_file),
        }),
        "join-ns",
    );
    if !o.inherit_fd.is_empty() && !swrk {
        return Err(field_err(
            "inherit_fd",
            "not allowed in the standalone service (criu swrk only)",
        ));
    }
    w.list(
        "inherit_fd",
        o.inherit_fd
            .iter()
            .map(|i| format!("fd[{}]:{}", i.fd, i.key)),
        "inherit-fd",
    );
    w.list("external", o.external.iter().cloned(), "external");
    w.list(
        "cg_root",
        o.cg_root.iter().map(|c| match &c.ctrl {
            Some(ctrl) => format!("{ctrl}:{}", c.path),
            None => c.path.clone(),
        }),
        "cgroup-root",
    );
    w.list("enable_fs", o.enable_fs.iter().cloned(), "enable-fs");
    w.list("skip_mnt", o.skip_mnt.iter().cloned(), "skip-mnt");
    // cpu_cap: a bit mask here, names on the command line, where it is accepted with no
    // effect (restore checks each thread's xsave layout instead): nothing to map.
    cgroups(o, w)?;
    w.val("freeze_cgroup", o.freeze_cgroup.clone(), "freeze-cgroup");
    w.val("lsm_profile", o.lsm_profile.clone(), "lsm-profile");
    w.val(
        "lsm_mount_context",
        o.lsm_mount_context.clone(),
        "lsm-mount-context",
    );
    w.val("timeout", o.timeout.map(|t| t.to_string()), "timeout");
    w.val("cgroup_props", o.cgroup_props.clone(), "cgroup-props");
    w.val(
        "cgroup_props_file",
        o.cgroup_props_file.clone(),
        "cgroup-props-file",
    );
    w.list(
        "cgroup_dump_controller",
        o.cgroup_dump_controller.iter().cloned(),
        "cgroup-dump-controller",
    );
    w.val("cgroup_yard", o.cgroup_yard.clone(), "cgroup-yard");
    w.val("tls_cacert", o.tls_cacert.clone(), "tls-cacert");
    w.val("tls_cacrl", o.tls_cacrl.clone(), "tls-cacrl");
    w.val("tls_cert", o.tls_cert.clone(), "tls-cert");
    w.val("tls_key", o.tls_key.clone(), "tls-key");
    w.flag("tls", o.tls, "tls");
    w.flag(
        "tls_no_cn_verify",
        o.tls_no_cn_verify.filter(|v| *v),
        "tls-no-cn-verify",
    );
    if o.auto_ext_mnt == Some(true) {
        w.val("auto_ext_mnt", Some("auto".into()), "ext-mount-map");
    }
    w.flag(
        "ext_sharing",
        o.ext_sharing.filter(|v| *v),
        "enable-external-sharing",
    );
    w.flag(
        "ext_masters",
        o.ext_masters.filter(|v| *v),
        "enable-external-masters",
    );
    w.val(
        "ghost_limit",
        o.ghost_limit.map(|g| g.to_string()),
        "ghost-limit",
    );
    match o.empty_ns {
        Some(0) | None => {}
        Some(n) if n == libc::CLONE_NEWNET as u32 => {
            w.val("empty_ns", Some("net".into()), "empty-ns")
        }
        Some(n) => {
            return Err(field_err(
                "empty_ns",
                format!("{n:#x}: only CLONE_NEWNET can be asked for"),
            ));
        }
    }
    if let Some(fd) = o.status_fd {
        // As CRIU: reopened at once (the client closes its copy when we answer); only the
        // page server and lazy pages report on it, so a dump or restore writes nothing.
        open(
            format!("/proc/{peer}/fd/{fd}").as_str(),
            OFlag::O_WRONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| {
            field_err(
                "status_fd",
                format!("cannot reopen the client's fd {fd}: {e}"),
            )
        })?;
    }
    w.flag("display_stats", o.display_stats, "display-stats");
    w.flag("unprivileged", o.unprivileged, "unprivileged");
    w.flag(
        "mntns_compat_mode",
        o.mntns_compat_mode.filter(|v| *v),
        "mntns-compat-mode",
    );
    w.val("parent_img", o.parent_img.clone(), "prev-images-dir");
    w.list(
        "irmap_scan_paths",
        o.irmap_scan_paths.iter().cloned(),
        "irmap-scan-path",
    );
    if o.pidfd_store_sk.is_some() {
        return Err(field_err(
            "pidfd_store_sk",
            "the pidfd store serves iterative pre-dumps, which are not built; dump without it",
        ));
    }
    Ok(())
}

/// `manage_cgroups` (CRIU's old switch: soft mode) and `manage_cgroups_mode`, which wins.
fn cgroups(o: &CriuOpts, w: &mut Words) -> Result<(), FieldError> {
    if let Some(m) = o.manage_cgroups_mode {
        let v = match CriuCgMode::try_from(m) {
            Ok(CriuCgMode::Ignore) => "ignore",
            Ok(CriuCgMode::CgNone) => "none",
            Ok(CriuCgMode::Props) => "props",
            // CRIU's default mode is soft.
            Ok(CriuCgMode::Soft | CriuCgMode::Default) => "soft",
            Ok(CriuCgMode::Full) => "full",
            Ok(CriuCgMode::Strict) => "strict",
            Err(_) => {
                return Err(field_err(
                    "manage_cgroups_mode",
                    format!("unknown value {m}"),
                ));
            }
        };
        w.val("manage_cgroups_mode", Some(v.into()), "manage-cgroups");
    } else if o.manage_cgroups == Some(true) {
        w.val("manage_cgroups", Some("soft".into()), "manage-cgroups");
    }
    Ok(())
}

/// The options of `config_file`, which override the request's; a missing file is skipped,
/// as CRIU does (runc names /etc/criu/runc.conf whether it exists or not).
fn rpc_config(file: Option<&str>) -> Result<Vec<String>, FieldError> {
    let Some(file) = file.filter(|f| !f.is_empty()) else {
        return Ok(Vec::new());
    };
    match std::fs::read_to_string(file) {
        Ok(text) => crate::config::parse(&text)
            .map_err(|e| field_err("config_file", format!("{file}: {e:#}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::debug!(file, "RPC config file absent; skipped as CRIU does");
            Ok(Vec::new())
        }
        Err(e) => Err(field_err("config_file", format!("cannot read {file}: {e}"))),
    }
}

/// Fails on the first option that asks `op` for something not built, naming the field (or
/// the config file option) it came from.
fn refuse_unsupported(
    opts: &Options,
    op: Op,
    origin: &HashMap<(&'static str, Option<String>), &'static str>,
) -> Result<(), FieldError> {
    let mask = match op {
        Op::Dump => optable::DUMP,
        Op::Restore => optable::RESTORE,
        Op::Check => return Ok(()),
    };
    for g in &opts.unsupported {
        if let Class::Unsupported { cmds, why } = g.spec.class
            && cmds & mask != 0
        {
            let shown = match &g.value {
                Some(v) => format!("--{} {v}", g.spec.long),
                None => format!("--{}", g.spec.long),
            };
            let field = origin
                .get(&(g.spec.long, g.value.clone()))
                .map(|f| f.to_string())
                .unwrap_or_else(|| format!("(config file) {}", g.spec.long));
            return Err(FieldError {
                field,
                why: format!("not supported yet: {shown} ({why}); send the request without it"),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
