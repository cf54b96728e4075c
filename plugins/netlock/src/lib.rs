//! Built-in plugin: the network lock. While a dumped tree is between its freeze and its
//! restore, the peers of its TCP connections must get no answer at all (a reset would
//! kill the connections the restore repairs): packets of those connections are dropped.
//!
//! `--network-lock ebpf` (the default, no external tool): two tc classifiers
//! (`bpf/netlock.c`) attached with TCX to every interface of the tree's network
//! namespace, loopback included, dropping the connections listed in a hash map, pinned in
//! bpffs under `/sys/fs/bpf/criu-rs/net-<netns inode>` so the lock outlives criu; the
//! programs stay attached between locks, so a lock is a map update ([`ebpf`], [`pins`]). `iptables`/`nftables`: CRIU's rules through its external binaries
//! ([`netfilter`]). `skip`: nothing.
//!
//! Dump: [`DumpStage::AfterFreeze`] finds the tree's connections ([`sockets`]) and locks
//! them, recording the lock in [`record::IMAGE`]; [`DumpStage::AfterDump`] lifts it with
//! `--leave-running` (the tree runs on) and keeps it otherwise; [`DumpStage::Failed`]
//! lifts it. Restore: [`RestoreStage::AfterResume`] lifts the recorded lock (the sockets
//! are repaired and running); [`RestoreStage::Failed`] keeps it and logs how to lift it:
//! `criu network-unlock -D DIR` ([`unlock_images`]).

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod ebpf;
pub mod error;
pub mod key;
pub mod netfilter;
pub mod ns;
pub mod pins;
pub mod record;
pub mod sockets;

use std::path::Path;

use criu_plugin_api::{
    API_VERSION, DumpContext, DumpStage, NetworkLock, Plugin, PluginError, PluginInfo,
    PluginRegistration, PluginState, RestoreContext, RestoreStage, RunKind, StageHooks,
};

pub use error::NetlockError;
pub use key::Tuple;
pub use record::{LockRecord, Scope};

/// The plugin's name.
pub const NAME: &str = "netlock";

/// The network lock plugin (state per dump: the lock it took).
#[derive(Debug, Default)]
pub struct NetlockPlugin;

/// The registered instance.
pub static PLUGIN: NetlockPlugin = NetlockPlugin;

inventory::submit! { PluginRegistration::new(&PLUGIN) }

/// The lock a dump took, until it is lifted or kept.
#[derive(Debug, Default)]
struct DumpState {
    taken: Option<LockRecord>,
}

impl Plugin for NetlockPlugin {
    fn info(&self) -> PluginInfo {
        PluginInfo {
            name: NAME,
            version: env!("CARGO_PKG_VERSION"),
            priority: 300,
            api_version: API_VERSION,
        }
    }

    fn stage_hooks(&self) -> Option<&dyn StageHooks> {
        Some(self)
    }

    fn new_state(&self, run: RunKind) -> Result<Option<PluginState>, PluginError> {
        Ok(match run {
            RunKind::Dump => Some(Box::new(DumpState::default())),
            RunKind::Restore => None,
        })
    }
}

impl StageHooks for NetlockPlugin {
    fn dump_stages(&self) -> &[DumpStage] {
        &[
            DumpStage::AfterFreeze,
            DumpStage::AfterDump,
            DumpStage::Failed,
        ]
    }

    fn restore_stages(&self) -> &[RestoreStage] {
        &[RestoreStage::AfterResume, RestoreStage::Failed]
    }

    fn dump_stage(&self, stage: DumpStage, ctx: &mut dyn DumpContext) -> Result<(), PluginError> {
        match stage {
            DumpStage::AfterFreeze => take(ctx),
            DumpStage::AfterDump if ctx.options().leave_running => {
                let Some(r) = ctx.state::<DumpState>()?.taken.take() else {
                    return Ok(());
                };
                lift(&r)?;
                // The restore of these images must not lift it again.
                ctx.write_plugin_file(record::IMAGE, r.encode_lifted().as_bytes())
            }
            DumpStage::AfterDump => {
                if let Some(r) = ctx.state::<DumpState>()?.taken.take() {
                    tracing::info!(
                        method = %r.method,
                        connections = r.tuples.len(),
                        "network lock kept until the restore (or criu network-unlock -D DIR)"
                    );
                }
                Ok(())
            }
            DumpStage::Failed => match ctx.state::<DumpState>()?.taken.take() {
                Some(r) => lift(&r).map_err(Into::into),
                None => Ok(()),
            },
            _ => Ok(()),
        }
    }

