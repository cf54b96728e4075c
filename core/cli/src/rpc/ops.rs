//! One handler per request type; each returns the response to send.

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use criu_core::kerndat;
use criu_core::restore::RestoreOutcome;
use criu_proto::rpc::{
    CriuDumpResp, CriuFeatures, CriuReq, CriuReqType, CriuResp, CriuRestoreResp, CriuVersion,
};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::decode::failure;
use super::notify::Session;
use super::opts::{self, LogTarget, Op, Plan};
use super::transport::Channel;
use crate::commands;

/// A handled request: the response, and a command to exec once it is sent (`exec_cmd`).
pub struct Done {
    pub resp: CriuResp,
    pub exec_cmd: Vec<String>,
}

impl From<CriuResp> for Done {
    fn from(resp: CriuResp) -> Self {
        Done {
            resp,
            exec_cmd: Vec::new(),
        }
    }
}

/// Runs one request.
pub fn handle(ch: &Channel, kind: CriuReqType, req: &CriuReq, swrk: bool) -> Done {
    use CriuReqType as T;
    tracing::info!(request = kind.as_str_name(), "RPC request");
    match kind {
        T::Dump => dump(ch, req, swrk).into(),
        T::Restore => restore(ch, req, swrk),
        T::Check => check(ch, req, swrk).into(),
        T::FeatureCheck => feature_check(req).into(),
        T::Version => version().into(),
        T::WaitPid => wait_pid(req).into(),
        T::PreDump | T::SinglePreDump => not_built(kind, "pre-dump").into(),
        T::PageServer | T::PageServerChld => not_built(kind, "page-server").into(),
        T::CpuinfoDump | T::CpuinfoCheck => not_built(kind, "cpuinfo").into(),
        T::Notify => failure(
            kind,
            libc::EBADRQC,
            "a NOTIFY request answers a notification; none was sent",
        )
        .into(),
        T::Empty => failure(kind, libc::EBADRQC, "empty request type").into(),
    }
}

fn not_built(kind: CriuReqType, command: &str) -> CriuResp {
    let msg = commands::not_built(command)
        .unwrap_or_else(|| format!("'criu {command}' has no RPC handler"));
    failure(kind, libc::ENOTSUP, msg)
}

/// The request's options for `op`, with the log set up (once per process).
fn prepare(
    ch: &Channel,
    kind: CriuReqType,
    req: &CriuReq,
    op: Op,
    swrk: bool,
) -> Result<Plan, Box<CriuResp>> {
    let bad = |msg: String| Box::new(failure(kind, libc::EBADRQC, msg));
    let default = criu_proto::rpc::CriuOpts {
        images_dir_fd: -1,
        ..Default::default()
    };
    let o = match (&req.opts, op) {
        (Some(o), _) => o,
        (None, Op::Check) => &default,
        (None, _) => return Err(bad("criu_req.opts: missing".into())),
    };
    let peer = ch.peer_pid().map_err(|e| bad(e.to_string()))?;
    let plan = opts::plan(o, peer, op, swrk).map_err(|e| {
        opts::log_refusal(o, peer, op, &e.to_string());
        bad(e.to_string())
    })?;
    init_logging(&plan).map_err(|e| bad(format!("criu_opts.log_file: {e:#}")))?;
    Ok(plan)
}

pub(super) static LOGGING: AtomicBool = AtomicBool::new(false);

/// CRIU's service logs each request to the work dir (`log_file`, else criu.log) or stderr.
fn init_logging(plan: &Plan) -> anyhow::Result<()> {
    let file = commands::log_path(&plan.opts);
    if file.is_none() && plan.log == LogTarget::None {
        return Ok(());
    }
    if LOGGING.swap(true, Ordering::SeqCst) {
        return Ok(());
    }
    crate::logging::init(plan.opts.verbosity, file.as_deref())
}

/// The error chain, as `cr_errmsg`.
fn chain(e: &anyhow::Error) -> String {
    tracing::error!("{e:#}");
    format!("{e:#}")
}

fn dump(ch: &Channel, req: &CriuReq, swrk: bool) -> CriuResp {
    let kind = CriuReqType::Dump;
    let plan = match prepare(ch, kind, req, Op::Dump, swrk) {
        Ok(p) => p,
        Err(resp) => return with_dump(*resp),
    };
    let _notify = plan.notify.then(|| Session::start(ch.as_fd()));
    let result = commands::dump::dump_options(&plan.opts).and_then(|d| {
        criu_core::dump::dump(&d)
            .with_context(|| format!("dumping pid {} into {}", d.pid, d.images_dir.display()))
    });
    let resp = match result {
        Ok(report) => {
            tracing::info!(pids = report.pids.len(), "dump finished");
            CriuResp {
                r#type: kind as i32,
                success: true,
                ..CriuResp::default()
            }
        }
        Err(e) => failure(kind, 0, chain(&e)),
    };
    with_dump(resp)
}

