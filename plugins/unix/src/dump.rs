//! Dumping one unix socket: its `files.img` UNIXSK entry and its queue in `sk-queues.img`.

use std::collections::{HashMap, HashSet};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;

use criu_plugin_api::{
    DumpContext, FdDesc, ImageRef, PluginError, PluginImageKind, TaskIds, write_message,
};
use criu_proto::images::{
    FdTypes, FileEntry, FilePermsEntry, ScmEntry, SkPacketEntry, UnixSkEntry,
};

use crate::diag::{self, DiagSocket, STATE_ESTABLISHED, STATE_LISTEN};
use crate::external::{self, ExtPolicy};
use crate::queue::{self, QueueError};
use criu_sk_common::unix_opts;

/// `sk-queues.img`.
pub(crate) const SK_QUEUES: ImageRef = ImageRef::single(PluginImageKind::SkQueues);

/// What one dump learns once: every unix socket of the namespace and which of them the
/// tree holds.
#[derive(Debug, Default)]
pub(crate) struct DumpState {
    sockets: Option<HashMap<u32, DiagSocket>>,
    /// Inodes of the sockets some task of the tree has an fd of.
    in_tree: HashSet<u32>,
    /// Client inode -> the listening socket whose accept queue holds its connection.
    listener_of: HashMap<u32, u32>,
    /// Inodes of the sockets dumped so far.
    dumped: HashSet<u32>,
    /// Sockets in flight whose peer no task holds: (pid, inode, peer inode). The peer must
    /// turn up in flight too by the end of the dump ([`check_awaited_peers`]).
    awaited: Vec<(i32, u32, u32)>,
    /// Peers outside the tree whose external entry is written: inode -> file id.
    externs: HashMap<u32, u32>,
}

impl DumpState {
    fn load(&mut self, tasks: &[TaskIds]) -> Result<&HashMap<u32, DiagSocket>, PluginError> {
        if self.sockets.is_none() {
            let all = diag::query().map_err(|e| PluginError::Unsupported {
                resource: "unix sockets".into(),
                pid: 0,
                hint: format!("{e} (is CONFIG_UNIX_DIAG built?)"),
            })?;
            for sk in all.values().filter(|s| s.state == STATE_LISTEN) {
                for &client in &sk.icons {
                    self.listener_of.insert(client, sk.ino);
                }
            }
            self.in_tree = tree_sockets(tasks);
            self.sockets = Some(all);
        }
        Ok(self.sockets.as_ref().expect("set above"))
    }
}

/// The socket inodes behind the fds of every task of the tree.
fn tree_sockets(tasks: &[TaskIds]) -> HashSet<u32> {
    let mut out = HashSet::new();
    for t in tasks {
        let Ok(dir) = std::fs::read_dir(format!("/proc/{}/fd", t.pid)) else {
            continue;
        };
        for e in dir.flatten() {
            let Ok(link) = std::fs::read_link(e.path()) else {
                continue;
            };
            let link = link.as_os_str().as_bytes();
            if let Some(n) = link
                .strip_prefix(b"socket:[")
                .and_then(|r| r.strip_suffix(b"]"))
                .and_then(|n| std::str::from_utf8(n).ok()?.parse().ok())
            {
                out.insert(n);
            }
        }
    }
    out
}

fn refuse(fd: &FdDesc, what: String, hint: &str) -> PluginError {
    PluginError::Unsupported {
        resource: format!("{} ({what})", fd.describe()),
        pid: fd.pid,
        hint: hint.into(),
    }
}

const EXTERNAL_HINT: &str = "a unix socket connected to a process outside the dumped tree; dump the whole tree \
     (or name the socket with --external unix[INO])";

