//! The eBPF lock: loads `bpf/netlock.c`'s classifiers with aya, fills their maps, attaches
//! them (TCX, ingress and egress) to every interface of a network namespace and pins the
//! links and maps under one bpffs directory, so the lock outlives criu. Lifting it is
//! removing that directory: the last reference to each link goes, the programs detach.

use std::path::{Path, PathBuf};

use aya::maps::{Array, HashMap, MapData};
use aya::programs::links::FdLink;
use aya::programs::tc::TcAttachOptions;
use aya::programs::{LinkOrder, SchedClassifier, TcAttachType};
use aya::{Ebpf, EbpfLoader};

use crate::error::NetlockError;
use crate::key::{
    FLAG_ALL_TRAFFIC, FLAG_ALLOW_MARK, SOCCR_MARK, TUPLE_KEY_LEN, Tuple, config_value,
};
use crate::ns;
use crate::record::Scope;

/// The compiled programs (built by build.rs from bpf/netlock.c).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netlock.o"));

const PROGRAMS: [(&str, TcAttachType); 2] = [
    ("netlock_ingress", TcAttachType::Ingress),
    ("netlock_egress", TcAttachType::Egress),
];

/// What to lock.
#[derive(Debug, Clone)]
pub struct LockSpec<'a> {
    /// The namespace file (`/proc/PID/ns/net`) whose interfaces get the programs; `None`:
    /// criu's own.
    pub netns: Option<&'a Path>,
    /// Connections or the whole namespace.
    pub scope: Scope,
    /// The connections (connection scope), as the tree sees them.
    pub tuples: &'a [Tuple],
    /// The bpffs directory for the pins; must not exist.
    pub pin_dir: &'a Path,
}

/// A lock in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locked {
    /// The interfaces the programs are attached to.
    pub interfaces: Vec<String>,
    /// Where the pins are.
    pub pin_dir: PathBuf,
}

/// The pin directory for a dump of tree `root` in network namespace `netns`.
pub fn pin_dir_for(netns: u64, root: i32) -> PathBuf {
    PathBuf::from(format!("{}/{netns}-{root}", ns::PIN_ROOT))
}

/// Takes the lock: on any error nothing stays attached or pinned.
pub fn lock(spec: &LockSpec<'_>) -> Result<Locked, NetlockError> {
    ns::ensure_bpffs()?;
    let root = Path::new(ns::PIN_ROOT);
    match std::fs::create_dir(root) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            return Err(NetlockError::path(root, "mkdir", e));
        }
        _ => {}
    }
    match std::fs::create_dir(spec.pin_dir) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(NetlockError::AlreadyLocked(spec.pin_dir.into()));
        }
        Err(e) => return Err(NetlockError::path(spec.pin_dir, "mkdir", e)),
        Ok(()) => {}
    }
    let r = ns::in_netns(spec.netns, || attach_all(spec));
    if r.is_err()
        && let Err(e) = lift(spec.pin_dir)
    {
        tracing::warn!(dir = %spec.pin_dir.display(), error = %crate::error::chain(&e), "cleaning up a failed lock");
    }
    r
}

fn map_err<E: std::error::Error + Send + Sync + 'static>(
    map: &'static str,
    op: impl Into<String>,
) -> impl FnOnce(E) -> NetlockError {
    let op = op.into();
    move |e| NetlockError::Map {
        map,
        op,
        source: Box::new(e),
    }
}

fn pin_err<E: std::error::Error + Send + Sync + 'static>(
    path: &Path,
) -> impl FnOnce(E) -> NetlockError + '_ {
    move |e| NetlockError::Pin {
        path: path.into(),
        source: Box::new(e),
    }
}

/// Loads, fills, attaches and pins; runs in the target namespace.
fn attach_all(spec: &LockSpec<'_>) -> Result<Locked, NetlockError> {
    let interfaces = ns::interfaces()?;
    let max = u32::try_from(spec.tuples.len().max(1)).unwrap_or(u32::MAX);
    let mut ebpf = EbpfLoader::new()
        .map_max_entries("tuples", max)
        .load(OBJECT)
        .map_err(|e| NetlockError::Load(Box::new(e)))?;
    fill_maps(&mut ebpf, spec)?;
    for name in ["tuples", "config", "stats"] {
        let path = spec.pin_dir.join(name);
        let map = ebpf.map(name).ok_or_else(|| missing_map(name))?;
        map.pin(&path).map_err(pin_err(&path))?;
    }
    for (name, attach_type) in PROGRAMS {
        let prog: &mut SchedClassifier = ebpf
            .program_mut(name)
            .ok_or_else(|| missing_program(name))?
            .try_into()
            .map_err(|e| prog_err(name, "type check", String::new(), e))?;
        prog.load()
            .map_err(|e| prog_err(name, "load", String::new(), e))?;
        for (index, ifname) in &interfaces {
            let on = format!(" on {ifname} (ifindex {index})");
            // First, so that no other program passes a locked packet on before us.
            let order = TcAttachOptions::TcxOrder(LinkOrder::first());
            let id = prog
                .attach_with_options(ifname, attach_type, order)
                .map_err(|e| prog_err(name, "TCX attach", on.clone(), e))?;
            let link = prog
                .take_link(id)
                .map_err(|e| prog_err(name, "take link", on.clone(), e))?;
            let link: FdLink = link.try_into().map_err(pin_err(spec.pin_dir))?;
            let path = spec.pin_dir.join(format!("{name}-{index}"));
            link.pin(&path).map_err(pin_err(&path))?;
        }
    }
    Ok(Locked {
        interfaces: interfaces.into_iter().map(|(_, n)| n).collect(),
        pin_dir: spec.pin_dir.into(),
    })
}

