//! Restoring unix sockets: the images are read and checked, then every socket of the tree
//! is made in criu's process before the first task forks ([`crate::build`]); each
//! description is handed out from there.

use std::collections::{HashMap, HashSet};
use std::os::fd::OwnedFd;

use criu_plugin_api::{FileRestorer, ImageCursor, PluginError, RestoreContext};
use criu_proto::images::{FdTypes, FileEntry, SkPacketEntry, UnixSkEntry};

use crate::build;
use crate::dump::SK_QUEUES;
use crate::external::{self, ExtPolicy};
use crate::queue::{Creds, Packet};

/// The UNIXSK entries of `files.img`, checked: every entry has its `usk`, no socket
/// (file id or inode) appears twice, every peer exists.
pub(crate) fn collect(entries: &[FileEntry]) -> Result<Vec<UnixSkEntry>, PluginError> {
    let bad = |reason: String| PluginError::bad_image("files.img", reason);
    let mut out: Vec<UnixSkEntry> = Vec::new();
    let mut ids = HashSet::new();
    let mut inos: HashMap<u32, u32> = HashMap::new();
    for e in entries
        .iter()
        .filter(|e| e.r#type == FdTypes::Unixsk as i32)
    {
        let usk = e
            .usk
            .clone()
            .ok_or_else(|| bad(format!("entry id {}: UNIXSK without usk", e.id)))?;
        if usk.id != e.id {
            return Err(bad(format!(
                "entry id {}: its usk says id {}",
                e.id, usk.id
            )));
        }
        if !ids.insert(e.id) {
            return Err(bad(format!("unix socket id {} appears twice", e.id)));
        }
        if let Some(other) = inos.insert(usk.ino, e.id) {
            return Err(bad(format!(
                "unix socket inode {} is referenced twice (ids {other} and {})",
                usk.ino, e.id
            )));
        }
        out.push(usk);
    }
    for u in &out {
        if u.peer != 0 && !inos.contains_key(&u.peer) {
            return Err(bad(format!(
                "entry id {}: peer inode {} of unix socket inode {} does not exist",
                u.id, u.peer, u.ino
            )));
        }
    }
    Ok(out)
}

/// `sk-queues.img`, by the socket id each message is queued for; every `id_for` must be one
/// of `ids`, every message as long as its entry says, and every fd it carries
/// (`SCM_RIGHTS`) one of `files`, the ids of `files.img`.
pub(crate) fn read_queues(
    body: Option<&[u8]>,
    ids: &HashSet<u32>,
    files: &HashSet<u32>,
) -> Result<HashMap<u32, Vec<Packet>>, PluginError> {
    let mut out: HashMap<u32, Vec<Packet>> = HashMap::new();
    let Some(body) = body else {
        return Ok(out);
    };
    let image = SK_QUEUES.to_string();
    let mut cursor = ImageCursor::new(SK_QUEUES, body);
    let mut n = 0usize;
    loop {
        let entry = cursor
            .next_entry::<SkPacketEntry>()
            .map_err(|e| PluginError::bad_image(&image, format!("entry {n}: {e}")))?;
        let Some(entry) = entry else {
            return Ok(out);
        };
        let data = cursor.raw(entry.length as usize).map_err(|_| {
            PluginError::bad_image(
                &image,
                format!(
                    "entry {n} (socket id {}): {} bytes announced, fewer left in the image",
                    entry.id_for, entry.length
                ),
            )
        })?;
        // A datagram of another plugin's socket (UDP): its plugin restores it.
        if !ids.contains(&entry.id_for) && files.contains(&entry.id_for) {
            n += 1;
            continue;
        }
        if !ids.contains(&entry.id_for) {
            return Err(PluginError::bad_image(
                &image,
                format!(
                    "entry {n}: queued for socket id {}, which is not a unix socket of files.img",
                    entry.id_for
                ),
            ));
        }
        let mut rights = Vec::new();
        for scm in &entry.scm {
            if scm.r#type != libc::SCM_RIGHTS as u32 {
                return Err(PluginError::bad_image(
                    &image,
                    format!(
                        "entry {n} (socket id {}): control message type {} (only SCM_RIGHTS)",
                        entry.id_for, scm.r#type
                    ),
                ));
            }
            if let Some(bad) = scm.rights.iter().find(|r| !files.contains(r)) {
                return Err(PluginError::bad_image(
                    &image,
                    format!(
                        "entry {n} (socket id {}): carries file id {bad} (SCM_RIGHTS), which \
                         files.img does not have",
                        entry.id_for
                    ),
                ));
            }
            rights.extend_from_slice(&scm.rights);
        }
        if rights.len() > SCM_MAX_FD {
            return Err(PluginError::bad_image(
                &image,
                format!(
                    "entry {n} (socket id {}): {} fds in flight, over the kernel's {SCM_MAX_FD}",
                    entry.id_for,
                    rights.len()
                ),
            ));
        }
        let creds = match (
            entry.criu_rs_ucred_pid,
            entry.criu_rs_ucred_uid,
            entry.criu_rs_ucred_gid,
        ) {
            (Some(pid), Some(uid), Some(gid)) => Some(Creds {
                pid: pid as i32,
                uid,
                gid,
            }),
            (None, None, None) => None,
            _ => {
                return Err(PluginError::bad_image(
                    &image,
                    format!(
                        "entry {n} (socket id {}): incomplete credentials",
                        entry.id_for
                    ),
                ));
            }
        };
        out.entry(entry.id_for).or_default().push(Packet {
            data: data.to_vec(),
            addr: entry.criu_rs_addr.unwrap_or_default(),
            creds,
            rights,
        });
        n += 1;
    }
}

