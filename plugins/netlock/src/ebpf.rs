//! The eBPF lock: `bpf/netlock.c`'s classifiers, loaded with aya and attached (TCX,
//! ingress and egress, first in the chain) to every interface of a network namespace,
//! drop the connections listed in their `tuples` map. The programs, maps and links are
//! pinned per namespace ([`pins`]) and stay attached between locks, passing everything
//! while the map is empty: a lock is then a few map updates, lifting it deleting them.

use std::path::{Path, PathBuf};

use aya::maps::{Array, HashMap, Map, MapData, MapError};
use aya::programs::links::FdLink;
use aya::programs::tc::TcAttachOptions;
use aya::programs::{LinkOrder, SchedClassifier, TcAttachType};
use aya::{Ebpf, EbpfLoader};

use crate::error::NetlockError;
use crate::key::{
    FLAG_ALL_TRAFFIC, FLAG_ALLOW_MARK, SOCCR_MARK, TUPLE_KEY_LEN, Tuple, config_value,
};
use crate::record::Scope;
use crate::{ns, pins};

/// The compiled programs (built by build.rs from bpf/netlock.c).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netlock.o"));

/// Program name in the object, short name of its pins, attach point.
const PROGRAMS: [(&str, &str, TcAttachType); 2] = [
    ("netlock_ingress", "ingress", TcAttachType::Ingress),
    ("netlock_egress", "egress", TcAttachType::Egress),
];

const MAPS: [&str; 3] = ["tuples", "config", "stats"];

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
}

/// A lock in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locked {
    /// The interfaces the programs are attached to.
    pub interfaces: Vec<String>,
    /// Those this lock attached them to (the others had them from an earlier lock).
    pub attached: Vec<String>,
    /// Where the pins are (the namespace's, [`pins::dir_for`]).
    pub pin_dir: PathBuf,
    /// Pin directories of namespaces that are gone, removed on the way.
    pub swept: Vec<PathBuf>,
}

/// The pin directory of the lock of network namespace `netns`.
pub fn pin_dir_for(netns: u64) -> PathBuf {
    pins::dir_for(netns)
}

/// Takes the lock. On error no tuple of this lock stays in the map; programs attached on
/// the way stay (they pass everything not listed).
pub fn lock(spec: &LockSpec<'_>) -> Result<Locked, NetlockError> {
    let _serial = pins::serial()?;
    ns::ensure_bpffs()?;
    let root = Path::new(ns::PIN_ROOT);
    match std::fs::create_dir(root) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            return Err(NetlockError::path(root, "mkdir", e));
        }
        _ => {}
    }
    // Also clears this namespace's directory if an earlier namespace with the same inode
    // left it.
    let swept = pins::sweep_stale()?;
    let netns = match spec.netns {
        Some(p) => ns::ns_inode(p)?,
        None => ns::own_netns()?,
    };
    let dir = pins::dir_for(netns);
    let (interfaces, attached) = ns::in_netns(spec.netns, || attach_all(&dir))?;
    fill_maps(&dir, spec)?;
    Ok(Locked {
        interfaces,
        attached,
        pin_dir: dir,
        swept,
    })
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

