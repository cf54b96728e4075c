//! `notify_scripts`: CRIU's action scripts as RPC messages. At each action criu sends a
//! `criu_resp` of type NOTIFY naming it (`criu_notify.script`, with the root's pid for
//! setup-namespaces and post-restore) and waits for the client's `criu_req` NOTIFY with
//! `notify_success`; anything else fails the dump or restore, as in CRIU.
//!
//! The notifications ride on the core's stage hooks through a host plugin
//! ([`criu_core::plugins::register_host_plugin`]), active only while a request with
//! `notify_scripts` runs:
//! - dump: `pre-dump` before the freeze; `network-lock` once the tree is frozen;
//!   `post-dump` with every image written; `network-unlock` when the tree runs on
//!   (`leave_running`) or the dump failed after the lock;
//! - restore: `pre-restore`; `setup-namespaces` and `post-setup-namespaces` once the tasks
//!   exist; `post-restore`, `network-unlock`, `pre-resume` before the tasks resume;
//!   `post-resume` after. As CRIU, a failed ack of `pre-resume` or `post-resume` is logged
//!   only (the tree already runs, or is about to).
//!
//! Unlike CRIU, `network-lock`/`network-unlock` are sent whether or not the tree has a network
//! namespace of its own: our lock covers the tree's connections in any namespace.

use std::os::fd::{BorrowedFd, RawFd};
use std::sync::Mutex;

use criu_plugin_api::{
    API_VERSION, DumpContext, DumpStage, Plugin, PluginError, PluginInfo, RestoreContext,
    RestoreStage, StageHooks,
};
use criu_proto::rpc::{CriuNotify, CriuReqType, CriuResp};

use super::decode::{decode_request, encode_response};
use super::transport::{recv_packet, send_packet};

/// The host plugin's name (in errors: "hook of plugin rpc-notify failed at ...").
pub const NAME: &str = "rpc-notify";

/// The active request: the socket to notify on, and whether the network was reported locked.
struct Active {
    fd: RawFd,
    locked: bool,
}

static ACTIVE: Mutex<Option<Active>> = Mutex::new(None);

/// Notifications on `fd` until the guard drops (the socket outlives it: the guard is made
/// from the channel that owns it, for one request).
pub struct Session(());

impl Session {
    /// Starts notifying on `fd` and makes sure the hooks are registered.
    pub fn start(fd: BorrowedFd<'_>) -> Session {
        use std::os::fd::AsRawFd;
        criu_core::plugins::register_host_plugin(&PLUGIN);
        *lock() = Some(Active {
            fd: fd.as_raw_fd(),
            locked: false,
        });
        Session(())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        *lock() = None;
    }
}

fn lock() -> std::sync::MutexGuard<'static, Option<Active>> {
    ACTIVE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Why a notification failed.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The socket failed or the client left.
    #[error("notification '{script}' could not be exchanged with the RPC client")]
    Transport {
        /// The action.
        script: String,
        /// The socket's error.
        #[source]
        source: super::transport::TransportError,
    },
    /// The client answered something else than a successful NOTIFY.
    #[error("the RPC client reported a failure of '{script}' ({answer})")]
    Refused {
        /// The action.
        script: String,
        /// What came back.
        answer: String,
    },
}

/// Sends `script` (with `pid`, and `pass` as `SCM_RIGHTS`) on `fd` and waits for the ack.
pub fn exchange(
    fd: BorrowedFd<'_>,
    script: &str,
    pid: Option<i32>,
    pass: Option<BorrowedFd<'_>>,
) -> Result<(), NotifyError> {
    let resp = CriuResp {
        r#type: CriuReqType::Notify as i32,
        success: true,
        notify: Some(CriuNotify {
            script: Some(script.to_string()),
            pid,
        }),
        ..CriuResp::default()
    };
    let transport = |source| NotifyError::Transport {
        script: script.to_string(),
        source,
    };
    send_packet(fd, &encode_response(&resp), pass).map_err(transport)?;
    let answer = recv_packet(fd).map_err(transport)?;
    let refused = |answer: String| NotifyError::Refused {
        script: script.to_string(),
        answer,
    };
    match decode_request(&answer) {
        Ok((CriuReqType::Notify, req)) if req.notify_success == Some(true) => Ok(()),
        Ok((CriuReqType::Notify, _)) => Err(refused("notify_success is not set".into())),
        Ok((t, _)) => Err(refused(format!("a {} request", t.as_str_name()))),
        Err(e) => Err(refused(e.to_string())),
    }
}

/// Sends `script` on the active request's socket, if there is one.
fn notify(script: &str, pid: Option<i32>) -> Result<(), PluginError> {
    let guard = lock();
    let Some(active) = guard.as_ref() else {
        return Ok(());
    };
    // SAFETY: the Session that set `fd` is alive (the guard is held) and its channel owns
    // the socket for at least as long.
    let fd = unsafe { BorrowedFd::borrow_raw(active.fd) };
    tracing::debug!(script, ?pid, "RPC notification");
    exchange(fd, script, pid, None).map_err(|e| PluginError::Plugin {
        plugin: NAME.to_string(),
        message: match error_chain(&e) {
            chain if chain.is_empty() => e.to_string(),
            chain => format!("{e}: {chain}"),
        },
    })
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = Vec::new();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push(s.to_string());
        cur = s.source();
    }
    out.join(": ")
}