/// The UNIXSK entry of `fd` under file id `id`; its queued messages go to `sk-queues.img`.
pub(crate) fn dump_socket(
    ctx: &mut dyn DumpContext,
    fd: &FdDesc,
    id: u32,
) -> Result<FileEntry, PluginError> {
    let ino = u32::try_from(fd.stat.ino).map_err(|_| {
        refuse(
            fd,
            "inode over 32 bits".into(),
            "CRIU's image has 32-bit socket inodes",
        )
    })?;
    let tasks = ctx.tasks();
    let policy = ExtPolicy::of_dump(ctx.options());
    let state = ctx.state::<DumpState>()?;
    let sk = state.load(&tasks)?.get(&ino).cloned().ok_or_else(|| {
        refuse(
            fd,
            format!("socket inode {ino}"),
            "sock_diag does not list it: a socket of another network namespace",
        )
    })?;
    let (peer, outside) = resolve_peer(state, fd, &sk, &policy)?;
    if let Some(outside) = outside {
        write_extern(ctx, &outside)?;
    }
    if !matches!(
        sk.sock_type as i32,
        libc::SOCK_STREAM | libc::SOCK_DGRAM | libc::SOCK_SEQPACKET
    ) {
        return Err(refuse(
            fd,
            format!("socket type {}", sk.sock_type),
            "unknown unix socket type",
        ));
    }
    let bound = bound_file(fd, &sk)?;
    if sk.rqueue != 0 && sk.state != STATE_LISTEN {
        dump_queue(ctx, fd, &sk, id)?;
    }
    let opts = unix_opts::dump(fd.file.as_fd()).map_err(|e| PluginError::Fd {
        pid: fd.pid,
        fd: fd.fd,
        link: fd.link.clone(),
        op: e.opt,
        source: e.source.into(),
    })?;
    tracing::debug!(
        pid = fd.pid,
        fd = fd.fd,
        id,
        ino,
        peer,
        state = sk.state,
        "dumping unix socket"
    );
    let pending = ctx.state::<DumpState>()?.listener_of.contains_key(&ino);
    ctx.state::<DumpState>()?.dumped.insert(ino);
    let mut usk = UnixSkEntry {
        id,
        ino,
        r#type: sk.sock_type,
        state: sk.state,
        flags: fd.fdinfo.file_flags(),
        uflags: 0,
        // A listening socket's backlog is what sock_diag reports as its write queue.
        backlog: if sk.state == STATE_LISTEN {
            sk.wqueue
        } else {
            0
        },
        peer,
        fown: fd.owner.to_entry(),
        opts,
        name: sk.name.clone(),
        shutdown: (sk.shutdown != 0).then_some(i32::from(sk.shutdown & 3)),
        file_perms: bound.perms,
        deleted: bound.deleted.then_some(true),
        name_dir: bound.name_dir,
        ..Default::default()
    };
    crate::peercred::record(fd, pending && peer != 0, &mut usk);
    Ok(FileEntry {
        r#type: FdTypes::Unixsk as i32,
        id,
        usk: Some(usk),
        ..Default::default()
    })
}