    fn restore_stage(
        &self,
        stage: RestoreStage,
        ctx: &mut dyn RestoreContext,
    ) -> Result<(), PluginError> {
        let Some(text) = ctx.read_plugin_file(record::IMAGE)? else {
            return Ok(());
        };
        let text = String::from_utf8(text)
            .map_err(|_| PluginError::bad_image(record::IMAGE, "not UTF-8 text"))?;
        let r = LockRecord::decode(&text)?;
        if r.lifted {
            return Ok(());
        }
        match stage {
            RestoreStage::AfterResume => lift(&r).map_err(Into::into),
            RestoreStage::Failed => {
                tracing::warn!(
                    method = %r.method,
                    connections = r.tuples.len(),
                    "the restore failed: the network lock of the dump stays in force; lift it \
                     with 'criu network-unlock -D IMAGES_DIR' once the connections are not to \
                     be restored"
                );
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// Locks the frozen tree's connections and records the lock.
fn take(ctx: &mut dyn DumpContext) -> Result<(), PluginError> {
    let method = ctx.options().network_lock;
    // --tcp-close: the connections are not dumped, so not kept quiet either (as CRIU).
    if method == NetworkLock::Skip || ctx.options().tcp_close {
        return Ok(());
    }
    let pids: Vec<i32> = ctx.tasks().iter().map(|t| t.pid).collect();
    let Some(&root) = pids.first() else {
        return Ok(());
    };
    let netns_file = ns::netns_path(root);
    let netns = ns::ns_inode(&netns_file)?;
    for &pid in &pids[1..] {
        if ns::ns_inode(&ns::netns_path(pid))? != netns {
            return Err(PluginError::Unsupported {
                resource: format!("network namespace of pid {pid}"),
                pid,
                hint: format!(
                    "the tree spans network namespaces (pid {root} is in another); one lock per \
                     tree: use --network-lock skip and keep the network quiet yourself"
                ),
            });
        }
    }
    let tuples = sockets::tree_connections(&pids)?;
    if tuples.is_empty() {
        return Ok(());
    }
    let record = lock(method, netns, root, &netns_file, tuples)?;
    let text = record.encode();
    // Kept before anything else can fail, so that the failed dump lifts it.
    ctx.state::<DumpState>()?.taken = Some(record);
    ctx.write_plugin_file(record::IMAGE, text.as_bytes())
}

/// Takes a connection lock with `method` in the namespace of `netns_file`.
fn lock(
    method: NetworkLock,
    netns: u64,
    root: i32,
    netns_file: &Path,
    tuples: Vec<Tuple>,
) -> Result<LockRecord, NetlockError> {
    let mut r = LockRecord {
        method,
        netns,
        pin_dir: None,
        table: None,
        scope: Scope::Connections,
        tuples,
        lifted: false,
    };
    match method {
        NetworkLock::Iptables => {
            ns::in_netns(Some(netns_file), || netfilter::iptables_lock(&r.tuples))?;
        }
        NetworkLock::Nftables => {
            let table = netfilter::table_for(netns, root);
            ns::in_netns(Some(netns_file), || netfilter::nft_lock(&table, &r.tuples))?;
            r.table = Some(table);
        }
        _ => {
            let locked = ebpf::lock(&ebpf::LockSpec {
                netns: Some(netns_file),
                scope: Scope::Connections,
                tuples: &r.tuples,
            })?;
            tracing::info!(
                connections = r.tuples.len(),
                interfaces = ?locked.interfaces,
                newly_attached = ?locked.attached,
                swept = ?locked.swept,
                pins = %locked.pin_dir.display(),
                "network locked (eBPF)"
            );
            r.pin_dir = Some(locked.pin_dir);
        }
    }
    Ok(r)
}

/// Lifts a recorded lock. iptables and nftables rules are removed in criu's own network
/// namespace (the namespace of the tree: criu-rs does not restore namespaces).
pub fn lift(r: &LockRecord) -> Result<(), NetlockError> {
    match (r.method, &r.pin_dir, &r.table) {
        (NetworkLock::Iptables, _, _) => netfilter::iptables_unlock(&r.tuples),
        (NetworkLock::Nftables, _, Some(table)) => netfilter::nft_unlock(table),
        (_, Some(dir), _) => {
            if !ebpf::lift(dir, r.scope, &r.tuples)? {
                tracing::warn!(pins = %dir.display(), "network lock already lifted");
            }
            tracing::info!(pins = %dir.display(), "network unlocked (eBPF)");
            Ok(())
        }
        _ => Ok(()),
    }
}

/// `criu network-unlock -D DIR`: lifts the lock recorded in the images of `dir`, and
/// removes the eBPF pins of network namespaces that are gone.
/// `Ok(None)`: the dump locked nothing (or it was lifted already).
pub fn unlock_images(dir: &Path) -> Result<Option<LockRecord>, PluginError> {
    for swept in ebpf::sweep_stale()? {
        tracing::info!(pins = %swept.display(), "removed stale network lock pins");
    }
    let path = dir.join(record::IMAGE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(PluginError::Path {
                path,
                op: "read",
                source: e,
            });
        }
    };
    let r = LockRecord::decode(&text)?;
    if r.lifted {
        return Ok(None);
    }
    lift(&r)?;
    Ok(Some(r))
}

/// For `criu check`: whether the eBPF lock can be taken here (see [`ebpf::probe`]).
pub fn probe() -> Result<String, String> {
    ebpf::probe().map_err(|e| error::chain(&e))
}