fn set_locked(v: bool) -> bool {
    lock()
        .as_mut()
        .map(|a| std::mem::replace(&mut a.locked, v))
        .unwrap_or(false)
}

/// A failed ack CRIU only logs (the tree runs, or is about to).
fn logged(r: Result<(), PluginError>) -> Result<(), PluginError> {
    if let Err(e) = r {
        tracing::error!("{e}");
    }
    Ok(())
}

struct RpcNotify;

static PLUGIN: RpcNotify = RpcNotify;

impl Plugin for RpcNotify {
    fn info(&self) -> PluginInfo {
        PluginInfo {
            name: NAME,
            version: env!("CARGO_PKG_VERSION"),
            // Before every plugin: pre-dump precedes the others' before-freeze work, and
            // network-lock the lock itself, as CRIU runs the script first.
            priority: i32::MIN,
            api_version: API_VERSION,
        }
    }

    fn stage_hooks(&self) -> Option<&dyn StageHooks> {
        Some(self)
    }
}

impl StageHooks for RpcNotify {
    fn dump_stages(&self) -> &[DumpStage] {
        &DumpStage::ALL
    }

    fn restore_stages(&self) -> &[RestoreStage] {
        &[
            RestoreStage::BeforeRestore,
            RestoreStage::AfterTasksExist,
            RestoreStage::BeforeResume,
            RestoreStage::AfterResume,
        ]
    }

    fn dump_stage(&self, stage: DumpStage, ctx: &mut dyn DumpContext) -> Result<(), PluginError> {
        match stage {
            DumpStage::BeforeFreeze => notify("pre-dump", None),
            DumpStage::AfterFreeze => {
                set_locked(true);
                notify("network-lock", None)
            }
            DumpStage::AfterDump => {
                notify("post-dump", None)?;
                if ctx.options().leave_running && set_locked(false) {
                    notify("network-unlock", None)?;
                }
                Ok(())
            }
            DumpStage::Failed if set_locked(false) => notify("network-unlock", None),
            DumpStage::Failed => Ok(()),
        }
    }

    fn restore_stage(
        &self,
        stage: RestoreStage,
        ctx: &mut dyn RestoreContext,
    ) -> Result<(), PluginError> {
        let root = ctx.current_pid();
        match stage {
            RestoreStage::BeforeRestore => notify("pre-restore", None),
            RestoreStage::AfterTasksExist => {
                notify("setup-namespaces", Some(root))?;
                notify("post-setup-namespaces", None)
            }
            RestoreStage::BeforeResume => {
                notify("post-restore", Some(root))?;
                notify("network-unlock", None)?;
                logged(notify("pre-resume", None))
            }
            RestoreStage::AfterResume => logged(notify("post-resume", None)),
            RestoreStage::Failed => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use criu_proto::rpc::CriuReq;
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
    use prost::Message;
    use std::os::fd::AsFd;

    fn ack(ok: Option<bool>, t: CriuReqType) -> Vec<u8> {
        CriuReq {
            r#type: t as i32,
            notify_success: ok,
            ..CriuReq::default()
        }
        .encode_to_vec()
    }

    #[test]
    fn a_notification_waits_for_its_ack_and_anything_else_fails_it() {
        let (ours, client) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        let answers = [
            ack(Some(true), CriuReqType::Notify),
            ack(Some(false), CriuReqType::Notify),
            ack(Some(true), CriuReqType::Dump),
            b"\x01".to_vec(),
        ];
        let peer = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for a in answers {
                let got = recv_packet(client.as_fd()).unwrap();
                let resp = CriuResp::decode(&*got).unwrap();
                assert_eq!(resp.r#type, CriuReqType::Notify as i32);
                seen.push(resp.notify.unwrap());
                send_packet(client.as_fd(), &a, None).unwrap();
            }
            seen
        });
        exchange(ours.as_fd(), "post-restore", Some(12), None).unwrap();
        let e = exchange(ours.as_fd(), "pre-dump", None, None).unwrap_err();
        assert!(
            e.to_string()
                .contains("'pre-dump' (notify_success is not set)"),
            "{e}"
        );
        let e = exchange(ours.as_fd(), "post-dump", None, None).unwrap_err();
        assert!(e.to_string().contains("a DUMP request"), "{e}");
        assert!(exchange(ours.as_fd(), "x", None, None).is_err());
        let seen = peer.join().unwrap();
        assert_eq!(seen[0].script.as_deref(), Some("post-restore"));
        assert_eq!(seen[0].pid, Some(12));
        assert_eq!(seen[1].pid, None);
        // The client gone: the next one fails on the socket.
        let e = exchange(ours.as_fd(), "post-resume", None, None).unwrap_err();
        assert!(matches!(e, NotifyError::Transport { .. }), "{e:?}");
    }
}
