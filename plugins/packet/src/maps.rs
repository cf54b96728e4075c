//! Task mappings of packet socket rings (`mmap` of the socket: `socket:[INO]` in the maps),
//! as CRIU's `dump_socket_map`/`open_socket_map`: the core records such an area as a
//! plugin-owned placeholder; the dump checks that it maps the whole ring (rx then tx, from
//! offset 0: the only mapping the kernel makes) of a packet socket the task holds, and
//! lists it in `packet-maps.txt` (`pid start end file-id`, numbers in hex); the restore maps
//! the restored socket's new ring over the placeholder with the dumped protection and
//! sharing. The ring's frames are not dumped: the new ring starts empty, every frame the
//! kernel's (as CRIU: frames queued at dump time are dropped).

use std::os::fd::AsFd;

use criu_plugin_api::{DumpContext, PluginError, RestoreContext, VmaDesc};

use crate::restore::ring_bytes;
use crate::{DumpState, RestoreState};

/// The plugin file listing the mappings.
pub const FILE: &str = "packet-maps.txt";

/// One ring mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapRec {
    /// The task (its dumped pid).
    pub pid: i32,
    /// First address.
    pub start: u64,
    /// One past the last.
    pub end: u64,
    /// The socket's file id.
    pub file_id: u32,
}

impl MapRec {
    /// Its line in [`FILE`].
    pub fn line(&self) -> String {
        format!(
            "{} {:x} {:x} {:x}\n",
            self.pid, self.start, self.end, self.file_id
        )
    }
}

/// The socket inode of a `socket:[INO]` mapping name.
pub fn socket_ino(name: &str) -> Option<u32> {
    name.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

fn refuse(vma: &VmaDesc, hint: String) -> PluginError {
    PluginError::Unsupported {
        resource: format!("mapping {:#x}-{:#x} of {}", vma.start, vma.end, vma.name),
        pid: vma.pid,
        hint,
    }
}

/// Checks a claimed mapping against its socket's rings and remembers it.
pub fn dump_vma(ctx: &mut dyn DumpContext, vma: &VmaDesc) -> Result<(), PluginError> {
    let Some(ino) = socket_ino(&vma.name) else {
        return Err(refuse(vma, "not a socket mapping".into()));
    };
    let path = format!("/proc/{}/ns/net", vma.pid);
    let ns = std::fs::File::open(&path).map_err(|e| PluginError::Path {
        path: path.clone().into(),
        op: "open",
        source: e,
    })?;
    let ns_ino =
        std::os::unix::fs::MetadataExt::ino(&ns.metadata().map_err(|e| PluginError::Path {
            path: path.into(),
            op: "stat",
            source: e,
        })?);
    let state = ctx.state::<DumpState>()?;
    let socks = crate::dump::sockets_of(state, ns.as_fd(), ns_ino)
        .map_err(|e| refuse(vma, format!("its sockets could not be listed: {e}")))?;
    let Some(d) = socks.get(&ino) else {
        return Err(refuse(
            vma,
            "only packet socket rings can be mapped back (this socket is no packet socket \
             of the task's network namespace, e.g. an AF_XDP area)"
                .into(),
        ));
    };
    let mut want = 0;
    for r in [d.rx, d.tx].iter().flatten() {
        let ring = crate::dump_ring(r);
        want += ring_bytes(&ring).map_err(|e| refuse(vma, e))?;
    }
    if vma.pgoff != 0 || vma.len() != want {
        return Err(refuse(
            vma,
            format!(
                "it maps {} bytes at offset {:#x} of rings of {want} bytes: only a mapping of \
                 the whole ring is restored (as in CRIU)",
                vma.len(),
                vma.pgoff
            ),
        ));
    }
    state.maps.push((vma.clone(), ino));
    Ok(())
}

/// After every task: each mapped socket must be one the task holds; writes [`FILE`].
pub fn write_maps(ctx: &mut dyn DumpContext) -> Result<(), PluginError> {
    let state = ctx.state::<DumpState>()?;
    if state.maps.is_empty() {
        return Ok(());
    }
    let mut text = String::new();
    for (vma, ino) in &state.maps {
        let Some(&(id, _)) = state.files.get(ino) else {
            return Err(refuse(
                vma,
                "the task maps the ring of a packet socket no task holds an fd of (CRIU \
                 refuses it too): keep the socket open"
                    .into(),
            ));
        };
        let rec = MapRec {
            pid: vma.pid,
            start: vma.start,
            end: vma.end,
            file_id: id,
        };
        text.push_str(&rec.line());
    }
    ctx.write_plugin_file(FILE, text.as_bytes())
}

/// Parses [`FILE`]; a bad line is a bad image naming it.
pub fn parse(text: &str) -> Result<Vec<MapRec>, PluginError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
        .map(|(i, l)| {
            let bad = || PluginError::bad_image(FILE, format!("line {}: {l:?}", i + 1));
            let w: Vec<&str> = l.split(' ').collect();
            let [pid, start, end, id] = w[..] else {
                return Err(bad());
            };
            let hex = |s: &str| u64::from_str_radix(s, 16).map_err(|_| bad());
            let rec = MapRec {
                pid: pid.parse().map_err(|_| bad())?,
                start: hex(start)?,
                end: hex(end)?,
                file_id: u32::try_from(hex(id)?).map_err(|_| bad())?,
            };
            if rec.end <= rec.start {
                return Err(bad());
            }
            Ok(rec)
        })
        .collect()
}