/// Makes the namespace's pins when there are none (loads the object once: no kernel BTF
/// is read, see [`loader`]) and attaches the programs to
/// every interface that does not have them yet; runs in the target namespace. Returns
/// the interfaces and those attached now.
fn attach_all(dir: &Path) -> Result<(Vec<String>, Vec<String>), NetlockError> {
    let interfaces = ns::interfaces()?;
    let mut object = None;
    if !dir.exists() {
        std::fs::create_dir(dir).map_err(|e| NetlockError::path(dir, "mkdir", e))?;
        match create_pins(dir) {
            Ok(o) => object = Some(o),
            Err(e) => {
                if let Err(e2) = pins::remove_dir(dir) {
                    tracing::warn!(dir = %dir.display(), error = %crate::error::chain(&e2), "cleaning up failed pins");
                }
                return Err(e);
            }
        }
    }
    // Which links are there and attached to their interface, in one pass over criu's fds.
    let mut existing = Vec::new();
    for (_, short, _) in PROGRAMS {
        for (index, _) in &interfaces {
            let p = pins::link_pin(dir, short, *index);
            if p.exists() {
                existing.push((p, *index));
            }
        }
    }
    let paths: Vec<PathBuf> = existing.iter().map(|(p, _)| p.clone()).collect();
    let live: Vec<PathBuf> = existing
        .into_iter()
        .zip(pins::link_ifindexes(&paths)?)
        .filter(|((_, index), on)| *on == Some(*index))
        .map(|((p, _), _)| p)
        .collect();
    let mut attached = Vec::new();
    for (name, short, attach_type) in PROGRAMS {
        let mut pinned = None;
        for (index, ifname) in &interfaces {
            let link_pin = pins::link_pin(dir, short, *index);
            if live.contains(&link_pin) {
                continue;
            }
            if link_pin.exists() {
                // A link of a device gone, whose index came back (or a broken pin).
                std::fs::remove_file(&link_pin)
                    .map_err(|e| NetlockError::path(&link_pin, "unlink", e))?;
            }
            let prog: &mut SchedClassifier = match object.as_mut() {
                Some(o) => program(o, name)?,
                None => {
                    if pinned.is_none() {
                        let path = dir.join(format!("prog_{short}"));
                        let p = SchedClassifier::from_pin(&path)
                            .map_err(|e| prog_err(name, "open pinned", String::new(), e))?;
                        pinned = Some(p);
                    }
                    pinned.as_mut().expect("set just above")
                }
            };
            let on = format!(" on {ifname} (ifindex {index})");
            // First, so that no other program passes a locked packet on before us.
            let order = TcAttachOptions::TcxOrder(LinkOrder::first());
            let id = prog
                .attach_with_options(ifname, attach_type, order)
                .map_err(|e| prog_err(name, "TCX attach", on.clone(), e))?;
            let link = prog
                .take_link(id)
                .map_err(|e| prog_err(name, "take link", on.clone(), e))?;
            let link: FdLink = link.try_into().map_err(pin_err(&link_pin))?;
            link.pin(&link_pin).map_err(pin_err(&link_pin))?;
            if !attached.contains(ifname) {
                attached.push(ifname.clone());
            }
        }
    }
    Ok((interfaces.into_iter().map(|(_, n)| n).collect(), attached))
}

fn program<'a>(
    object: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut SchedClassifier, NetlockError> {
    object
        .program_mut(name)
        .ok_or_else(|| missing_program(name))?
        .try_into()
        .map_err(|e| prog_err(name, "type check", String::new(), e))
}

/// A directory without `sys/kernel/btf/vmlinux` under it, which every process has.
const NO_BTF_ROOT: &str = "/proc/thread-self/fdinfo";

/// A loader that has not read the kernel's BTF. aya 0.14's `EbpfLoader::new()` reads and
/// parses `/sys/kernel/btf/vmlinux` (about 5 MB: most of a first lock's time) whatever the
/// object needs; ours has no CO-RE relocation and no kernel symbol. So the loader is made on
/// a thread with a file system context of its own (`unshare(CLONE_FS)`) chrooted where that
/// file is not, where `new()` finds no BTF; the chroot ends with the thread. Should that
/// fail, the loader is made as usual (slower, same result).
fn loader() -> EbpfLoader<'static> {
    let made = std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS)?;
            nix::unistd::chroot(NO_BTF_ROOT)?;
            Ok::<_, nix::errno::Errno>(EbpfLoader::new())
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    });
    made.unwrap_or_else(|e| {
        tracing::debug!(error = %e, "no chroot to skip the kernel's BTF: aya reads it");
        EbpfLoader::new()
    })
}