/// CRIU answers every dump with `criu_dump_resp.restored = false` (true only for a
/// self-dump that was restored, which is not supported here).
fn with_dump(mut resp: CriuResp) -> CriuResp {
    resp.dump = Some(CriuDumpResp {
        restored: Some(false),
    });
    if resp.cr_errno == Some(0) {
        resp.cr_errno = None;
    }
    resp
}

fn restore(ch: &Channel, req: &CriuReq, swrk: bool) -> Done {
    let kind = CriuReqType::Restore;
    let with_pid = |mut resp: CriuResp, pid: i32| {
        resp.restore = Some(CriuRestoreResp { pid });
        if resp.cr_errno == Some(0) {
            resp.cr_errno = None;
        }
        resp
    };
    let plan = match prepare(ch, kind, req, Op::Restore, swrk) {
        Ok(p) => p,
        Err(resp) => return with_pid(*resp, -1).into(),
    };
    let _notify = plan.notify.then(|| Session::start(ch.as_fd()));
    // Detached, as CRIU's service: the tree is left running when criu exits.
    let result = commands::restore::restore_options(&plan.opts, true).and_then(|r| {
        criu_core::restore::restore(&r)
            .with_context(|| format!("restoring from {}", r.images_dir.display()))
    });
    match result {
        Ok(RestoreOutcome::Detached { root }) => {
            tracing::info!(pid = root, "restored, detached");
            let ok = CriuResp {
                r#type: kind as i32,
                success: true,
                ..CriuResp::default()
            };
            Done {
                resp: with_pid(ok, root),
                exec_cmd: plan.exec_cmd.clone(),
            }
        }
        Ok(other) => {
            let msg = format!("the restore did not detach: {other:?}");
            with_pid(failure(kind, 0, msg), -1).into()
        }
        Err(e) => with_pid(failure(kind, 0, chain(&e)), -1).into(),
    }
}

fn check(ch: &Channel, req: &CriuReq, swrk: bool) -> CriuResp {
    let kind = CriuReqType::Check;
    if let Err(resp) = prepare(ch, kind, req, Op::Check, swrk) {
        return *resp;
    }
    let results = kerndat::run_checks();
    if kerndat::all_required_ok(&results) {
        return CriuResp {
            r#type: kind as i32,
            success: true,
            ..CriuResp::default()
        };
    }
    let missing: Vec<String> = results
        .iter()
        .filter(|r| r.is_required() && !r.is_ok())
        .map(|r| r.to_string())
        .collect();
    failure(kind, libc::ENOTSUP, missing.join("; "))
}

/// Each feature asked for, answered for criu-rs: memory tracking (pre-dump), lazy pages
/// and the pidfd store (iterative pre-dumps) are not built, so all three are false
/// whatever the kernel has; the check itself succeeds, as in CRIU.
fn feature_check(req: &CriuReq) -> CriuResp {
    let asked = req.features.unwrap_or_default();
    for (name, on) in [
        ("mem_track", asked.mem_track),
        ("lazy_pages", asked.lazy_pages),
        ("pidfd_store", asked.pidfd_store),
    ] {
        if on == Some(true) {
            tracing::info!(feature = name, "asked for; not built in criu-rs");
        }
    }
    CriuResp {
        r#type: CriuReqType::FeatureCheck as i32,
        success: true,
        features: Some(CriuFeatures {
            mem_track: Some(false),
            lazy_pages: Some(false),
            pidfd_store: Some(false),
        }),
        ..CriuResp::default()
    }
}

/// The CRIU version whose interface this is (4.2), our version in `gitid`.
fn version() -> CriuResp {
    CriuResp {
        r#type: CriuReqType::Version as i32,
        success: true,
        version: Some(CriuVersion {
            major_number: 4,
            minor_number: 2,
            gitid: Some(format!("criu-rs-{}", env!("CARGO_PKG_VERSION"))),
            sublevel: None,
            extra: None,
            name: Some("criu-rs".into()),
        }),
        ..CriuResp::default()
    }
}

/// Waits for a child of the service (a restored tree's root) and returns its raw status.
fn wait_pid(req: &CriuReq) -> CriuResp {
    let kind = CriuReqType::WaitPid;
    let Some(pid) = req
        .pid
        .and_then(|p| i32::try_from(p).ok())
        .filter(|p| *p > 0)
    else {
        return failure(kind, libc::EINVAL, "criu_req.pid: missing or not a pid");
    };
    let status = loop {
        match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::__WALL)) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return failure(kind, e as i32, format!("waitpid({pid}): {e}")),
            Ok(WaitStatus::Exited(_, code)) => break (code & 0xff) << 8,
            Ok(WaitStatus::Signaled(_, sig, core)) => {
                break sig as i32 | if core { 0x80 } else { 0 };
            }
            Ok(_) => continue,
        }
    };
    CriuResp {
        r#type: kind as i32,
        success: true,
        status: Some(status),
        ..CriuResp::default()
    }
}