fn records(ctx: &mut dyn RestoreContext) -> Result<Vec<MapRec>, PluginError> {
    if let Some(r) = &ctx.state::<RestoreState>()?.maps {
        return Ok(r.clone());
    }
    let body = ctx.read_plugin_file(FILE)?.ok_or_else(|| {
        PluginError::bad_image(FILE, "missing: the images have packet ring mappings")
    })?;
    let text =
        String::from_utf8(body).map_err(|_| PluginError::bad_image(FILE, "not UTF-8 text"))?;
    let r = parse(&text)?;
    ctx.state::<RestoreState>()?.maps = Some(r.clone());
    Ok(r)
}

/// Maps the restored socket's ring over the placeholder of `vma` (remote `mmap` in the
/// task, of its own fd of the socket).
pub fn restore_vma(ctx: &mut dyn RestoreContext, vma: &VmaDesc) -> Result<(), PluginError> {
    let recs = records(ctx)?;
    let rec = recs
        .iter()
        .find(|r| r.pid == vma.pid && r.start == vma.start && r.end == vma.end)
        .ok_or_else(|| {
            PluginError::bad_image(
                FILE,
                format!(
                    "no line for the mapping {:#x}-{:#x} of pid {}",
                    vma.start, vma.end, vma.pid
                ),
            )
        })?;
    let pid = ctx.restored_pid(vma.pid).unwrap_or(vma.pid);
    let tfd = ctx
        .task_fds(pid)?
        .into_iter()
        .find(|t| t.id == rec.file_id)
        .ok_or_else(|| {
            PluginError::bad_image(
                FILE,
                format!(
                    "pid {} maps the ring of file id {}, which it does not hold",
                    vma.pid, rec.file_id
                ),
            )
        })?;
    let sharing = vma.flags & (libc::MAP_SHARED | libc::MAP_PRIVATE) as u32;
    let flags = u64::from(sharing) | libc::MAP_FIXED as u64;
    let args = [
        vma.start,
        vma.len(),
        u64::from(vma.prot),
        flags,
        tfd.fd as u64,
        0,
    ];
    let r = ctx.remote_syscall(pid, libc::SYS_mmap, args)?;
    if r as u64 != vma.start {
        return Err(PluginError::Task {
            pid,
            op: format!(
                "mmap of the ring of packet socket file id {} (fd {}) at {:#x}",
                rec.file_id, tfd.fd, vma.start
            ),
            source: if r < 0 {
                std::io::Error::from_raw_os_error((-r) as i32).into()
            } else {
                std::io::Error::other(format!("mapped at {r:#x}")).into()
            },
        });
    }
    Ok(())
}