/// Loads the object, sets the configuration and pins maps and programs in `dir`.
fn create_pins(dir: &Path) -> Result<Ebpf, NetlockError> {
    let mut object = loader()
        .btf(None)
        .load(OBJECT)
        .map_err(|e| NetlockError::Load(Box::new(e)))?;
    let mut config: Array<&mut MapData, [u8; 8]> = object
        .map_mut("config")
        .ok_or_else(|| missing_map("config"))?
        .try_into()
        .map_err(map_err("config", "open"))?;
    config
        .set(0, config_value(FLAG_ALLOW_MARK, SOCCR_MARK), 0)
        .map_err(map_err("config", "set"))?;
    for name in MAPS {
        let path = dir.join(name);
        let map = object.map(name).ok_or_else(|| missing_map(name))?;
        map.pin(&path).map_err(pin_err(&path))?;
    }
    for (name, short, _) in PROGRAMS {
        let prog = program(&mut object, name)?;
        prog.load()
            .map_err(|e| prog_err(name, "load", String::new(), e))?;
        let path = dir.join(format!("prog_{short}"));
        prog.pin(&path).map_err(pin_err(&path))?;
    }
    Ok(object)
}

fn pinned_map(dir: &Path, name: &'static str) -> Result<Map, NetlockError> {
    let path = dir.join(name);
    let data =
        MapData::from_pin(&path).map_err(map_err(name, format!("open {}", path.display())))?;
    Map::from_map_data(data).map_err(map_err(name, "type"))
}

fn tuples_map(dir: &Path) -> Result<HashMap<MapData, [u8; TUPLE_KEY_LEN], u8>, NetlockError> {
    pinned_map(dir, "tuples")?
        .try_into()
        .map_err(map_err("tuples", "type"))
}

fn config_map(dir: &Path) -> Result<Array<MapData, [u8; 8]>, NetlockError> {
    pinned_map(dir, "config")?
        .try_into()
        .map_err(map_err("config", "type"))
}

/// Sets the namespace flag or lists the connections; on error removes what it listed.
fn fill_maps(dir: &Path, spec: &LockSpec<'_>) -> Result<(), NetlockError> {
    if spec.scope == Scope::Namespace {
        return set_all_traffic(dir, true).map(|_| ());
    }
    let mut tuples = tuples_map(dir)?;
    for (i, t) in spec.tuples.iter().enumerate() {
        if let Err(e) = tuples.insert(t.key(), 1, 0) {
            for done in &spec.tuples[..i] {
                let _ = tuples.remove(&done.key());
            }
            return Err(map_err("tuples", format!("insert {t}"))(e));
        }
    }
    Ok(())
}

/// Sets or clears the namespace-scope flag; returns whether it was set before.
fn set_all_traffic(dir: &Path, on: bool) -> Result<bool, NetlockError> {
    let mut config = config_map(dir)?;
    let v = config.get(&0, 0).map_err(map_err("config", "read"))?;
    let flags = u32::from_ne_bytes([v[0], v[1], v[2], v[3]]);
    let mark = u32::from_ne_bytes([v[4], v[5], v[6], v[7]]);
    let new = if on {
        flags | FLAG_ALL_TRAFFIC
    } else {
        flags & !FLAG_ALL_TRAFFIC
    };
    config
        .set(0, config_value(new, mark), 0)
        .map_err(map_err("config", "set"))?;
    Ok(flags & FLAG_ALL_TRAFFIC != 0)
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

/// Lifts the lock of `scope` and `tuples` taken in the namespace whose pins are at
/// `pin_dir`: deletes its tuples (or clears the namespace flag); the programs stay
/// attached. A directory of the previous layout (one per lock) is removed whole.
/// `Ok(false)` when nothing of it was in force (already lifted).
pub fn lift(pin_dir: &Path, scope: Scope, tuples: &[Tuple]) -> Result<bool, NetlockError> {
    let _serial = pins::serial()?;
    let per_namespace = pin_dir
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with(pins::NS_PREFIX));
    if !per_namespace {
        return pins::remove_dir(pin_dir);
    }
    if !pin_dir.exists() {
        return Ok(false);
    }
    if scope == Scope::Namespace {
        return set_all_traffic(pin_dir, false);
    }
    let mut map = tuples_map(pin_dir)?;
    let mut any = false;
    for t in tuples {
        match map.remove(&t.key()) {
            Ok(()) => any = true,
            Err(MapError::SyscallError(e)) if e.io_error.kind() == std::io::ErrorKind::NotFound => {
            }
            Err(e) => return Err(map_err("tuples", format!("delete {t}"))(e)),
        }
    }
    Ok(any)
}