fn fill_maps(ebpf: &mut Ebpf, spec: &LockSpec<'_>) -> Result<(), NetlockError> {
    let flags = FLAG_ALLOW_MARK
        | match spec.scope {
            Scope::Namespace => FLAG_ALL_TRAFFIC,
            Scope::Connections => 0,
        };
    let mut config: Array<&mut MapData, [u8; 8]> = ebpf
        .map_mut("config")
        .ok_or_else(|| missing_map("config"))?
        .try_into()
        .map_err(map_err("config", "open"))?;
    config
        .set(0, config_value(flags, SOCCR_MARK), 0)
        .map_err(map_err("config", "set"))?;
    let mut tuples: HashMap<&mut MapData, [u8; TUPLE_KEY_LEN], u8> = ebpf
        .map_mut("tuples")
        .ok_or_else(|| missing_map("tuples"))?
        .try_into()
        .map_err(map_err("tuples", "open"))?;
    for t in spec.tuples {
        tuples
            .insert(t.key(), 1, 0)
            .map_err(map_err("tuples", format!("insert {t}")))?;
    }
    Ok(())
}

fn missing_map(name: &'static str) -> NetlockError {
    NetlockError::Map {
        map: name,
        op: "find".into(),
        source: "not in the compiled object".into(),
    }
}

fn missing_program(name: &'static str) -> NetlockError {
    NetlockError::Program {
        program: name,
        op: "find",
        on: String::new(),
        source: Box::new(aya::programs::ProgramError::UnexpectedProgramType),
    }
}

fn prog_err(
    program: &'static str,
    op: &'static str,
    on: String,
    e: impl Into<aya::programs::ProgramError>,
) -> NetlockError {
    NetlockError::Program {
        program,
        op,
        on,
        source: Box::new(e.into()),
    }
}

/// Lifts the lock pinned at `pin_dir`: removes every pin (links first, so that the
/// programs detach at once) and the directory. `Ok(false)` when there is no such lock
/// (already lifted).
pub fn lift(pin_dir: &Path) -> Result<bool, NetlockError> {
    let entries = match std::fs::read_dir(pin_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(NetlockError::path(pin_dir, "opendir", e)),
    };
    let mut paths: Vec<PathBuf> = entries
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(|e| NetlockError::path(pin_dir, "readdir", e))?;
    // Links (netlock_*) before maps.
    paths.sort_by_key(|p| {
        !p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("netlock_"))
    });
    for p in &paths {
        std::fs::remove_file(p).map_err(|e| NetlockError::path(p, "unlink", e))?;
    }
    std::fs::remove_dir(pin_dir).map_err(|e| NetlockError::path(pin_dir, "rmdir", e))?;
    Ok(true)
}

/// Packets dropped so far by the lock pinned at `pin_dir`: (ingress, egress).
pub fn dropped(pin_dir: &Path) -> Result<(u64, u64), NetlockError> {
    let path = pin_dir.join("stats");
    let data =
        MapData::from_pin(&path).map_err(map_err("stats", format!("open {}", path.display())))?;
    let map = aya::maps::Map::from_map_data(data).map_err(map_err("stats", "type"))?;
    let stats: Array<MapData, u64> = map.try_into().map_err(map_err("stats", "type"))?;
    let get = |i: u32| {
        stats
            .get(&i, 0)
            .map_err(map_err("stats", format!("read {i}")))
    };
    Ok((get(0)?, get(1)?))
}

/// Whether the lock can be taken here: loads the programs and attaches them to the
/// loopback of a new, empty network namespace (nothing of the host's is touched), and
/// checks bpffs (mounted, or a mount point the dump mounts it on). The detail says which.
pub fn probe() -> Result<String, NetlockError> {
    let bpffs = Path::new(ns::BPFFS);
    let pins = if ns::is_bpffs(bpffs)? {
        format!("bpffs at {}", ns::BPFFS)
    } else if bpffs.is_dir() {
        format!("bpffs not mounted yet: the dump mounts it at {}", ns::BPFFS)
    } else {
        return Err(NetlockError::Bpffs {
            path: bpffs.into(),
            op: "no such directory to mount bpffs on",
            source: std::io::ErrorKind::NotFound.into(),
        });
    };
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
                NetlockError::Netns {
                    path: "a new network namespace (unshare)".into(),
                    source: e.into(),
                }
            })?;
            let mut ebpf = EbpfLoader::new()
                .load(OBJECT)
                .map_err(|e| NetlockError::Load(Box::new(e)))?;
            for (name, attach_type) in PROGRAMS {
                let prog: &mut SchedClassifier = ebpf
                    .program_mut(name)
                    .ok_or_else(|| missing_program(name))?
                    .try_into()
                    .map_err(|e| prog_err(name, "type check", String::new(), e))?;
                prog.load()
                    .map_err(|e| prog_err(name, "load", String::new(), e))?;
                let order = TcAttachOptions::TcxOrder(LinkOrder::first());
                prog.attach_with_options("lo", attach_type, order)
                    .map_err(|e| prog_err(name, "TCX attach", " on lo".into(), e))?;
            }
            Ok(format!("tc programs attach (TCX); {pins}"))
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}