/// The most fds one message can carry (the kernel's `SCM_MAX_FD`).
const SCM_MAX_FD: usize = 253;

/// One restore's sockets, made and connected in `start`, remade in their tasks once the
/// tasks exist ([`crate::rejoin`]), filled in `finish`: the plugin's restore state, shared
/// by the restorer and the stage hook.
#[derive(Debug, Default)]
pub(crate) struct RestoreState {
    /// File id -> socket inode.
    by_id: HashMap<u32, u32>,
    built: Option<build::Built>,
}

/// The restorer: everything it makes lives in the plugin's [`RestoreState`].
#[derive(Debug)]
pub(crate) struct UnixRestorer;

impl UnixRestorer {
    pub(crate) fn start(
        ctx: &mut dyn RestoreContext,
        entries: &[FileEntry],
    ) -> Result<Self, PluginError> {
        let all = collect(entries)?;
        let (externs, mut socks): (Vec<_>, Vec<_>) = all.into_iter().partition(external::is_extern);
        let policy = ExtPolicy::new(ctx.options().ext_unix_sk, &ctx.options().external);
        let mut reconnect = Vec::new();
        for u in &mut socks {
            if let Some(peer) = externs.iter().find(|e| e.ino == u.peer)
                && let Some(name) = external::detach(u, peer, &policy)?
            {
                reconnect.push((u.ino, name));
            }
        }
        let by_id = socks.iter().map(|u| (u.id, u.ino)).collect();
        let built = if socks.is_empty() {
            None
        } else {
            let ids = socks.iter().map(|u| u.id).collect();
            let body = ctx.read_image(SK_QUEUES)?;
            let files = entries.iter().map(|e| e.id).collect();
            let queues = read_queues(body.as_deref(), &ids, &files)?;
            let mut built = build::build_all(&socks, queues)?;
            built.reconnect = reconnect;
            Some(built)
        };
        *ctx.state::<RestoreState>()? = RestoreState { by_id, built };
        Ok(UnixRestorer)
    }
}

/// [`crate::rejoin`] on this restore's sockets (`RestoreStage::AfterTasksExist`).
pub(crate) fn after_tasks_exist(ctx: &mut dyn RestoreContext) -> Result<(), PluginError> {
    let Some(mut built) = ctx.state::<RestoreState>()?.built.take() else {
        return Ok(());
    };
    let r = crate::rejoin::rejoin(ctx, &mut built);
    ctx.state::<RestoreState>()?.built = Some(built);
    r
}

impl FileRestorer for UnixRestorer {
    fn open_file(
        &mut self,
        ctx: &mut dyn RestoreContext,
        entry: &FileEntry,
    ) -> Result<OwnedFd, PluginError> {
        let st = ctx.state::<RestoreState>()?;
        let sock = st
            .by_id
            .get(&entry.id)
            .and_then(|ino| st.built.as_ref()?.fds.get(ino));
        let sock = sock.ok_or_else(|| {
            PluginError::bad_image(
                "files.img",
                format!("file id {} is not a unix socket entry", entry.id),
            )
        })?;
        sock.try_clone().map_err(|e| PluginError::Restore {
            id: entry.id,
            what: "unix socket".into(),
            op: "dup",
            source: e,
        })
    }

    fn finish(
        &mut self,
        ctx: &mut dyn RestoreContext,
        _installed: &[criu_plugin_api::InstalledFd],
    ) -> Result<(), PluginError> {
        let st = ctx.state::<RestoreState>()?;
        let by_id = std::mem::take(&mut st.by_id);
        let Some(mut built) = st.built.take() else {
            return Ok(());
        };
        let r = built.fill(ctx, &by_id);
        let st = ctx.state::<RestoreState>()?;
        st.by_id = by_id;
        st.built = Some(built);
        r
    }
}