/// Whether `tuple` is listed (locked) in the namespace whose pins are at `pin_dir`.
pub fn is_listed(pin_dir: &Path, tuple: &Tuple) -> Result<bool, NetlockError> {
    match tuples_map(pin_dir)?.get(&tuple.key(), 0) {
        Ok(_) => Ok(true),
        Err(MapError::KeyNotFound) => Ok(false),
        Err(e) => Err(map_err("tuples", format!("look up {tuple}"))(e)),
    }
}

/// Detaches the programs from the namespace whose pins are at `pin_dir` and removes the
/// pins (every lock there is lifted). `Ok(false)` when there are none.
pub fn detach(pin_dir: &Path) -> Result<bool, NetlockError> {
    let _serial = pins::serial()?;
    pins::remove_dir(pin_dir)
}

/// Removes the pins of network namespaces that are gone (see [`pins::sweep_stale`]).
pub fn sweep_stale() -> Result<Vec<PathBuf>, NetlockError> {
    let _serial = pins::serial()?;
    if !Path::new(ns::PIN_ROOT).is_dir() {
        return Ok(Vec::new());
    }
    pins::sweep_stale()
}

/// Packets dropped so far by the lock pinned at `pin_dir`: (ingress, egress).
pub fn dropped(pin_dir: &Path) -> Result<(u64, u64), NetlockError> {
    let stats: Array<MapData, u64> = pinned_map(pin_dir, "stats")?
        .try_into()
        .map_err(map_err("stats", "type"))?;
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
    let mount = if ns::is_bpffs(bpffs)? {
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
    // Every lock takes it: /run must be writable.
    drop(pins::serial()?);
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
                NetlockError::Netns {
                    path: "a new network namespace (unshare)".into(),
                    source: e.into(),
                }
            })?;
            let mut ebpf = loader()
                .btf(None)
                .load(OBJECT)
                .map_err(|e| NetlockError::Load(Box::new(e)))?;
            for (name, _, attach_type) in PROGRAMS {
                let prog = program(&mut ebpf, name)?;
                prog.load()
                    .map_err(|e| prog_err(name, "load", String::new(), e))?;
                let order = TcAttachOptions::TcxOrder(LinkOrder::first());
                prog.attach_with_options("lo", attach_type, order)
                    .map_err(|e| prog_err(name, "TCX attach", " on lo".into(), e))?;
            }
            Ok(format!(
                "tc programs attach (TCX); {mount}; {}",
                pins::LOCK_FILE
            ))
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The loader the lock uses has not parsed the kernel's BTF (a plain `EbpfLoader::new()`
    /// holds it, printed as `btf: Some(...)`, megabytes of types), and still loads the
    /// programs.
    #[test]
    fn the_loader_skips_the_kernel_btf() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: chroot needs root");
            return;
        }
        let shown = format!("{:?}", loader());
        assert!(
            shown.contains("btf: None"),
            "{}",
            &shown[..shown.len().min(200)]
        );
        let mut object = loader().btf(None).load(OBJECT).expect("load the object");
        for (name, _, _) in PROGRAMS {
            program(&mut object, name)
                .expect("in the object")
                .load()
                .expect("the verifier takes it without kernel BTF");
        }
    }
}