/// The peer inode to record: the connected socket, or for a connection still in a
/// listener's accept queue the listener (as CRIU); with it the peer when it is outside the
/// tree and the options allow that ([`ExtPolicy`]), refused otherwise.
fn resolve_peer(
    state: &mut DumpState,
    fd: &FdDesc,
    sk: &DiagSocket,
    policy: &ExtPolicy,
) -> Result<(u32, Option<DiagSocket>), PluginError> {
    let in_tree = &state.in_tree;
    let outside = |peer: u32| !in_tree.contains(&peer);
    let external = |peer: u32, what: String| {
        let diag = state.sockets.as_ref().and_then(|all| all.get(&peer));
        match policy.refusal(sk, diag) {
            Some(why) => Err(refuse(fd, what, &why)),
            None => Ok((peer, diag.cloned())),
        }
    };
    if sk.peer != 0 {
        if outside(sk.peer) && fd.is_in_flight() {
            // Its peer may travel in a queue not peeked yet: checked at the end.
            state.awaited.push((fd.pid, sk.ino, sk.peer));
            return Ok((sk.peer, None));
        }
        if outside(sk.peer) {
            return external(
                sk.peer,
                format!("socket inode {}, peer inode {}", sk.ino, sk.peer),
            );
        }
        return Ok((sk.peer, None));
    }
    if sk.state == STATE_LISTEN {
        for &client in &sk.icons {
            if client == 0 || outside(client) {
                return Err(refuse(
                    fd,
                    format!(
                        "listening socket inode {}, pending connection from inode {client}",
                        sk.ino
                    ),
                    "a connection not accepted yet from a socket outside the dumped tree (or already closed)",
                ));
            }
        }
        return Ok((0, None));
    }
    if sk.state != STATE_ESTABLISHED || sk.sock_type as i32 == libc::SOCK_DGRAM {
        return Ok((0, None));
    }
    match state.listener_of.get(&sk.ino) {
        Some(&listener) if outside(listener) => external(
            listener,
            format!(
                "socket inode {}, connecting to listening inode {listener}",
                sk.ino
            ),
        ),
        Some(_) if sk.wqueue != 0 => Err(refuse(
            fd,
            format!(
                "socket inode {}, {} bytes sent on a connection not accepted yet",
                sk.ino, sk.wqueue
            ),
            "data sent on a unix connection still waiting in accept() cannot be read without accepting it",
        )),
        Some(&listener) => Ok((listener, None)),
        // Its peer was closed: a connection shut down both ways keeps only its queue.
        None if sk.shutdown & 3 == 3 => Ok((0, None)),
        None => Err(refuse(
            fd,
            format!("socket inode {}", sk.ino),
            "a connected unix socket without a peer",
        )),
    }
}

/// CRIU's external entry for `peer`, a socket outside the tree, written once per dump.
fn write_extern(ctx: &mut dyn DumpContext, peer: &DiagSocket) -> Result<(), PluginError> {
    if ctx.state::<DumpState>()?.externs.contains_key(&peer.ino) {
        return Ok(());
    }
    let id = ctx.new_file_id();
    write_message(ctx, ImageRef::FILES, &external::extern_entry(id, peer), &[])?;
    tracing::debug!(ino = peer.ino, id, "unix socket outside the tree recorded");
    ctx.state::<DumpState>()?.externs.insert(peer.ino, id);
    Ok(())
}

/// Once every image is written: the peer of each socket in flight that no task held was
/// dumped too (it travelled in flight); otherwise it is outside the tree and the dump fails.
pub(crate) fn check_awaited_peers(ctx: &mut dyn DumpContext) -> Result<(), PluginError> {
    let state = ctx.state::<DumpState>()?;
    match state
        .awaited
        .iter()
        .find(|(_, _, peer)| !state.dumped.contains(peer))
    {
        Some(&(pid, ino, peer)) => Err(PluginError::Unsupported {
            resource: format!("unix socket inode {ino} in flight (in a queue), peer inode {peer}"),
            pid,
            hint: EXTERNAL_HINT.into(),
        }),
        None => Ok(()),
    }
}

/// What the socket file of a path name says: its owner and mode, or that it was unlinked
/// (or replaced by another file): a ghost, bound again at restore and unlinked once
/// connected, as CRIU. A relative name also gets the directory it was bound in
/// (`SIOCUNIXFILE`), CRIU's `name_dir`.
fn bound_file(fd: &FdDesc, sk: &DiagSocket) -> Result<BoundFile, PluginError> {
    if sk.name.is_empty() || sk.name[0] == 0 {
        return Ok(BoundFile::default());
    }
    let mut name_dir = None;
    let mut full = std::path::PathBuf::from(std::ffi::OsStr::from_bytes(&sk.name));
    if sk.name[0] != b'/' {
        let dir = name_dir_of(fd.file.as_fd(), &sk.name).ok_or_else(|| {
            refuse(
                fd,
                format!("socket bound to relative path {}", full.display()),
                "the directory it was bound in cannot be found (SIOCUNIXFILE)",
            )
        })?;
        full = std::path::Path::new(&dir).join(&full);
        name_dir = Some(dir);
    }
    let vfs_ino = sk.vfs.map(|(ino, _)| u64::from(ino));
    Ok(match nix::sys::stat::stat(&full) {
        Ok(st) if (st.st_mode & libc::S_IFMT) == libc::S_IFSOCK && Some(st.st_ino) == vfs_ino => {
            BoundFile {
                perms: Some(FilePermsEntry {
                    mode: st.st_mode,
                    uid: st.st_uid,
                    gid: st.st_gid,
                }),
                deleted: false,
                name_dir,
            }
        }
        _ => BoundFile {
            perms: None,
            deleted: true,
            name_dir,
        },
    })
}

