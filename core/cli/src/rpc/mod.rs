//! CRIU's RPC service: `criu swrk FD` (runc, crun and go-criu start it on one end of a
//! `SOCK_SEQPACKET` socketpair) and `criu service --address PATH` (a listening socket, one
//! forked worker per connection), speaking rpc.proto (`criu_req` in, `criu_resp` out, one
//! message per packet).
//!
//! A request is answered once and the worker exits, as CRIU's; with `keep_open`, VERSION,
//! FEATURE_CHECK, CPUINFO_* and PAGE_SERVER requests leave it waiting for the next one. A
//! packet that is not a request gets an error response and the worker waits for another
//! (it exits when the client closes). Dumps and restores go through the command line's own
//! path ([`opts`] maps `criu_opts` onto its options).

pub mod decode;
mod notify;
mod ops;
mod opts;
mod service;
mod transport;

use std::os::fd::{FromRawFd, OwnedFd};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use criu_proto::rpc::CriuReqType;

pub use decode::{RequestError, decode_request};
pub use service::service_command;
use transport::{Channel, TransportError};

/// Records that the process's log is set up: requests then log there instead.
pub(crate) fn logging_set_up() {
    ops::LOGGING.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// `criu swrk FD`: serves the client on the inherited socket FD.
pub fn swrk_command(args: &[String]) -> Result<ExitCode> {
    let [word] = args else {
        bail!("usage: criu swrk FD (the fd of a SOCK_SEQPACKET socket to the RPC client)");
    };
    let fd: i32 = word
        .parse()
        .with_context(|| format!("criu swrk: '{word}' is not an fd number"))?;
    // SAFETY: F_GETFD only reads the fd's flags; an fd that is not open gives EBADF.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        bail!("criu swrk: fd {fd} is not open");
    }
    // SAFETY: fd is open, handed to us by our parent for this purpose, and nothing else in
    // this process owns it.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let st = nix::sys::stat::fstat(&sock).with_context(|| format!("criu swrk: fd {fd}"))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        // Not ours to close.
        std::mem::forget(sock);
        bail!("criu swrk: fd {fd} is not a socket");
    }
    // The socket must not leak into what a restore forks or an exec_cmd runs.
    nix::fcntl::fcntl(
        &sock,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )
    .with_context(|| format!("criu swrk: fd {fd}"))?;
    let channel = Channel::new(sock);
    Ok(serve(&channel, true))
}

/// Answers requests on `channel` until one without `keep_open` (or the client leaves);
/// `swrk` is false in `criu service`'s workers. The exit code is the last request's result.
pub(crate) fn serve(channel: &Channel, swrk: bool) -> ExitCode {
    loop {
        let packet = match channel.recv() {
            Ok(p) => p,
            Err(TransportError::Closed) => return ExitCode::SUCCESS,
            Err(e @ TransportError::TooLarge(_)) => {
                let resp = decode::failure(CriuReqType::Empty, libc::EBADRQC, e.to_string());
                if send(channel, &resp).is_err() {
                    return ExitCode::from(1);
                }
                continue;
            }
            Err(e) => {
                tracing::error!("{e}");
                return ExitCode::from(1);
            }
        };
        let (kind, req) = match decode_request(&packet) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("RPC: {e}");
                let resp = decode::failure(CriuReqType::Empty, e.errno(), e.to_string());
                if send(channel, &resp).is_err() {
                    return ExitCode::from(1);
                }
                continue;
            }
        };
        let keep_open = req.keep_open == Some(true);
        if keep_open && !keeps_open(kind) {
            let msg = format!(
                "criu_req.keep_open: not allowed for {} (only VERSION, FEATURE_CHECK, \
                 CPUINFO_* and PAGE_SERVER requests keep the service open)",
                kind.as_str_name()
            );
            let _ = send(channel, &decode::failure(kind, libc::EBADRQC, msg));
            return ExitCode::from(1);
        }
        let done = ops::handle(channel, kind, &req, swrk);
        let sent = send(channel, &done.resp);
        let ok = done.resp.success && sent.is_ok();
        if ok && !done.exec_cmd.is_empty() {
            // After the answer, as CRIU: criu becomes the command (the tree's parent).
            tracing::error!("{:#}", crate::commands::restore::exec(&done.exec_cmd));
            return ExitCode::from(1);
        }
        if !keep_open || !ok {
            return if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            };
        }
    }
}

/// The requests CRIU serves more of on the same connection.
fn keeps_open(kind: CriuReqType) -> bool {
    matches!(
        kind,
        CriuReqType::PageServer
            | CriuReqType::PageServerChld
            | CriuReqType::CpuinfoDump
            | CriuReqType::CpuinfoCheck
            | CriuReqType::FeatureCheck
            | CriuReqType::Version
    )
}

fn send(channel: &Channel, resp: &criu_proto::rpc::CriuResp) -> Result<(), TransportError> {
    channel
        .send(&decode::encode_response(resp), None)
        .inspect_err(|e| tracing::error!("cannot answer the RPC client: {e}"))
}