/// The socket file of a path name, as [`bound_file`] found it.
#[derive(Debug, Default)]
struct BoundFile {
    perms: Option<FilePermsEntry>,
    deleted: bool,
    name_dir: Option<String>,
}

/// The absolute directory a socket bound to relative `name` was bound in: its file's path
/// (through `SIOCUNIXFILE`) minus `name`.
fn name_dir_of(sock: std::os::fd::BorrowedFd<'_>, name: &[u8]) -> Option<String> {
    use std::os::fd::AsRawFd;
    let file = crate::sys::unix_socket_file(sock).ok()?;
    let link = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()?;
    let link = link.as_os_str().as_bytes();
    let link = link.strip_suffix(b" (deleted)").unwrap_or(link);
    let dir = link.strip_suffix(name)?.strip_suffix(b"/")?;
    let dir = if dir.is_empty() { b"/".as_slice() } else { dir };
    String::from_utf8(dir.to_vec()).ok()
}

fn dump_queue(
    ctx: &mut dyn DumpContext,
    fd: &FdDesc,
    sk: &DiagSocket,
    id: u32,
) -> Result<(), PluginError> {
    let datagrams = sk.sock_type as i32 != libc::SOCK_STREAM;
    let packets = queue::peek(
        fd.file.as_fd(),
        datagrams,
        sk.sock_type as i32 == libc::SOCK_DGRAM,
        // RCV_SHUTDOWN: the peer shut down; rqueue is every queued byte of a seqpacket.
        (sk.sock_type as i32 == libc::SOCK_SEQPACKET && sk.shutdown & 1 != 0)
            .then_some(sk.rqueue as usize),
    )
    .map_err(|e| match e {
        QueueError::Unsupported(what) => refuse(fd, format!("socket inode {}", sk.ino), &what),
        QueueError::Sys { op, source } => PluginError::Fd {
            pid: fd.pid,
            fd: fd.fd,
            link: fd.link.clone(),
            op,
            source: source.into(),
        },
    })?;
    // Sockets in flight count as the tree's: one whose peer travels with it is no external
    // peer (both are dumped as files in flight once this call returns).
    let in_flight_socks: Vec<u32> = packets
        .iter()
        .flat_map(|p| &p.fds)
        .filter_map(|f| nix::sys::stat::fstat(f.as_fd()).ok())
        .filter(|st| st.st_mode & libc::S_IFMT == libc::S_IFSOCK)
        .filter_map(|st| u32::try_from(st.st_ino).ok())
        .collect();
    ctx.state::<DumpState>()?.in_tree.extend(in_flight_socks);
    for queue::Peeked { packet: p, fds } in packets {
        let mut rights = Vec::with_capacity(fds.len());
        for f in &fds {
            rights.push(ctx.dump_file_in_flight(fd.pid, f.as_fd())?);
        }
        // criu's duplicates are closed here: the queue keeps its own.
        drop(fds);
        let entry = SkPacketEntry {
            id_for: id,
            length: p.data.len() as u32,
            // CRIU's scm_entry: type SCM_RIGHTS, the carried files' ids.
            scm: if rights.is_empty() {
                Vec::new()
            } else {
                vec![ScmEntry {
                    r#type: libc::SCM_RIGHTS as u32,
                    rights,
                }]
            },
            criu_rs_addr: (!p.addr.is_empty()).then_some(p.addr),
            criu_rs_ucred_pid: p.creds.map(|c| c.pid as u32),
            criu_rs_ucred_uid: p.creds.map(|c| c.uid),
            criu_rs_ucred_gid: p.creds.map(|c| c.gid),
        };
        write_message(ctx, SK_QUEUES, &entry, &p.data)?;
    }
    Ok(())
}
